"""Readers: a split's files on disk -> a list of ``Record``.

Three shapes cover every registered split:

* ``read_panoptic_json``: a COCO-format panoptic json + PNG folder, optional
  semantic label folder and COCO instances json (COCO, ADE20K-150, Mapillary).
* ``read_semantic_folder``: an image folder and a label-map folder matched by
  file stem (ADE20K-150/847 semantic, Pascal Context/VOC, COCO-Stuff), optionally
  restricted to the stems of a split list file and read with mmseg's
  ``reduce_zero_label`` (the mmseg layouts of the Cascade-CLIP splits).
* ``read_cityscapes``: city sub-folders with cityscapesScripts' file suffixes.

Every file a requested task needs is checked to exist, so a dataset that was
never prepared fails here with the command that fixes it.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vocabseg.data.categories import index_by_dataset_id, lookup
from vocabseg.data.errors import DatasetError, read_json, require_dir, require_keys
from vocabseg.data.records import (
    IGNORE_LABEL,
    InstanceAnnotation,
    InstanceLabel,
    PanopticLabel,
    Record,
    Segment,
    SemanticLabel,
)
from vocabseg.data.spec import SplitSpec
from vocabseg.text.builtin import get_vocabulary
from vocabseg.text.vocabulary import Vocabulary


def _require_files(paths: list[Path], what: str, fix: str) -> None:
    """Raises if any path is missing, naming the count and the first one."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(paths)} {what} are missing, e.g. {missing[0]}; {fix}")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:  # reads the header only
        return img.height, img.width


def _bbox(values: Any) -> tuple[float, float, float, float]:
    """A COCO box ``[x, y, width, height]`` as floats."""
    x, y, width, height = (float(v) for v in values)
    return x, y, width, height


def reduce_zero_label_table(label_bits: int = 8) -> tuple[int, ...]:
    """mmseg's ``reduce_zero_label`` as a raw value -> class index table: 0 -> ignored, v -> v - 1.

    The ignore value (255) is dropped by ``SemanticLabel.ignore_value`` before the table matters,
    as mmseg's 255 -> 254 -> 255 round trip does.
    """
    return (IGNORE_LABEL, *range(2**label_bits - 1))


def _semantic(spec: SplitSpec, path: Path) -> SemanticLabel:
    id_map = reduce_zero_label_table(spec.label_bits) if spec.reduce_zero_label else None
    return SemanticLabel(path=path, ignore_value=spec.ignore_value, id_map=id_map)


@dataclass(frozen=True)
class _Categories:
    """A vocabulary and its dataset_id -> index table, built once per read."""

    vocab: Vocabulary
    table: dict[int, int]
    where: str  # the json being read, for error messages

    @classmethod
    def of(cls, spec: SplitSpec, where: Path) -> _Categories:
        vocab = get_vocabulary(spec.vocabulary)
        return cls(vocab, index_by_dataset_id(vocab), str(where))

    def index(self, dataset_id: int) -> int:
        return lookup(self.table, dataset_id, self.where, self.vocab.name)


def _segments(ann: dict[str, Any], cats: _Categories) -> tuple[Segment, ...]:
    segments = []
    for seg in ann["segments_info"]:
        if not isinstance(seg, dict) or "id" not in seg or "category_id" not in seg:  # cheap test first: COCO has 1M
            where = f"{cats.where}: a segment of image {ann['image_id']}"
            require_keys(seg, ("id", "category_id"), where, "prepare or download it again")
        index = cats.index(seg["category_id"])
        segments.append(
            Segment(
                id=int(seg["id"]),
                category=index,
                is_thing=cats.vocab.classes[index].is_thing,
                iscrowd=bool(seg.get("iscrowd", 0)),
                area=int(seg.get("area", 0)),
            )
        )
    return tuple(segments)


