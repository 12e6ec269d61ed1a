"""ADE20K-847 (ADE20K_2021_17_01 release) -> resized images and 16-bit TIFF labels.

Inputs, as released::

    ADE20K_2021_17_01/index_ade20k.pkl     dict with "folder" and "filename" lists;
                                           folders start with "ADE20K_2021_17_01/"
    <folder>/<name>.jpg, <folder>/<name>_seg.png
        _seg.png: RGB, raw ADE object class = R // 10 * 256 + G

Outputs (the official FC-CLIP layout)::

    ADE20K_2021_17_01/images_detectron2/{training,validation}/<name>.jpg
    ADE20K_2021_17_01/annotations_detectron2/{training,validation}/<name>.tif
        uint16 class index into the 847-class vocabulary, 65535 = unlabelled

Like the official script, images whose shorter side exceeds 512 pixels are
resized to 512 (labels: nearest exactly as OpenCV's INTER_NEAREST; images:
bilinear as INTER_LINEAR, equal within one grey level, OpenCV rounding in fixed
point) and every image is re-encoded as JPEG at Pillow's default quality.
The split is read from the file name (ADE_val_* -> validation).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from vocabseg.data.categories import index_by_dataset_id
from vocabseg.data.convert.common import Report, apply_lut, progress, read_raw, save_image
from vocabseg.data.errors import DatasetError, prepare_hint
from vocabseg.text.builtin import get_vocabulary

BASE = "ADE20K_2021_17_01"
MAX_SIZE = 512  # shorter side limit of the official conversion
IGNORE = 65535


def decode_classes(seg_rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] ADE _seg.png -> [H, W] int64 raw object class ids (0 = none)."""
    r, g = seg_rgb[..., 0].astype(np.int64), seg_rgb[..., 1].astype(np.int64)
    return r // 10 * 256 + g


def target_size(height: int, width: int, max_size: int = MAX_SIZE) -> tuple[int, int] | None:
    """(height, width) with the shorter side at ``max_size``, or None to keep the size."""
    if width >= height > max_size:
        return max_size, round(width / height * max_size)
    if height >= width > max_size:
        return round(height / width * max_size), max_size
    return None


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour with OpenCV's INTER_NEAREST rule: source = floor(dst * scale)."""
    height, width = label.shape[:2]
    rows = np.minimum((np.arange(size[0]) * (height / size[0])).astype(np.int64), height - 1)
    cols = np.minimum((np.arange(size[1]) * (width / size[1])).astype(np.int64), width - 1)
    return label[rows[:, None], cols[None, :]]


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 bilinear resize with half-pixel centres and no antialiasing (INTER_LINEAR)."""
    import torch  # only this conversion needs it
    import torch.nn.functional as F

    x = torch.tensor(image).permute(2, 0, 1)[None].float()  # [1, 3, H, W]; a copy: PIL's arrays are read-only
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def class_lut() -> np.ndarray:
    """uint16 table raw ADE class id -> 847-class index, 65535 for other ids."""
    table = index_by_dataset_id(get_vocabulary("ade20k_847"))
    lut = np.full(max(table) + 1, IGNORE, dtype=np.uint16)
    lut[list(table)] = list(table.values())
    return lut


def load_index(root: Path) -> list[tuple[Path, str]]:
    """(image path, split folder) of every image listed in index_ade20k.pkl."""
    index_file = root / BASE / "index_ade20k.pkl"
    if not index_file.is_file():
        raise DatasetError(
            f"file {index_file} not found; download ADE20K_2021_17_01 from "
            f"https://groups.csail.mit.edu/vision/datasets/ADE20K and unzip it into {root}"
        )
    with open(index_file, "rb") as f:
        index = pickle.load(f)  # the official release's own index file
    pairs = []
    for folder, name in zip(index["folder"], index["filename"]):
        # Folders are relative to the folder holding ADE20K_2021_17_01.
        base = root if str(folder).startswith(BASE) else root / BASE
        split = "validation" if name.split("_")[1] == "val" else "training"
        pairs.append((base / folder / name, split))
    return pairs


def convert_one(image_path: Path, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, uint16 label) of one release image, resized like the official script."""
    image = read_raw(image_path)
    if image.ndim == 2:  # a few release images are grey
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    classes = decode_classes(read_raw(image_path.with_name(image_path.stem + "_seg.png")))
    size = target_size(*image.shape[:2])
    if size is not None:
        image, classes = resize_bilinear(image, size), resize_nearest(classes, size)
    return image, apply_lut(classes, lut, IGNORE)


def prepare_ade20k_847(root: Path, *, show: bool = True) -> Report:
    """Writes images_detectron2/ and annotations_detectron2/ for both splits."""
    report = Report()
    pairs = load_index(root)
    lut = class_lut()
    written = skipped = 0
    for image_path, split in progress(pairs, "ADE20K-847", show):
        out_image = root / BASE / "images_detectron2" / split / image_path.name
        out_label = root / BASE / "annotations_detectron2" / split / f"{image_path.stem}.tif"
        if out_image.exists() and out_label.exists():
            skipped += 1
            continue
        if not image_path.is_file():
            raise DatasetError(
                f"image {image_path} listed in index_ade20k.pkl not found; "
                f"unzip the full release, then {prepare_hint('ade20k_847', root)}"
            )
        image, label = convert_one(image_path, lut)
        save_image(label, out_label)
        save_image(image, out_image)
        written += 2
    report.split_done("ade20k_847", written, skipped, root / BASE)
    return report
