"""ADE20K-150 (ADEChallengeData2016): semantic shift, panoptic and instance files.

Inputs, as released::

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/annotations/{training,validation}/*.png   uint8, 0 = unlabelled, c+1 = class c
    ADEChallengeData2016/annotations_instance/{training,validation}/*.png
        RGB: R = instance class 1..100 (the k-th thing class of the 150), G = instance id, 0 = none

Outputs (the official FC-CLIP layout)::

    annotations_detectron2/<dir>/*.png    uint8 class index, 255 = unlabelled
    ade20k_panoptic_{train,val}.json + ade20k_panoptic_{train,val}/*.png
    ade20k_instance_{train,val}.json      COCO instances, RLE masks

Panoptic segments take stuff from the semantic map and things from the
instance map, things painted last (the two overlap a little). Segment ids are
``class * 1000 + n``, so a finished PNG describes itself and an interrupted run
rebuilds the json from the PNGs already written. Unlike the official script,
areas are counted after painting and fully covered segments are dropped, so
the json matches its PNG exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vocabseg.data.categories import ade20k_instance_to_index
from vocabseg.data.convert.common import (
    Report,
    bbox_of,
    convert_each,
    into_folder,
    progress,
    read_raw,
    save_image,
    save_json,
)
from vocabseg.data.errors import require_file
from vocabseg.data.io import id_to_rgb, rgb_to_id
from vocabseg.text.builtin import get_vocabulary
from vocabseg.text.vocabulary import Vocabulary

BASE = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
LABEL_DIVISOR = 1000  # segment id = class * LABEL_DIVISOR + n


def shift_semantic(raw: np.ndarray) -> np.ndarray:
    """uint8 ADE label (0 unlabelled, c+1 class c) -> class index, 255 unlabelled."""
    return (raw.astype(np.int16) - 1).astype(np.uint8)  # 0 - 1 wraps to 255


def instance_objects(instance_rgb: np.ndarray, to_index: tuple[int, ...]) -> list[tuple[int, np.ndarray]]:
    """(150-class index, [H, W] bool mask) per object of an annotations_instance PNG."""
    classes, ids = instance_rgb[..., 0], instance_rgb[..., 1]
    objects = []
    for object_id in np.unique(ids):
        if object_id == 0:  # no object
            continue
        mask = ids == object_id
        values = np.unique(classes[mask])
        if len(values) != 1 or not 0 < values[0] < len(to_index):
            continue  # an object needs exactly one valid class
        objects.append((to_index[values[0]], mask))
    return objects


def panoptic_ids(semantic: np.ndarray, objects: list[tuple[int, np.ndarray]], vocab: Vocabulary) -> np.ndarray:
    """[H, W] int64 segment ids: stuff from ``semantic`` (shifted), then things painted over."""
    ids = np.zeros(semantic.shape, dtype=np.int64)
    for cls in np.unique(semantic):
        if cls != 255 and not vocab.classes[cls].is_thing:
            ids[semantic == cls] = int(cls) * LABEL_DIVISOR + 1
    counts: dict[int, int] = {}
    for cls, mask in objects:
        counts[cls] = counts.get(cls, 0) + 1
        ids[mask] = cls * LABEL_DIVISOR + counts[cls]
    return ids


def segments_info(ids: np.ndarray) -> list[dict]:
    """The json ``segments_info`` of an id map whose ids are ``class * 1000 + n``."""
    info = []
    for segment_id in np.unique(ids):
        if segment_id == 0:
            continue
        mask = ids == segment_id
        info.append(
            {"id": int(segment_id), "category_id": int(segment_id // LABEL_DIVISOR),
             "area": int(mask.sum()), "bbox": bbox_of(mask), "iscrowd": 0}
        )  # fmt: skip
    return info


def _categories(vocab: Vocabulary, things_only: bool) -> list[dict]:
    return [
        {"id": i, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color or (0, 0, 0))}
        for i, c in enumerate(vocab.classes)
        if c.is_thing or not things_only
    ]


def _image_entry(stem: str, shape: tuple[int, ...]) -> dict:
    return {"id": stem, "file_name": f"{stem}.jpg", "height": int(shape[0]), "width": int(shape[1])}


def prepare_semantic(root: Path, report: Report, show: bool) -> None:
    """annotations/<dir>/*.png -> annotations_detectron2/<dir>/*.png (shifted by -1)."""
    for dirname in SPLITS.values():
        src_dir, dst_dir = root / BASE / "annotations" / dirname, root / BASE / "annotations_detectron2" / dirname
        if not src_dir.is_dir():
            report.split_missing(f"ade20k_150 semantic {dirname}", src_dir)
            continue
        written, skipped = convert_each(
            src_dir.glob("*.png"), into_folder(dst_dir),
            lambda src, dst: save_image(shift_semantic(read_raw(src)), dst),
            desc=f"ADE20K-150 semantic {dirname}", show=show)
        report.split_done(f"ade20k_150 semantic {dirname}", written, skipped, dst_dir)


def prepare_panoptic_and_instances(root: Path, report: Report, show: bool) -> None:
    """Writes the panoptic json + PNGs and the instance json of each split."""
    for split, dirname in SPLITS.items():
        sem_dir, ins_dir = root / BASE / "annotations" / dirname, root / BASE / "annotations_instance" / dirname
        missing = next((d for d in (sem_dir, ins_dir) if not d.is_dir()), None)
        if missing is not None:
            fix = "download annotations_instance.tar from http://sceneparsing.csail.mit.edu and untar it there"
            report.split_missing(f"ade20k_150 panoptic/instance {split}", missing, fix if missing == ins_dir else "")
            continue
        _convert_split(root, split, sorted(sem_dir.glob("*.png")), ins_dir, report, show)


def _convert_split(root: Path, split: str, sem_files: list[Path], ins_dir: Path, report: Report, show: bool) -> None:
    """Panoptic PNGs (reusing finished ones), then both jsons of one split."""
    vocab = get_vocabulary("ade20k_150")
    to_index = ade20k_instance_to_index(vocab)
    pan_json, ins_json = root / BASE / f"ade20k_panoptic_{split}.json", root / BASE / f"ade20k_instance_{split}.json"
    pan_dir = root / BASE / f"ade20k_panoptic_{split}"
    if pan_json.exists() and ins_json.exists():
        report.split_done(f"ade20k_150 panoptic/instance {split}", 0, len(sem_files), pan_dir)
        return
    images: list[dict] = []
    pan_anns: list[dict] = []
    ins_anns: list[dict] = []
    written = 0
    for sem_file in progress(sem_files, f"ADE20K-150 panoptic {split}", show):
        stem = sem_file.stem
        ins_file = require_file(ins_dir / f"{stem}.png",
                                "untar annotations_instance.tar (sceneparsing.csail.mit.edu) again")
        objects = instance_objects(read_raw(ins_file), to_index)
        png = pan_dir / f"{stem}.png"
        if png.exists():  # finished by an interrupted run
            ids = rgb_to_id(read_raw(png))
        else:
            ids = panoptic_ids(shift_semantic(read_raw(sem_file)), objects, vocab)
            save_image(id_to_rgb(ids), png)
            written += 1
        images.append(_image_entry(stem, ids.shape))
        pan_anns.append({"image_id": stem, "file_name": png.name, "segments_info": segments_info(ids)})
        ins_anns.extend(_instance_annotations(stem, objects, first_id=len(ins_anns) + 1))
    save_json({"images": images, "annotations": pan_anns, "categories": _categories(vocab, False)}, pan_json)
    save_json({"images": images, "annotations": ins_anns, "categories": _categories(vocab, True)}, ins_json)
    report.split_done(f"ade20k_150 panoptic/instance {split}", written + 2, len(sem_files) - written, pan_dir)


def _instance_annotations(image_id: str, objects: list[tuple[int, np.ndarray]], first_id: int) -> list[dict]:
    from pycocotools import mask as mask_util  # compiled extension, loaded on first use

    annotations = []
    for offset, (cls, mask) in enumerate(objects):
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")  # bytes are not json
        annotations.append(
            {"id": first_id + offset, "image_id": image_id, "category_id": cls, "iscrowd": 0,
             "bbox": bbox_of(mask), "area": int(mask.sum()), "segmentation": rle}
        )  # fmt: skip
    return annotations


def prepare_ade20k_150(root: Path, *, show: bool = True) -> Report:
    """All ADE20K-150 outputs: semantic, panoptic and instance."""
    report = Report()
    prepare_semantic(root, report, show)
    prepare_panoptic_and_instances(root, report, show)
    return report