def _coco_instances(path: Path, spec: SplitSpec, fix: str) -> dict[Any, tuple[InstanceAnnotation, ...]]:
    """A COCO instances json grouped by image id, categories made contiguous."""
    data = read_json(path, fix)
    require_keys(data, ("images", "annotations", "categories"), f"instances json {path}", fix)
    cats = _Categories.of(spec, path)
    by_image: dict[Any, list[InstanceAnnotation]] = defaultdict(list)
    for ann in data["annotations"]:
        require_keys(ann, ("image_id", "category_id", "segmentation", "bbox"), f"an annotation in {path}", fix)
        by_image[ann["image_id"]].append(
            InstanceAnnotation(
                category=cats.index(ann["category_id"]),
                iscrowd=bool(ann.get("iscrowd", 0)),
                bbox=_bbox(ann["bbox"]),
                area=float(ann.get("area", 0.0)),
                segmentation=ann["segmentation"],
            )
        )
    return {k: tuple(v) for k, v in by_image.items()}


def _load_panoptic_json(spec: SplitSpec, root: Path) -> dict[str, Any]:
    path = spec.required_path(root, spec.panoptic_json, "panoptic json")
    fix = spec.fix("panoptic", root)
    data = read_json(path, fix)
    require_keys(data, ("images", "annotations", "categories"), f"panoptic json {path}", fix)
    for ann in data["annotations"]:
        require_keys(ann, ("image_id", "file_name", "segments_info"), f"an annotation in {path}", fix)
    return data


def _panoptic(spec: SplitSpec, root: Path, ann: dict[str, Any], cats: _Categories) -> PanopticLabel:
    png = spec.required_path(root, spec.panoptic_dir, "panoptic PNG folder") / ann["file_name"]
    return PanopticLabel(png=png, segments=_segments(ann, cats))


def read_panoptic_json(spec: SplitSpec, root: Path, tasks: frozenset[str]) -> list[Record]:
    """Records of a COCO-format panoptic split; images come from the json."""
    data = _load_panoptic_json(spec, root)
    images = {img["id"]: img for img in data["images"]}
    cats = _Categories.of(spec, spec.required_path(root, spec.panoptic_json, "panoptic json"))
    instances_json = None
    instances = None
    if "instance" in tasks:
        instances_json = spec.required_path(root, spec.instance_json, "instances json")
        instances = _coco_instances(instances_json, spec, spec.fix("instance", root))
    records = []
    for ann in data["annotations"]:
        image_id = ann["image_id"]
        img = images.get(image_id)
        if img is None:
            raise DatasetError(f"{cats.where}: image {image_id} is annotated but not listed in 'images'; "
                               "download it again")
        stem = Path(img["file_name"]).stem
        panoptic = _panoptic(spec, root, ann, cats) if "panoptic" in tasks else None
        semantic = None
        if "semantic" in tasks:
            semantic_dir = spec.required_path(root, spec.semantic_dir, "semantic label folder")
            semantic = _semantic(spec, semantic_dir / (stem + spec.semantic_ext))
        inst = None
        if instances_json is not None and instances is not None:
            inst = InstanceLabel(source=instances_json, image_id=image_id, annotations=instances.get(image_id, ()))
        image = Path(root) / spec.images / img["file_name"]
        records.append(Record(image, image_id, int(img["height"]), int(img["width"]), panoptic, semantic, inst))
    _check_record_files(spec, root, records)
    return records


def _check_record_files(spec: SplitSpec, root: Path, records: list[Record]) -> None:
    if not records:
        raise DatasetError(f"dataset {spec.name} under {root} has no images; {spec.fix('images', root)}")
    _require_files([r.image for r in records], "images", spec.fix("images", root))
    if records[0].panoptic is not None:
        pngs = [r.panoptic.png for r in records if r.panoptic is not None]
        _require_files(pngs, "panoptic PNGs", spec.fix("panoptic", root))
    if records[0].semantic is not None:
        label_maps = [r.semantic.path for r in records if r.semantic is not None]
        _require_files(label_maps, "semantic label maps", spec.fix("semantic", root))


