"""Cityscapes: train-id label maps and the panoptic conversion.

Inputs, as released (gtFine_trainvaltest.zip, leftImg8bit_trainvaltest.zip)::

    cityscapes/gtFine/<split>/<city>/<id>_gtFine_labelIds.png     uint8 Cityscapes label ids
    cityscapes/gtFine/<split>/<city>/<id>_gtFine_instanceIds.png

Outputs (what the official notes produce with cityscapesScripts)::

    cityscapes/gtFine/<split>/<city>/<id>_gtFine_labelTrainIds.png   uint8 train id 0..18, 255 ignore
    cityscapes/gtFine/cityscapes_panoptic_<split>.json + cityscapes_panoptic_<split>/

Train-id maps are computed here from labelIds.png through the vocabulary's
label ids (createTrainIdLabelImgs.py rasterises the same polygons the released
labelIds.png come from, so the result is the same). The panoptic conversion is
delegated to cityscapesScripts' createPanopticImgs, as in the official notes.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vocabseg.data.categories import raw_value_table
from vocabseg.data.convert.common import Report, apply_lut, convert_each, read_raw, save_image
from vocabseg.data.errors import DatasetError
from vocabseg.text.builtin import get_vocabulary

SPLITS = ("train", "val")
PIP_PACKAGE = "cityscapesscripts"


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """uint8 Cityscapes label ids -> uint8 train ids (0..18), 255 for ignored labels."""
    lut = np.asarray(raw_value_table(get_vocabulary("cityscapes"), 256), dtype=np.uint8)
    return apply_lut(label_ids, lut, 255)


def prepare_train_ids(root: Path, report: Report, show: bool) -> None:
    """Writes *_gtFine_labelTrainIds.png next to each *_gtFine_labelIds.png."""
    for split in SPLITS:
        split_dir = root / "cityscapes" / "gtFine" / split
        if not split_dir.is_dir():
            report.split_missing(f"cityscapes train ids {split}", split_dir)
            continue
        written, skipped = convert_each(
            split_dir.glob("*/*_gtFine_labelIds.png"),
            lambda src: src.with_name(src.name.replace("_labelIds.png", "_labelTrainIds.png")),
            lambda src, dst: save_image(train_ids(read_raw(src)), dst),
            desc=f"Cityscapes train ids {split}", show=show)
        report.split_done(f"cityscapes train ids {split}", written, skipped, split_dir)


def _convert2panoptic() -> Callable[..., None]:
    try:
        from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
    except ImportError:
        raise DatasetError(
            f"the Cityscapes panoptic conversion needs cityscapesScripts: pip install {PIP_PACKAGE}"
        ) from None
    return convert2panoptic


def prepare_panoptic(root: Path, report: Report) -> None:
    """Runs cityscapesScripts' panoptic conversion unless its outputs exist."""
    gt_fine = root / "cityscapes" / "gtFine"
    outputs = [gt_fine / f"cityscapes_panoptic_{split}.json" for split in SPLITS]
    if all(p.is_file() for p in outputs):
        report.split_done("cityscapes panoptic", 0, len(outputs), gt_fine)
        return
    if not gt_fine.is_dir():
        raise DatasetError(
            f"folder {gt_fine} not found; download gtFine_trainvaltest.zip from "
            f"https://www.cityscapes-dataset.com into {root / 'cityscapes'}"
        )
    convert2panoptic = _convert2panoptic()
    kwargs: dict[str, str | list[str]] = {"cityscapesPath": str(gt_fine), "outputFolder": str(gt_fine)}
    if "setNames" in inspect.signature(convert2panoptic).parameters:  # newer releases
        kwargs["setNames"] = [s for s in ("val", "train", "test") if (gt_fine / s).is_dir()]
    try:
        convert2panoptic(**kwargs)  # the json is written after all PNGs: it marks a finished split
    except SystemExit:  # cityscapesScripts exits when a split folder is empty
        raise DatasetError(
            f"cityscapesScripts found no *_instanceIds.png under {gt_fine}; unzip gtFine_trainvaltest.zip there"
        ) from None
    report.split_done("cityscapes panoptic", len(outputs), 0, gt_fine)


def prepare_cityscapes(root: Path, *, show: bool = True) -> Report:
    """Train-id maps, then the panoptic json + PNGs."""
    report = Report()
    prepare_train_ids(root, report, show)
    prepare_panoptic(root, report)
    return report
