"""``prepare(name, root)``: build the derived files a dataset family needs.

The conversions are those of the official FC-CLIP / Mask2Former preparation
scripts, re-implemented without detectron2, panopticapi or the Detail API.
Each output file is written atomically, so rerunning after an interruption
skips what is done. ``PREPARERS`` maps family names (the built-in vocabulary
names) to one function each.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vocabseg.data.convert.ade20k import prepare_ade20k_150
from vocabseg.data.convert.ade20k_full import prepare_ade20k_847
from vocabseg.data.convert.cityscapes import prepare_cityscapes
from vocabseg.data.convert.coco import prepare_coco_panoptic, prepare_coco_stuff
from vocabseg.data.convert.common import Report
from vocabseg.data.convert.mmseg import (
    prepare_cascade_coco_stuff_171,
    prepare_cascade_context_59,
    prepare_cascade_voc_20,
)
from vocabseg.data.convert.pascal import (
    prepare_pascal_context_59,
    prepare_pascal_context_459,
    prepare_pascal_voc_20,
    prepare_pascal_voc_21,
)
from vocabseg.data.errors import DatasetError


def prepare_mapillary_vistas(root: Path, *, show: bool = True) -> Report:
    """Nothing to convert: Mapillary Vistas v1.2 is read as released."""
    report = Report(done=1)
    report.lines.append(f"mapillary_vistas: nothing to prepare, {root / 'mapillary_vistas'} is read as released")
    return report


# family name -> converter(root, *, show) -> Report
PREPARERS: dict[str, Callable[..., Report]] = {
    "coco_panoptic": prepare_coco_panoptic,  # panoptic_semseg_{train,val}2017
    "coco_stuff": prepare_coco_stuff,  # stuffthingmaps_detectron2
    "ade20k_150": prepare_ade20k_150,  # annotations_detectron2, panoptic + instance json
    "ade20k_847": prepare_ade20k_847,  # images_detectron2 + 16-bit TIFF labels
    "pascal_context_59": prepare_pascal_context_59,
    "pascal_context_459": prepare_pascal_context_459,
    "pascal_voc_20": prepare_pascal_voc_20,
    "pascal_voc_21": prepare_pascal_voc_21,
    "cityscapes": prepare_cityscapes,  # labelTrainIds + cityscapesScripts panoptic
    "mapillary_vistas": prepare_mapillary_vistas,
    # mmseg layouts of the Cascade-CLIP zero-shot splits
    "cascade_voc_20": prepare_cascade_voc_20,  # VOC 2012 as released
    "cascade_context_59": prepare_cascade_context_59,  # VOC2010/SegmentationClassContext
    "cascade_coco_stuff_171": prepare_cascade_coco_stuff_171,  # coco_stuff164k/*_labelTrainIds.png
}


def list_preparers() -> list[str]:
    """Names accepted by ``prepare``, sorted."""
    return sorted(PREPARERS)


def prepare(name: str, root: str | Path, *, progress: bool = True) -> list[str]:
    """Converts one dataset family's raw release under ``root``.

    Args:
        name: A family from ``list_preparers()``, e.g. "ade20k_150".
        root: The datasets root holding the raw release folders.
        progress: Show tqdm progress bars.

    Returns:
        One line per split saying what was written or why it was skipped.

    Raises:
        DatasetError: If the family is unknown, no split's raw input exists, or
            an input is malformed; the message names the file and the fix.
    """
    if name not in PREPARERS:
        raise DatasetError(f"unknown dataset family {name!r}; choose one of {', '.join(list_preparers())}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"folder {root} not found; pass the folder that holds the dataset folders as --root")
    report = PREPARERS[name](root, show=progress)
    if report.missing and report.done == 0:
        raise DatasetError(
            f"nothing to prepare for {name}: {report.missing[0]} not found; download the raw release first "
            f"(`vocabseg data check {name} --root {root}` says where it goes)"
        )
    return report.lines
