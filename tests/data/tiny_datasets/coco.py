"""Tiny COCO (panoptic + instances + semantic-from-panoptic) and COCO-Stuff.

Classes used (coco_panoptic index / COCO id): person 0/1 (thing), car 2/3
(thing), banner 80/92 (stuff), rug 132/200 (stuff).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import (
    IGNORE,
    H,
    Tiny,
    W,
    id_to_rgb,
    image,
    segment_info,
    uncompressed_rle,
    write_jpg,
    write_json,
    write_png,
)

IMAGES = {139: "000000000139", 285: "000000000285"}  # image id -> file stem


def _panoptic_ids() -> dict[int, np.ndarray]:
    first = np.zeros((H, W), dtype=np.int64)
    first[:3, :4] = 1  # person
    first[:3, 4:] = 2  # banner
    first[3:, :4] = 3  # car crowd; bottom right stays VOID
    second = np.full((H, W), 5, dtype=np.int64)  # rug
    second[:, 0] = 0
    return {139: first, 285: second}


_SEGMENTS = {139: [(1, 1, 0, False), (2, 92, 80, False), (3, 3, 2, True)], 285: [(5, 200, 132, False)]}


def _categories() -> list[dict]:
    from vocabseg.text.builtin import get_vocabulary

    return [
        {"id": c.dataset_id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color or (0, 0, 0)),
         "supercategory": "x"}
        for c in get_vocabulary("coco_panoptic").classes
    ]


def write_coco_raw(root: Path, split: str = "val") -> Tiny:
    """coco/{split}2017, annotations/panoptic_ + instances_{split}2017.json, panoptic_{split}2017/."""
    coco = Path(root) / "coco"
    tiny = Tiny(root=Path(root))
    ids_by_image = _panoptic_ids()
    images, annotations, objects = [], [], []
    for image_id, stem in IMAGES.items():
        ids = ids_by_image[image_id]
        write_jpg(coco / f"{split}2017" / f"{stem}.jpg", image(image_id))
        write_png(coco / f"panoptic_{split}2017" / f"{stem}.png", id_to_rgb(ids))
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": H, "width": W})
        infos = [segment_info(ids, sid, cid, crowd) for sid, cid, _, crowd in _SEGMENTS[image_id]]
        annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": infos})
        semantic = np.full((H, W), IGNORE, dtype=np.int64)
        for sid, _, index, _ in _SEGMENTS[image_id]:
            semantic[ids == sid] = index
        tiny.panoptic[stem], tiny.semantic[stem] = ids, semantic
        tiny.segments[stem] = [(sid, index, crowd) for sid, _, index, crowd in _SEGMENTS[image_id]]
    write_json(coco / "annotations" / f"panoptic_{split}2017.json",
               {"images": images, "annotations": annotations, "categories": _categories()})
    first = ids_by_image[139]
    objects.append({"id": 1, "image_id": 139, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [0, 0, 4, 3],
                    "segmentation": [[0.0, 0.0, 4.0, 0.0, 4.0, 3.0, 0.0, 3.0]]})  # fmt: skip
    objects.append({"id": 2, "image_id": 139, "category_id": 3, "iscrowd": 1, "area": 12.0, "bbox": [0, 3, 4, 3],
                    "segmentation": uncompressed_rle(first == 3)})  # fmt: skip
    tiny.instances = {IMAGES[139]: [(0, False), (2, True)], IMAGES[285]: []}
    things = [c for c in _categories() if c["isthing"]]
    write_json(coco / "annotations" / f"instances_{split}2017.json",
               {"images": images, "annotations": objects, "categories": things})
    return tiny


def write_coco(root: Path, split: str = "val") -> Tiny:
    """The raw COCO files plus the prepared panoptic_semseg_{split}2017/."""
    tiny = write_coco_raw(root, split)
    for stem, semantic in tiny.semantic.items():
        raw = np.where(semantic == IGNORE, 255, semantic).astype(np.uint8)
        write_png(Path(root) / "coco" / f"panoptic_semseg_{split}2017" / f"{stem}.png", raw)
    return tiny


# stuffthingmaps store COCO id - 1: person 0, street sign 11 (id 12, not a class),
# banner 91 (id 92 -> index 80), wood 181 (id 182 -> index 170), 255 unlabelled.
_STUFF_RAW = np.array([[0] * 4 + [11] * 4, [91] * 4 + [181] * 4, [255] * 8] * 2, dtype=np.uint8)
_STUFF_INDEX = np.array([[0] * 4 + [IGNORE] * 4, [80] * 4 + [170] * 4, [IGNORE] * 8] * 2, dtype=np.int64)


def write_coco_stuff_raw(root: Path, split: str = "val") -> Tiny:
    """coco/{split}2017/*.jpg and coco/stuffthingmaps/{split}2017/*.png (id - 1)."""
    coco = Path(root) / "coco"
    stem = IMAGES[139]
    write_jpg(coco / f"{split}2017" / f"{stem}.jpg", image(139))
    write_png(coco / "stuffthingmaps" / f"{split}2017" / f"{stem}.png", _STUFF_RAW)
    return Tiny(root=Path(root), semantic={stem: _STUFF_INDEX.copy()})


def write_coco_stuff(root: Path, split: str = "val") -> Tiny:
    """Raw COCO-Stuff plus the prepared stuffthingmaps_detectron2/."""
    tiny = write_coco_stuff_raw(root, split)
    for stem, index in tiny.semantic.items():
        raw = np.where(index == IGNORE, 255, index).astype(np.uint8)
        write_png(Path(root) / "coco" / "stuffthingmaps_detectron2" / f"{split}2017" / f"{stem}.png", raw)
    return tiny
