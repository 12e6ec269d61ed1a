"""Tiny ADE20K-150 (ADEChallengeData2016) and ADE20K-847 (ADE20K_2021_17_01).

ADE20K-150 classes used (index): wall 0 (stuff), sky 2 (stuff), bed 7 (thing,
instance class 1). The validation image has two beds painted over sky and
unlabelled pixels, and one semantic "bed" pixel no instance covers.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .common import (
    IGNORE,
    H,
    Tiny,
    W,
    compressed_rle,
    id_to_rgb,
    image,
    segment_info,
    write_jpg,
    write_json,
    write_png,
    write_tif16,
)

BASE = "ADEChallengeData2016"
VAL, TRAIN = "ADE_val_00000001", "ADE_train_00000001"


def _val_raw() -> tuple[np.ndarray, np.ndarray]:
    """(semantic uint8 as released, instance RGB uint8) of the validation image."""
    sem = np.zeros((H, W), dtype=np.uint8)
    sem[:2] = 1  # wall
    sem[2:4] = 3  # sky
    sem[1, 4] = 8  # a "bed" pixel without instance: VOID in panoptic
    sem[2:, :2] = 8
    sem[2:, 6:] = 8
    ins = np.zeros((H, W, 3), dtype=np.uint8)
    ins[2:, :2] = (1, 1, 0)  # R: instance class 1 (bed), G: object 1
    ins[2:, 6:] = (1, 2, 0)  # object 2
    return sem, ins


def _val_panoptic() -> np.ndarray:
    ids = np.zeros((H, W), dtype=np.int64)
    ids[:2] = 1  # wall: 0 * 1000 + 1
    ids[1, 4] = 0
    ids[2:4, 2:6] = 2001  # sky
    ids[2:, :2] = 7001  # bed 1
    ids[2:, 6:] = 7002  # bed 2
    return ids


def write_ade20k_raw(root: Path) -> Tiny:
    """images/, annotations/ and annotations_instance/ for one val and one train image."""
    base = Path(root) / BASE
    sem, ins = _val_raw()
    train_sem = np.ones((H, W), dtype=np.uint8)  # all wall
    train_ins = np.zeros((H, W, 3), np.uint8)
    for stem, dirname, s, i in ((VAL, "validation", sem, ins), (TRAIN, "training", train_sem, train_ins)):
        write_jpg(base / "images" / dirname / f"{stem}.jpg", image(len(stem) + len(dirname)))
        write_png(base / "annotations" / dirname / f"{stem}.png", s)
        write_png(base / "annotations_instance" / dirname / f"{stem}.png", i)
    tiny = Tiny(root=Path(root))
    tiny.semantic = {VAL: np.where(sem == 0, IGNORE, sem.astype(np.int64) - 1), TRAIN: np.zeros((H, W), np.int64)}
    tiny.panoptic = {VAL: _val_panoptic(), TRAIN: np.ones((H, W), np.int64)}
    tiny.segments = {VAL: [(1, 0, False), (2001, 2, False), (7001, 7, False), (7002, 7, False)], TRAIN: [(1, 0, False)]}
    tiny.instances = {VAL: [(7, False), (7, False)], TRAIN: []}
    return tiny


def write_ade20k(root: Path) -> Tiny:
    """The raw release plus everything `prepare ade20k_150` writes, written by hand."""
    tiny = write_ade20k_raw(root)
    base = Path(root) / BASE
    for split, stem, dirname in (("val", VAL, "validation"), ("train", TRAIN, "training")):
        sem = np.where(tiny.semantic[stem] == IGNORE, 255, tiny.semantic[stem]).astype(np.uint8)
        write_png(base / "annotations_detectron2" / dirname / f"{stem}.png", sem)
        ids = tiny.panoptic[stem]
        write_png(base / f"ade20k_panoptic_{split}" / f"{stem}.png", id_to_rgb(ids))
        img = {"id": stem, "file_name": f"{stem}.jpg", "height": H, "width": W}
        infos = [segment_info(ids, sid, index) for sid, index, _ in tiny.segments[stem]]
        pan = {"images": [img], "annotations": [{"image_id": stem, "file_name": f"{stem}.png", "segments_info": infos}],
               "categories": _categories(things_only=False)}  # fmt: skip
        write_json(base / f"ade20k_panoptic_{split}.json", pan)
        objects = [
            {"id": n + 1, "image_id": stem, "category_id": 7, "iscrowd": 0, "bbox": segment_info(ids, sid, 7)["bbox"],
             "area": int((ids == sid).sum()), "segmentation": compressed_rle(ids == sid)}
            for n, sid in enumerate(s for s, index, _ in tiny.segments[stem] if index == 7)
        ]  # fmt: skip
        write_json(base / f"ade20k_instance_{split}.json",
                   {"images": [img], "annotations": objects, "categories": _categories(things_only=True)})
    return tiny


def _categories(things_only: bool) -> list[dict]:
    from vocabseg.text.builtin import get_vocabulary

    classes = enumerate(get_vocabulary("ade20k_150").classes)
    return [{"id": i, "name": c.name, "isthing": int(c.is_thing)} for i, c in classes if c.is_thing or not things_only]


# ---- ADE20K-847 ---------------------------------------------------------------------------

FULL = "ADE20K_2021_17_01"
BIG = (520, 530)  # the training image is resized to a 512 shorter side -> (512, 522)


def _seg_png(raw_classes: np.ndarray) -> np.ndarray:
    """Raw ADE class ids -> the release's _seg.png colours (R = id // 256 * 10, G = id % 256)."""
    out = np.zeros((*raw_classes.shape, 3), dtype=np.uint8)
    out[..., 0] = raw_classes // 256 * 10
    out[..., 1] = raw_classes % 256
    return out


