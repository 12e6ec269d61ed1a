"""Loaders for the files records point to, handling each format's dtype.

* images: any Pillow format, EXIF orientation applied (as detectron2 does), RGB.
* panoptic PNGs: RGB, segment id = R + 256 G + 256^2 B, 0 = VOID.
* label maps: 8-bit PNG, palette PNG (the palette index is the label) or
  16-bit TIFF (ADE20K-847, Pascal Context 459).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vocabseg.data.records import IGNORE_LABEL, InstanceAnnotation, Record, Segment, SemanticLabel
from vocabseg.errors import DatasetError
from vocabseg.images import pil_to_rgb

_LABEL_MODES = ("L", "P", "I;16", "I;16L", "I;16B", "I")  # single-channel integer images


@dataclass(frozen=True)
class Fixes:
    """The fix that ends the one-line error for each problem a file can have.

    Dataset files (the default) are fixed by checking or preparing the dataset again;
    other callers (e.g. the readers of prediction files in ``vocabseg.eval``) give their own.
    """

    missing: str = "run `vocabseg data check` on this dataset"
    unreadable: str = "it is probably truncated, download or prepare it again"
    wrong_mode: str = "prepare the dataset again"


DATASET_FILE = Fixes()


def open_image(path: str | Path, what: str, fixes: Fixes = DATASET_FILE) -> Image.Image:
    """Opens an image file lazily; a missing or unreadable file raises DatasetError naming ``what``."""
    if not Path(path).is_file():
        raise DatasetError(f"{what} {path} not found; {fixes.missing}")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise DatasetError(f"{what} {path} is not a readable image; {fixes.unreadable}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Reads an image as [H, W, 3] uint8 RGB, EXIF rotation applied."""
    with open_image(path, "image") as img:
        return pil_to_rgb(img)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] integer colours -> [H, W] int64 ids ``R + 256 G + 256^2 B``."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] ids < 2^24 -> [H, W, 3] uint8 colours; inverse of ``rgb_to_id``."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def load_panoptic(png: str | Path, *, what: str = "panoptic PNG", fixes: Fixes = DATASET_FILE) -> np.ndarray:
    """Reads a COCO-format panoptic PNG as [H, W] int64 segment ids (0 = VOID; an alpha channel is ignored)."""
    with open_image(png, what, fixes) as img:
        if img.mode not in ("RGB", "RGBA"):
            raise DatasetError(
                f"{what} {png} has mode {img.mode}, expected RGB (id = R + 256 G + 256^2 B); "
                f"it is not a panoptic id map: {fixes.wrong_mode}"
            )
        return rgb_to_id(np.asarray(img.convert("RGB")))


def read_label_map(path: str | Path, *, what: str = "label map", fixes: Fixes = DATASET_FILE) -> np.ndarray:
    """Reads a label map's raw values: [H, W] uint8, uint16 or int32 as stored."""
    with open_image(path, what, fixes) as img:
        if img.mode not in _LABEL_MODES:
            raise DatasetError(
                f"{what} {path} has mode {img.mode}, expected single-channel class ids; "
                f"it looks like a colour visualisation: {fixes.wrong_mode}"
            )
        return np.asarray(img)  # a palette image yields its indices


def to_contiguous(raw: np.ndarray, label: SemanticLabel) -> np.ndarray:
    """Maps raw label values to [H, W] int64 class indices, IGNORE_LABEL if unlabelled."""
    raw = raw.astype(np.int64)
    if label.id_map is None:
        out = raw
    else:
        lut = np.asarray(label.id_map, dtype=np.int64)  # [max raw value + 1]
        if raw.size and raw.max() >= len(lut):
            raise DatasetError(
                f"label map {label.path} holds value {int(raw.max())}, beyond the {len(lut)} values its "
                "dataset defines; the file is from another dataset or version"
            )
        out = lut[raw]
    return np.where(raw == label.ignore_value, IGNORE_LABEL, out)


def load_semantic(label: SemanticLabel | str | Path) -> np.ndarray:
    """Reads a label map as [H, W] int64 contiguous class indices, IGNORE_LABEL if unlabelled.

    Args:
        label: A record's ``SemanticLabel``, or the path of a prepared label map,
            whose ignore value is then taken from its dtype: 65535 for 16-bit
            maps (ADE20K-847, Pascal Context 459), else 255. Mapillary's 65
            needs the record's label.
    """
    if isinstance(label, SemanticLabel):
        return to_contiguous(read_label_map(label.path), label)
    raw = read_label_map(label)
    ignore = 65535 if raw.dtype == np.uint16 else 255
    return to_contiguous(raw, SemanticLabel(path=Path(label), ignore_value=ignore))


def panoptic_to_semantic(ids: np.ndarray, segments: tuple[Segment, ...] | list[Segment]) -> np.ndarray:
    """Paints each segment with its class: [H, W] int64, IGNORE_LABEL on VOID/unlisted ids."""
    out = np.full(ids.shape, IGNORE_LABEL, dtype=np.int64)
    for seg in segments:
        out[ids == seg.id] = seg.category
    return out


def _decode_coco(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as mask_util  # compiled extension, loaded on first use

    if isinstance(segmentation, list):  # polygons, possibly several per object
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowds)
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_util.decode(rle).astype(bool)


def load_instances(record: Record) -> list[tuple[InstanceAnnotation, np.ndarray]]:
    """Decodes a record's instance annotations into [H, W] bool masks.

    Returns:
        One (annotation, mask) pair per object, in annotation order.
    """
    if record.instances is None:
        raise DatasetError(f"image {record.image} has no instance annotations; read the dataset with the instance task")
    ids = None  # panoptic ids, read once if some instance refers to them
    pairs = []
    for ann in record.instances.annotations:
        if isinstance(ann.segmentation, int):
            ids = load_panoptic(record.instances.source) if ids is None else ids
            mask = ids == ann.segmentation
        else:
            mask = _decode_coco(ann.segmentation, record.height, record.width)
        pairs.append((ann, mask))
    return pairs
