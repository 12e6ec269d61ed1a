"""Tiny PASCAL Context (VOC2010 + .mat + trainval_merged.json) and PASCAL VOC 2012.

Context labels used (labels.txt ids): 1 accordion (not in PC-59), 2 aeroplane
(PC-59 index 0), 458 wood (PC-59 index 58, PC-459 index 457), 0 unlabelled.
VOC labels used: 0 background, 1 aeroplane, 15 person, 255 boundary.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import IGNORE, H, Tiny, W, image, write_jpg, write_json, write_palette_png, write_png, write_tif16

CONTEXT_VAL, CONTEXT_TRAIN = "2008_000001", "2008_000002"
VOC_VAL, VOC_TRAIN = "2007_000033", "2007_000032"


def _label_map() -> np.ndarray:
    labels = np.zeros((H, W), dtype=np.uint16)
    labels[:2] = 2  # aeroplane
    labels[2:4] = 458  # wood
    labels[4:, :4] = 1  # accordion; bottom right stays 0
    return labels


def expected_context(classes: int) -> np.ndarray:
    """What ``load_semantic`` gives for the label map of either image."""
    labels = _label_map().astype(np.int64)
    if classes == 59:
        return np.select([labels == 2, labels == 458], [0, 58], IGNORE)
    return np.where(labels == 0, IGNORE, labels - 1)


def write_pascal_context_raw(root: Path, classes: int = 59) -> Tiny:
    """VOCdevkit/VOC2010/{JPEGImages, trainval/*.mat, trainval_merged.json}; one val, one train image."""
    from scipy.io import savemat

    voc = Path(root) / "VOCdevkit" / "VOC2010"
    images = []
    for n, (stem, phase) in enumerate(((CONTEXT_VAL, "val"), (CONTEXT_TRAIN, "train"))):
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", image(n))
        (voc / "trainval").mkdir(parents=True, exist_ok=True)
        savemat(str(voc / "trainval" / f"{stem}.mat"), {"LabelMap": _label_map()})
        images.append({"image_id": n, "file_name": f"{stem}.jpg", "phase": phase, "height": H, "width": W})
    write_json(voc / "trainval_merged.json", {"images": images, "categories": [], "annos_segmentation": []})
    return Tiny(root=Path(root),
                semantic={CONTEXT_VAL: expected_context(classes), CONTEXT_TRAIN: expected_context(classes)})


def write_pascal_context(root: Path, classes: int) -> Tiny:
    """The prepared pascal_ctx_d2 layout for 59 (uint8 PNG) or 459 (uint16 TIFF), val only."""
    out = Path(root) / "pascal_ctx_d2"
    write_jpg(out / "images" / "validation" / f"{CONTEXT_VAL}.jpg", image(0))
    labels = expected_context(classes)
    if classes == 59:
        write_png(out / "annotations_ctx59" / "validation" / f"{CONTEXT_VAL}.png",
                  np.where(labels == IGNORE, 255, labels).astype(np.uint8))
    else:
        write_tif16(out / "annotations_ctx459" / "validation" / f"{CONTEXT_VAL}.tif",
                    np.where(labels == IGNORE, 65535, labels))
    return Tiny(root=Path(root), semantic={CONTEXT_VAL: labels})


def _voc_label() -> np.ndarray:
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:2, :4] = 1  # aeroplane
    labels[2:4] = 15  # person
    labels[1, :] = 255  # boundary
    return labels


def expected_voc(classes: int) -> np.ndarray:
    """What ``load_semantic`` gives for the prepared label map of either image."""
    raw = _voc_label().astype(np.int64)
    if classes == 21:
        return np.where(raw == 255, IGNORE, raw)
    return np.where((raw == 0) | (raw == 255), IGNORE, raw - 1)


def write_pascal_voc_raw(root: Path, classes: int = 21) -> Tiny:
    """VOCdevkit/VOC2012/{JPEGImages, SegmentationClass (palette PNG), ImageSets/Segmentation}."""
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    for n, (stem, split) in enumerate(((VOC_VAL, "val"), (VOC_TRAIN, "train"))):
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", image(10 + n))
        write_palette_png(voc / "SegmentationClass" / f"{stem}.png", _voc_label())
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"{stem}\n")
    return Tiny(root=Path(root), semantic={VOC_VAL: expected_voc(classes), VOC_TRAIN: expected_voc(classes)})


def write_pascal_voc(root: Path, classes: int) -> Tiny:
    """The prepared pascal_voc_d2 layout for 20 or 21 classes, val only."""
    out = Path(root) / "pascal_voc_d2"
    write_jpg(out / "images" / "validation" / f"{VOC_VAL}.jpg", image(10))
    expected = expected_voc(classes)
    labels = np.where(expected == IGNORE, 255, expected).astype(np.uint8)
    write_png(out / f"annotations_pascal{classes}" / "validation" / f"{VOC_VAL}.png", labels)
    return Tiny(root=Path(root), semantic={VOC_VAL: expected})