def write_ade20k_full_raw(root: Path) -> Tiny:
    """index_ade20k.pkl plus one small val image and one big train image with _seg.png."""
    val = np.zeros((H, W), dtype=np.int64)
    val[:3] = 2978  # wall -> 0
    val[3:, :4] = 312  # building -> 1
    val[3:, 4:6] = 5  # a raw class outside the 847 -> ignore; the rest stays 0 (none)
    train = np.zeros(BIG, dtype=np.int64)
    train[: BIG[0] // 2] = 2420  # sky -> 2
    folders = [f"{FULL}/images/ADE/validation/home/bedroom", f"{FULL}/images/ADE/training/urban/street"]
    names = [f"{VAL}.jpg", f"{TRAIN}.jpg"]
    for folder, name, classes, seed in zip(folders, names, (val, train), (1, 2)):
        write_jpg(Path(root) / folder / name, image(seed, *classes.shape))
        write_png(Path(root) / folder / name.replace(".jpg", "_seg.png"), _seg_png(classes))
    with open(Path(root) / FULL / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": folders, "filename": names, "objectnames": ["-"]}, f)
    expected = np.full((H, W), IGNORE, dtype=np.int64)
    expected[:3], expected[3:, :4] = 0, 1
    return Tiny(root=Path(root), semantic={VAL: expected})


def write_ade20k_full(root: Path) -> Tiny:
    """The prepared 847 layout: images_detectron2/ and 16-bit annotations_detectron2/ (val only)."""
    tiny = Tiny(root=Path(root))
    labels = np.full((H, W), 65535, dtype=np.uint16)
    labels[:3], labels[3:, :4], labels[3:, 4:6] = 0, 1, 846
    write_jpg(Path(root) / FULL / "images_detectron2" / "validation" / f"{VAL}.jpg", image(1))
    write_tif16(Path(root) / FULL / "annotations_detectron2" / "validation" / f"{VAL}.tif", labels)
    tiny.semantic[VAL] = np.where(labels == 65535, IGNORE, labels.astype(np.int64))
    return tiny