def _split_stems(spec: SplitSpec, root: Path) -> list[str]:
    """The image stems a split list file names, one a line (mmseg's ``split``), in file order."""
    path = spec.required_path(root, spec.split_file, "split list file")
    if not path.is_file():
        raise DatasetError(f"split list {path} not found; {spec.fix('release', root)}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_semantic_folder(spec: SplitSpec, root: Path, tasks: frozenset[str]) -> list[Record]:
    """Records of every image in the image folder (or of the split list's stems), each with its label map."""
    image_dir = require_dir(Path(root) / spec.images, spec.fix("images", root))
    label_dir = spec.required_path(root, spec.semantic_dir, "semantic label folder")
    if spec.split_file is None:
        images = sorted(image_dir.glob(f"*{spec.image_ext}"))
    else:
        images = [image_dir / f"{stem}{spec.image_ext}" for stem in _split_stems(spec, root)]
        _require_files(images, "images of the split list", spec.fix("images", root))
    records = []
    for image in images:
        height, width = _image_size(image)
        semantic = _semantic(spec, label_dir / (image.stem + spec.semantic_ext))
        records.append(Record(image=image, image_id=image.stem, height=height, width=width, semantic=semantic))
    _check_record_files(spec, root, records)
    return records


def _cityscapes_semantic(image: Path, spec: SplitSpec, root: Path) -> Path:
    # leftImg8bit/val/frankfurt/X_leftImg8bit.png -> gtFine/val/frankfurt/X_gtFine_labelTrainIds.png
    image_id = image.name[: -len("_leftImg8bit.png")]
    label_dir = spec.required_path(root, spec.semantic_dir, "semantic label folder")
    return label_dir / image.parent.name / f"{image_id}_gtFine_labelTrainIds.png"


def read_cityscapes(spec: SplitSpec, root: Path, tasks: frozenset[str]) -> list[Record]:
    """Records of leftImg8bit/<split>/<city>/*; instances are the panoptic things."""
    image_dir = require_dir(Path(root) / spec.images, spec.fix("images", root))
    annotations: dict[str, dict[str, Any]] = {}
    if tasks & {"panoptic", "instance"}:
        annotations = {ann["image_id"]: ann for ann in _load_panoptic_json(spec, root)["annotations"]}
    cats = _Categories.of(spec, spec.required_path(root, spec.panoptic_json, "panoptic json"))
    records = []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        image_id = image.name[: -len("_leftImg8bit.png")]
        height, width = _image_size(image)
        semantic = _semantic(spec, _cityscapes_semantic(image, spec, root)) if "semantic" in tasks else None
        panoptic = inst = None
        if annotations:
            if image_id not in annotations:
                raise DatasetError(f"image {image} is not in {cats.where}; {spec.fix('panoptic', root)}")
            panoptic = _panoptic(spec, root, annotations[image_id], cats)
            inst = _things_as_instances(panoptic, annotations[image_id]) if "instance" in tasks else None
        records.append(Record(image, image_id, height, width, panoptic, semantic, inst))
    _check_record_files(spec, root, records)
    if "panoptic" not in tasks:  # read only to derive the instances
        records = [dataclasses.replace(r, panoptic=None) for r in records]
    return records


def _things_as_instances(panoptic: PanopticLabel, ann: dict[str, Any]) -> InstanceLabel:
    boxes = {int(s["id"]): _bbox(s.get("bbox", (0, 0, 0, 0))) for s in ann["segments_info"]}
    objects = tuple(
        InstanceAnnotation(s.category, s.iscrowd, bbox=boxes[s.id], area=float(s.area), segmentation=s.id)
        for s in panoptic.segments
        if s.is_thing
    )
    return InstanceLabel(source=panoptic.png, image_id=ann["image_id"], annotations=objects)
