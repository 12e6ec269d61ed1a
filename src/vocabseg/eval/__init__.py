"""Evaluation: pure metric functions, thin accumulators, file readers and reports.

* ``panoptic``: COCO panoptic quality with panopticapi's exact rules.
* ``semantic``: confusion-matrix metrics with detectron2 SemSegEvaluator's rules (or mmseg's IoU rule).
* ``instance``: mask AP through pycocotools' COCOeval.
* ``evaluators``: ``reset / process / evaluate`` accumulators with mergeable state.
* ``readers`` / ``from_files``: score outputs saved in the standard file formats.
* ``report``: markdown tables.
"""

from vocabseg.eval.evaluators import InstanceEvaluator, PanopticEvaluator, SemanticEvaluator
from vocabseg.eval.from_files import (
    evaluate_instance_files,
    evaluate_panoptic_files,
    evaluate_semantic_folders,
    pq_compute_files,
)
from vocabseg.eval.instance import coco_mask_ap, encode_mask, gt_annotations_from_masks, to_coco_results
from vocabseg.eval.panoptic import (
    PanopticImage,
    PQStat,
    PQStatCat,
    id2rgb,
    pq_average,
    pq_compute,
    pq_stats_single_image,
    rgb2id,
)
from vocabseg.eval.readers import read_coco_gt, read_coco_results, read_label_png, read_panoptic_png
from vocabseg.eval.report import format_markdown
from vocabseg.eval.semantic import confusion_matrix, harmonic_mean, seen_unseen_miou, semantic_metrics

__all__ = [
    "pq_compute_files",
    "InstanceEvaluator",
    "PanopticEvaluator",
    "PanopticImage",
    "PQStat",
    "PQStatCat",
    "SemanticEvaluator",
    "coco_mask_ap",
    "confusion_matrix",
    "encode_mask",
    "evaluate_instance_files",
    "evaluate_panoptic_files",
    "evaluate_semantic_folders",
    "format_markdown",
    "gt_annotations_from_masks",
    "harmonic_mean",
    "id2rgb",
    "pq_average",
    "pq_compute",
    "pq_stats_single_image",
    "read_coco_gt",
    "read_coco_results",
    "read_label_png",
    "read_panoptic_png",
    "rgb2id",
    "seen_unseen_miou",
    "semantic_metrics",
    "to_coco_results",
]
