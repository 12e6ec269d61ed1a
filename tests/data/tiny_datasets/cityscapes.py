"""Tiny Cityscapes (gtFine + leftImg8bit) and Mapillary Vistas v1.2.

Cityscapes labels used (label id -> train id): road 7 -> 0 (stuff), person 24
-> 11 (thing, here a crowd), car 26 -> 13 (thing, two instances); unlabeled 0
and ego vehicle 1 are ignored in evaluation.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .common import (
    IGNORE,
    H,
    Tiny,
    W,
    id_to_rgb,
    image,
    segment_info,
    write_jpg,
    write_json,
    write_palette_png,
    write_png,
)

CITY_VAL = ("frankfurt", "frankfurt_000000_000294")
CITY_TRAIN = ("aachen", "aachen_000000_000019")
_THINGS, _EVALUATED = {24, 26}, {7, 24, 26}  # the facts of cityscapesScripts' labels.py we need


def _instance_ids() -> np.ndarray:
    ids = np.full((H, W), 7, dtype=np.uint16)  # road
    ids[2:4, :4], ids[2:4, 4:] = 26000, 26001  # two cars
    ids[4:, :4] = 24  # a crowd of persons: label id only
    ids[4:, 4:] = 0  # unlabeled
    ids[5, 7] = 1  # ego vehicle
    return ids


def write_cityscapes_raw(root: Path) -> Tiny:
    """leftImg8bit/{val,train}/<city>/*_leftImg8bit.png, gtFine/.../*_gtFine_{labelIds,instanceIds}.png."""
    base = Path(root) / "cityscapes"
    ids = _instance_ids()
    label_ids = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
    for split, (city, stem) in (("val", CITY_VAL), ("train", CITY_TRAIN)):
        write_png(base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(len(stem)))
        write_png(base / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label_ids)
        write_png(base / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", ids)
    train_ids = np.select([label_ids == 7, label_ids == 24, label_ids == 26], [0, 11, 13], IGNORE)
    tiny = Tiny(root=Path(root), semantic={CITY_VAL[1]: train_ids, CITY_TRAIN[1]: train_ids})
    expected_ids = np.where(np.isin(label_ids, list(_EVALUATED)), ids, 0).astype(np.int64)
    segments = [(7, 0, False), (24, 11, True), (26000, 13, False), (26001, 13, False)]
    for _, stem in (CITY_VAL, CITY_TRAIN):
        tiny.panoptic[stem], tiny.segments[stem] = expected_ids, segments
        tiny.instances[stem] = [(11, True), (13, False), (13, False)]
    return tiny


def write_cityscapes_panoptic(gt_fine: Path, splits: tuple[str, ...] = ("val", "train")) -> None:
    """What cityscapesScripts' createPanopticImgs writes, for the labels above."""
    for split in splits:
        images, annotations = [], []
        for path in sorted((gt_fine / split).glob("*/*_gtFine_instanceIds.png")):
            raw = np.asarray(Image.open(path)).astype(np.int64)
            stem = path.name[: -len("_gtFine_instanceIds.png")]
            label = np.where(raw >= 1000, raw // 1000, raw)
            ids = np.where(np.isin(label, list(_EVALUATED)), raw, 0)
            infos = []
            for segment_id in np.unique(ids[ids > 0]):
                cat = int(segment_id // 1000 if segment_id >= 1000 else segment_id)
                infos.append(segment_info(ids, int(segment_id), cat, iscrowd=cat in _THINGS and segment_id < 1000))
            write_png(gt_fine / f"cityscapes_panoptic_{split}" / f"{stem}_gtFine_panoptic.png", id_to_rgb(ids))
            images.append({"id": stem, "file_name": f"{stem}_leftImg8bit.png", "height": H, "width": W})
            annotations.append({"image_id": stem, "file_name": f"{stem}_gtFine_panoptic.png", "segments_info": infos})
        categories = [{"id": i, "name": str(i), "isthing": int(i in _THINGS)} for i in sorted(_EVALUATED)]
        (gt_fine / f"cityscapes_panoptic_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories})
        )


def write_cityscapes(root: Path) -> Tiny:
    """The raw release plus labelTrainIds.png and the panoptic json/PNGs."""
    tiny = write_cityscapes_raw(root)
    gt_fine = Path(root) / "cityscapes" / "gtFine"
    for split, (city, stem) in (("val", CITY_VAL), ("train", CITY_TRAIN)):
        train_ids = np.where(tiny.semantic[stem] == IGNORE, 255, tiny.semantic[stem]).astype(np.uint8)
        write_png(gt_fine / split / city / f"{stem}_gtFine_labelTrainIds.png", train_ids)
    write_cityscapes_panoptic(gt_fine)
    return tiny


# ---- Mapillary Vistas v1.2 ----------------------------------------------------------------

MAPILLARY = "mapillary_vistas/validation"
MAPILLARY_STEM = "abcDEF123"


def write_mapillary(root: Path) -> Tiny:
    """images/*.jpg, labels/*.png (palette, 65 = unlabelled), panoptic/panoptic_2018.json + PNGs."""
    base = Path(root) / MAPILLARY
    labels = np.full((H, W), 65, dtype=np.uint8)
    labels[:3] = 13  # road (id 14)
    labels[3:, :4] = 0  # bird (id 1)
    ids = np.select([labels == 13, labels == 0], [1, 2], 0).astype(np.int64)
    write_jpg(base / "images" / f"{MAPILLARY_STEM}.jpg", image(7))
    write_palette_png(base / "labels" / f"{MAPILLARY_STEM}.png", labels)
    write_png(base / "panoptic" / f"{MAPILLARY_STEM}.png", id_to_rgb(ids))
    infos = [segment_info(ids, 1, 14), segment_info(ids, 2, 1)]
    categories = [{"id": i, "name": str(i), "isthing": int(i == 1)} for i in range(1, 66)]
    write_json(base / "panoptic" / "panoptic_2018.json", {
        "images": [{"id": MAPILLARY_STEM, "file_name": f"{MAPILLARY_STEM}.jpg", "height": H, "width": W}],
        "annotations": [{"image_id": MAPILLARY_STEM, "file_name": f"{MAPILLARY_STEM}.png", "segments_info": infos}],
        "categories": categories,
    })  # fmt: skip
    semantic = np.where(labels == 65, IGNORE, labels.astype(np.int64))
    return Tiny(root=Path(root), semantic={MAPILLARY_STEM: semantic}, panoptic={MAPILLARY_STEM: ids},
                segments={MAPILLARY_STEM: [(1, 13, False), (2, 0, False)]})  # fmt: skip
