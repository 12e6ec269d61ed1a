"""Tiny datasets in the mmseg layouts of the Cascade-CLIP zero-shot splits (its official configs).

* VOC 2012: the release itself (JPEGImages, palette SegmentationClass, ImageSets/Segmentation/val.txt),
  read with reduce_zero_label: 0 background -> ignored, k -> k - 1, 255 boundary -> ignored.
* PASCAL Context 59: VOC2010/JPEGImages, SegmentationClassContext (uint8 0..59, 0 background),
  ImageSets/SegmentationContext/val.txt; reduce_zero_label as VOC.
* COCO-Stuff 164k: coco_stuff164k/images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png (0..170, 255).

Each folder also holds an image the split list does not name, which reading must skip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import IGNORE, H, Tiny, W, image, write_jpg, write_palette_png, write_png

VOC_VAL, VOC_OTHER = "2007_000033", "2007_000032"
CONTEXT_VAL, CONTEXT_OTHER = "2008_000001", "2008_000002"
COCO_VAL = "000000000139"


def _bands(values: list[int], dtype=np.uint8) -> np.ndarray:
    """[H, W] label map of horizontal bands, one per value (the last one takes the remaining rows)."""
    labels = np.empty((H, W), dtype=dtype)
    rows = np.array_split(np.arange(H), len(values))
    for value, band in zip(values, rows):
        labels[band] = value
    return labels


def _reduced(raw: np.ndarray) -> np.ndarray:
    """mmseg's reduce_zero_label, written out: 0 and 255 ignored, k -> k - 1."""
    raw = raw.astype(np.int64)
    return np.where((raw == 0) | (raw == 255), IGNORE, raw - 1)


# raw VOC values: background, aeroplane (1, seen), pottedplant (16, unseen 15), tvmonitor (20, unseen 19), boundary
VOC_RAW = [0, 1, 16, 20, 255]
# raw Context values: background, aeroplane (1 -> 0, unseen), bag (2 -> 1, seen), wood (59 -> 58, seen)
CONTEXT_RAW = [0, 1, 2, 59]
# COCO-Stuff train ids: person (0), cow (19, unseen), wood (170), ignore
COCO_RAW = [0, 19, 170, 255]


def _write_voc_layout(root: Path, year: str, labels: str, lists: str, raw_values: list[int], stems: tuple[str, str],
                      seed: int, write_label) -> Tiny:
    """A VOCdevkit/VOC<year> folder: two images with label maps, the first one listed in val.txt."""
    voc = Path(root) / "VOCdevkit" / f"VOC{year}"
    raw = _bands(raw_values)
    for n, stem in enumerate(stems):
        write_jpg(voc / "JPEGImages" / f"{stem}.jpg", image(seed + n))
        write_label(voc / labels / f"{stem}.png", raw)
    (voc / "ImageSets" / lists).mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / lists / "val.txt").write_text(f"{stems[0]}\n")
    return Tiny(root=Path(root), semantic={stems[0]: _reduced(raw)})


def write_cascade_voc(root: Path) -> Tiny:
    return _write_voc_layout(root, "2012", "SegmentationClass", "Segmentation", VOC_RAW, (VOC_VAL, VOC_OTHER), 20,
                             write_palette_png)


def write_cascade_context(root: Path) -> Tiny:
    return _write_voc_layout(root, "2010", "SegmentationClassContext", "SegmentationContext", CONTEXT_RAW,
                             (CONTEXT_VAL, CONTEXT_OTHER), 30, write_png)


def write_cascade_coco_stuff(root: Path) -> Tiny:
    base = Path(root) / "coco_stuff164k"
    raw = _bands(COCO_RAW)
    write_jpg(base / "images" / "val2017" / f"{COCO_VAL}.jpg", image(40))
    write_png(base / "annotations" / "val2017" / f"{COCO_VAL}_labelTrainIds.png", raw)
    return Tiny(root=Path(root), semantic={COCO_VAL: np.where(raw == 255, IGNORE, raw.astype(np.int64))})


def write_cascade_coco_stuff_raw(root: Path) -> Tiny:
    """Images and stuffthingmaps (COCO category id - 1) unzipped into coco_stuff164k, before mmseg's conversion."""
    base = Path(root) / "coco_stuff164k"
    write_jpg(base / "images" / "val2017" / f"{COCO_VAL}.jpg", image(40))
    # person (id 1), cow (id 21 -> train id 19), wood (id 182 -> 170), unlabelled
    write_png(base / "annotations" / "val2017" / f"{COCO_VAL}.png", _bands([0, 20, 181, 255]))
    expected = _bands(COCO_RAW).astype(np.int64)
    return Tiny(root=Path(root), semantic={COCO_VAL: np.where(expected == 255, IGNORE, expected)})
