"""COCO: semantic maps from panoptic annotations, and COCO-Stuff-171 label maps.

Inputs, as released::

    coco/annotations/panoptic_{train,val}2017.json + coco/panoptic_{train,val}2017/*.png
    coco/stuffthingmaps/{train,val}2017/*.png   uint8, COCO category id - 1, 255 unlabelled

Outputs (the official FC-CLIP layout)::

    coco/panoptic_semseg_{train,val}2017/*.png      uint8 index into the 133 classes, 255 unlabelled
    coco/stuffthingmaps_detectron2/{train,val}2017/*.png   uint8 index into the 171 classes, 255 unlabelled

Every segment of the panoptic json, crowds included, paints its class; pixels
of no listed segment stay unlabelled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vocabseg.data.categories import index_by_dataset_id, lookup, raw_value_table
from vocabseg.data.convert.common import Report, apply_lut, convert_each, into_folder, progress, read_raw, save_image
from vocabseg.data.errors import read_json, require_file, require_keys
from vocabseg.data.io import rgb_to_id
from vocabseg.text.builtin import get_vocabulary

SPLITS = ("train", "val")
_PANOPTIC_FIX = "unzip panoptic_annotations_trainval2017.zip and its annotations/panoptic_{split}2017.zip into {coco}"


def semantic_from_panoptic(ids: np.ndarray, segments: list[dict], table: dict[int, int], where: str) -> np.ndarray:
    """[H, W] panoptic ids + segments_info -> uint8 class index map, 255 unlabelled."""
    out = np.full(ids.shape, 255, dtype=np.uint8)
    for seg in segments:
        out[ids == seg["id"]] = lookup(table, seg["category_id"], where, "coco_panoptic")
    return out


def _semantic_split(root: Path, split: str, report: Report, show: bool) -> None:
    coco = root / "coco"
    json_path = coco / "annotations" / f"panoptic_{split}2017.json"
    if not json_path.is_file():
        report.split_missing(f"coco_panoptic semantic {split}", json_path)
        return
    fix = _PANOPTIC_FIX.format(split=split, coco=coco)
    data = read_json(json_path, fix)
    require_keys(data, ("annotations",), f"panoptic json {json_path}", fix)
    table = index_by_dataset_id(get_vocabulary("coco_panoptic"))
    out_dir = coco / f"panoptic_semseg_{split}2017"
    written = skipped = 0
    for ann in progress(data["annotations"], f"COCO semantic from panoptic {split}", show):
        out = out_dir / ann["file_name"]
        if out.exists():
            skipped += 1
            continue
        png = require_file(coco / f"panoptic_{split}2017" / ann["file_name"], fix)
        save_image(semantic_from_panoptic(rgb_to_id(read_raw(png)), ann["segments_info"], table, str(json_path)), out)
        written += 1
    report.split_done(f"coco_panoptic semantic {split}", written, skipped, out_dir)


def prepare_coco_panoptic(root: Path, *, show: bool = True) -> Report:
    """Writes coco/panoptic_semseg_{train,val}2017 from the panoptic annotations."""
    report = Report()
    for split in SPLITS:
        _semantic_split(root, split, report, show)
    return report


def prepare_coco_stuff(root: Path, *, show: bool = True) -> Report:
    """Maps stuffthingmaps (category id - 1) to the 171 contiguous classes."""
    # raw value = COCO category id - 1; ids the 171 classes lack (e.g. 12, "street sign") -> 255
    lut = np.asarray(raw_value_table(get_vocabulary("coco_stuff"), 256, offset=1), dtype=np.uint8)
    report = Report()
    for split in SPLITS:
        src_dir = root / "coco" / "stuffthingmaps" / f"{split}2017"
        out_dir = root / "coco" / "stuffthingmaps_detectron2" / f"{split}2017"
        if not src_dir.is_dir():
            report.split_missing(f"coco_stuff {split}", src_dir)
            continue
        written, skipped = convert_each(
            src_dir.glob("*.png"), into_folder(out_dir),
            lambda src, dst: save_image(apply_lut(read_raw(src), lut, 255), dst),
            desc=f"COCO-Stuff {split}", show=show)
        report.split_done(f"coco_stuff {split}", written, skipped, out_dir)
    return report
