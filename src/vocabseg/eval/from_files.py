"""Score any model's outputs saved in the standard formats (see ``readers``).

A problem with the files (missing, malformed, or contents the metrics refuse, such as a
prediction segment missing from its ``segments_info``) raises
:class:`vocabseg.errors.DatasetError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vocabseg.data.errors import require_dir
from vocabseg.errors import DatasetError
from vocabseg.eval.evaluators import PanopticEvaluator, SemanticEvaluator
from vocabseg.eval.instance import coco_mask_ap
from vocabseg.eval.panoptic import pq_compute
from vocabseg.eval.readers import (
    default_png_folder,
    iter_label_pairs,
    iter_panoptic_pairs,
    load_panoptic_json,
    read_coco_gt,
    read_coco_results,
)


def evaluate_panoptic_files(
    gt_json: str | Path,
    pred_json: str | Path,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
) -> dict[str, Any]:
    """Panoptic quality of a COCO panoptic prediction json + PNG folder (panopticapi's pq_compute).

    Args:
        gt_json: COCO panoptic gt json (with ``categories``).
        pred_json: prediction json with an ``annotations`` list.
        gt_folder: gt PNG folder; defaults to ``gt_json`` without ``.json``.
        pred_folder: prediction PNG folder; defaults to ``pred_json`` without ``.json``.

    Returns:
        ``PanopticEvaluator.evaluate()`` results (percent).
    """
    return panoptic_evaluator_from_files(gt_json, pred_json, gt_folder, pred_folder).evaluate()


def pq_compute_files(
    gt_json: str | Path,
    pred_json: str | Path,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
) -> dict[str, Any]:
    """Drop-in for panopticapi's ``pq_compute``: same arguments, same result layout.

    Returns:
        ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {category_id: {"pq", "sq", "rq"}}}``
        with fractions in [0, 1], as panopticapi returns them.
    """
    evaluator = panoptic_evaluator_from_files(gt_json, pred_json, gt_folder, pred_folder)
    return pq_compute(evaluator.stat, evaluator.categories)


def panoptic_evaluator_from_files(
    gt_json: str | Path,
    pred_json: str | Path,
    gt_folder: str | Path | None = None,
    pred_folder: str | Path | None = None,
) -> PanopticEvaluator:
    """A PanopticEvaluator that has processed every gt image of ``gt_json``; see evaluate_panoptic_files."""
    gt, pred = load_panoptic_json(gt_json, is_gt=True), load_panoptic_json(pred_json)
    gt_folder = Path(gt_folder) if gt_folder is not None else default_png_folder(gt_json)
    pred_folder = Path(pred_folder) if pred_folder is not None else default_png_folder(pred_json)
    for name, folder in (("gt", gt_folder), ("prediction", pred_folder)):
        require_dir(folder, f"pass {name.replace('prediction', 'pred')}_folder", what=f"{name} PNG folder")
    evaluator = PanopticEvaluator(gt["categories"])
    for gt_image, pred_image in iter_panoptic_pairs(gt, pred, gt_folder, pred_folder, pred_json):
        try:
            evaluator.process(gt_image, pred_image)
        except ValueError as e:  # the metric's check of the image's files
            raise DatasetError(f"{pred_json}: {e}") from None
    return evaluator


def evaluate_semantic_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    class_names: Sequence[str],
    ignore_label: int = 255,
    seen: Sequence[bool] | None = None,
    gt_suffix: str = ".png",
    pred_suffix: str = ".png",
) -> dict[str, Any]:
    """Semantic metrics of a folder of predicted label PNGs against a folder of gt label PNGs.

    Both hold contiguous class indices (gt already mapped to training ids); files pair by
    stem. Returns ``SemanticEvaluator.evaluate()`` results (percent).
    """
    evaluator = SemanticEvaluator(class_names, ignore_label=ignore_label, seen=seen)
    for stem, gt, pred in iter_label_pairs(gt_dir, pred_dir, gt_suffix, pred_suffix):
        try:
            evaluator.process(gt, pred)
        except ValueError as e:
            raise DatasetError(f"{Path(pred_dir) / (stem + pred_suffix)}: {e}") from None
    return evaluator.evaluate()


def evaluate_instance_files(gt_json: str | Path, results_json: str | Path) -> dict[str, Any]:
    """Mask AP of a COCO results json against a COCO instance gt json.

    Returns:
        ``AP, AP50, AP75, APs, APm, APl`` and ``per_class`` ``{name: {"AP"}}``, in percent.
    """
    gt, results = read_coco_gt(gt_json), read_coco_results(results_json)
    try:
        res = coco_mask_ap(gt, results)
    except ValueError as e:  # results of images or categories the gt does not have
        raise DatasetError(f"{results_json}: {e}") from None
    names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    res["per_class"] = {names[cat]: {"AP": ap} for cat, ap in res["per_class"].items()}
    return res
