"""PASCAL Context (59 / 459 classes) and PASCAL VOC 2012 (20 / 21 classes).

Inputs, as released::

    VOCdevkit/VOC2010/JPEGImages/*.jpg
    VOCdevkit/VOC2010/trainval/<stem>.mat      "LabelMap": uint16, 0 = unlabelled, 1..459 = labels.txt ids
    VOCdevkit/VOC2010/trainval_merged.json     "images": [{"file_name", "phase": "train" | "val"}, ...]
    VOCdevkit/VOC2012/JPEGImages/*.jpg
    VOCdevkit/VOC2012/SegmentationClass/*.png  palette PNG: 0 background, 1..20 classes, 255 boundary
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt

Outputs (the official FC-CLIP layout)::

    pascal_ctx_d2/images/<dir>/*.jpg, annotations_ctx59/<dir>/*.png (uint8, 255 ignore),
    annotations_ctx459/<dir>/*.tif (uint16, 65535 ignore)
    pascal_voc_d2/images/<dir>/*.jpg, annotations_pascal21/<dir>/*.png (raw values),
    annotations_pascal20/<dir>/*.png (background -> 255, classes shifted down by one)

The split of a Context image is its "phase" in trainval_merged.json, which the
official conversion reads through the Detail API. PC-59 keeps the 59 classes of
``PASCAL_CONTEXT_59_IN_459`` and marks every other label unlabelled.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vocabseg.data.categories import PASCAL_CONTEXT_59_IN_459
from vocabseg.data.convert.common import Report, apply_lut, copy_file, progress, read_raw, save_image
from vocabseg.data.errors import DatasetError, read_json, require_file

SPLITS = {"train": "training", "val": "validation"}
CONTEXT = "VOCdevkit/VOC2010"
VOC = "VOCdevkit/VOC2012"
_CONTEXT_FIX = "download trainval_merged.json (see the PASCAL Context section of the docs) into {}"


def context_59(label_map: np.ndarray) -> np.ndarray:
    """459-label LabelMap -> uint8 PC-59 index, 255 for unlabelled and other labels."""
    lut = np.full(max(PASCAL_CONTEXT_59_IN_459) + 1, 255, dtype=np.uint8)
    lut[list(PASCAL_CONTEXT_59_IN_459)] = np.arange(len(PASCAL_CONTEXT_59_IN_459))
    return apply_lut(label_map, lut, 255)


def context_459(label_map: np.ndarray) -> np.ndarray:
    """459-label LabelMap -> uint16 index (label - 1), 65535 for unlabelled (0)."""
    shifted = label_map.astype(np.int64) - 1
    return np.where(shifted < 0, 65535, shifted).astype(np.uint16)


def voc_21(raw: np.ndarray) -> np.ndarray:
    """VOC label as stored: 0 background, 1..20 classes, 255 boundary."""
    return raw.astype(np.uint8)


def voc_20(raw: np.ndarray) -> np.ndarray:
    """VOC label without background: class c -> c - 1; background and boundary -> 255."""
    out = raw.astype(np.int16) - 1
    return np.where((raw == 0) | (raw == 255), 255, out).astype(np.uint8)


def _load_mat_label(path: Path) -> np.ndarray:
    from scipy.io import loadmat  # heavy import, only needed here

    if not path.is_file():
        raise DatasetError(f"file {path} not found; untar trainval.tar.gz (PASCAL Context) into {path.parent.parent}")
    return loadmat(str(path))["LabelMap"]


def _context_stems(root: Path) -> dict[str, list[str]]:
    merged = root / CONTEXT / "trainval_merged.json"
    data = read_json(merged, _CONTEXT_FIX.format(merged.parent))
    stems: dict[str, list[str]] = {"train": [], "val": []}
    for img in data.get("images", []):
        if img.get("phase") in stems:
            stems[img["phase"]].append(Path(img["file_name"]).stem)
    if not stems["train"] and not stems["val"]:
        raise DatasetError(f"{merged} lists no train/val images; download it again")
    return stems


def _convert_context(root: Path, classes: int, show: bool) -> Report:
    convert = context_59 if classes == 59 else context_459
    suffix = ".png" if classes == 59 else ".tif"
    report = Report()
    for split, stems in _context_stems(root).items():
        out_images = root / "pascal_ctx_d2" / "images" / SPLITS[split]
        out_labels = root / "pascal_ctx_d2" / f"annotations_ctx{classes}" / SPLITS[split]
        written = skipped = 0
        for stem in progress(sorted(stems), f"PASCAL Context {classes} {split}", show):
            image, label = out_images / f"{stem}.jpg", out_labels / f"{stem}{suffix}"
            if image.exists() and label.exists():
                skipped += 1
                continue
            save_image(convert(_load_mat_label(root / CONTEXT / "trainval" / f"{stem}.mat")), label)
            src = require_file(root / CONTEXT / "JPEGImages" / f"{stem}.jpg", "untar VOCtrainval_03-May-2010.tar again")
            copy_file(src, image)
            written += 2
        report.split_done(f"pascal_context_{classes} {split}", written, skipped, out_labels)
    return report


def _convert_voc(root: Path, classes: int, convert: Callable[[np.ndarray], np.ndarray], show: bool) -> Report:
    report = Report()
    for split, dirname in SPLITS.items():
        list_file = root / VOC / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            report.split_missing(f"pascal_voc_{classes} {split}", list_file)
            continue
        stems = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        out_images = root / "pascal_voc_d2" / "images" / dirname
        out_labels = root / "pascal_voc_d2" / f"annotations_pascal{classes}" / dirname
        written = skipped = 0
        for stem in progress(stems, f"PASCAL VOC {classes} {split}", show):
            image, label = out_images / f"{stem}.jpg", out_labels / f"{stem}.png"
            if image.exists() and label.exists():
                skipped += 1
                continue
            for src in (root / VOC / "SegmentationClass" / f"{stem}.png", root / VOC / "JPEGImages" / f"{stem}.jpg"):
                require_file(src, "untar VOCtrainval_11-May-2012.tar again")
            save_image(convert(read_raw(root / VOC / "SegmentationClass" / f"{stem}.png")), label)
            copy_file(root / VOC / "JPEGImages" / f"{stem}.jpg", image)
            written += 2
        report.split_done(f"pascal_voc_{classes} {split}", written, skipped, out_labels)
    return report


def prepare_pascal_context_59(root: Path, *, show: bool = True) -> Report:
    return _convert_context(root, 59, show)


def prepare_pascal_context_459(root: Path, *, show: bool = True) -> Report:
    return _convert_context(root, 459, show)


def prepare_pascal_voc_20(root: Path, *, show: bool = True) -> Report:
    return _convert_voc(root, 20, voc_20, show)


def prepare_pascal_voc_21(root: Path, *, show: bool = True) -> Report:
    return _convert_voc(root, 21, voc_21, show)
