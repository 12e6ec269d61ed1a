"""Semantic segmentation metrics from a confusion matrix (detectron2 SemSegEvaluator or mmseg rules).

The confusion matrix is ``[num_classes, num_classes + 1]``: rows are gt classes, columns
are predicted classes, and the last column counts pixels left unpredicted (pred equal to
the ignore label). Pixels whose gt is the ignore label are dropped. With every pixel
predicted (the argmax case detectron2 handles) the last column is zero and all metrics
equal detectron2's; an unpredicted pixel counts as a miss for its gt class.

Metrics, as detectron2 computes them:

* IoU_c = tp / (gt_c + pred_c - tp); ACC_c = tp / gt_c.
* A class with no gt pixel has IoU and ACC NaN and is left out of every mean, even if it
  was predicted (its false positives still lower the IoU of the classes they cover).
* mIoU / mACC: mean over classes with gt; fwIoU: IoU weighted by gt pixel frequency;
  pACC: correct pixels / gt pixels.
* Open-vocabulary split (zero-shot papers): mIoU over seen classes, over unseen classes,
  and their harmonic mean hIoU = 2 s u / (s + u).

mmseg's rule (``iou_rule="mmseg"``, its ``eval_metrics`` as the official Cascade-CLIP evaluation
uses it) differs in one case only: IoU_c = sum of intersections / sum of unions over the dataset is
NaN only when the union is empty, so a class predicted somewhere but absent from the gt has IoU 0
and lowers every mean it belongs to (detectron2 leaves it out). mIoU = nanmean(IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_label: int = 255) -> np.ndarray:
    """Confusion matrix of one label map.

    Args:
        gt: [H, W] integer gt classes in [0, num_classes) or ``ignore_label``.
        pred: [H, W] integer predicted classes in [0, num_classes) or ``ignore_label``
            (= no prediction, a miss).
        num_classes: number of classes.
        ignore_label: gt pixels with this value are not evaluated.

    Returns:
        [num_classes, num_classes + 1] int64 counts, ``[gt_class, pred_class]``.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(
            f"gt and prediction label maps differ in shape: {gt.shape} vs {pred.shape}; "
            "resize the prediction to the gt size"
        )
    gt, pred = gt.reshape(-1).astype(np.int64), pred.reshape(-1).astype(np.int64)  # [P]
    keep = gt != ignore_label
    gt, pred = gt[keep], pred[keep]
    unpredicted = pred == ignore_label
    _check_range(gt, num_classes, "gt")
    _check_range(pred[~unpredicted], num_classes, "prediction")
    pred = np.where(unpredicted, num_classes, pred)  # unpredicted -> the extra last column
    n_cols = num_classes + 1
    counts = np.bincount(gt * n_cols + pred, minlength=num_classes * n_cols)
    return counts.reshape(num_classes, n_cols)


def _check_range(labels: np.ndarray, upper: int, name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= upper):
        bad = labels[(labels < 0) | (labels >= upper)]
        raise ValueError(
            f"{name} label {int(bad[0])} is outside [0, {upper}) and is not the ignore "
            "label; map dataset ids to contiguous class indices first"
        )


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``values[mask]`` skipping NaN; NaN when nothing is left."""
    picked = values[mask & ~np.isnan(values)]
    return float(picked.mean()) if picked.size else float("nan")


IOU_RULES = ("detectron2", "mmseg")  # which classes have an IoU: those with gt pixels / with a non-empty union


def semantic_metrics(conf: np.ndarray, seen: Sequence[bool] | None = None, *,
                     iou_rule: str = "detectron2") -> dict[str, Any]:
    """Metrics of a summed confusion matrix, as fractions in [0, 1].

    Args:
        conf: [C, C + 1] counts from ``confusion_matrix`` (summed over images).
        seen: optional [C] flags, True for classes seen in training; adds the
            ``mIoU_seen``, ``mIoU_unseen`` and ``hIoU`` entries.
        iou_rule: "detectron2" (IoU NaN without gt pixels) or "mmseg" (NaN only
            with an empty union); see the module docstring.

    Returns:
        ``miou, fwiou, macc, pacc`` (floats, NaN without gt pixels) and ``iou, acc``
        ([C] arrays, NaN for classes without gt pixels, or without any pixel under mmseg's rule).
    """
    if iou_rule not in IOU_RULES:
        raise ValueError(f"unknown iou_rule {iou_rule!r}; use one of {', '.join(IOU_RULES)}")
    num_classes = conf.shape[0]
    conf = conf.astype(np.float64)
    tp = conf.diagonal()  # [C]
    pos_gt = conf.sum(axis=1)  # [C], unpredicted pixels included
    pos_pred = conf[:, :num_classes].sum(axis=0)  # [C], gt-ignored pixels already dropped
    union = pos_gt + pos_pred - tp  # [C]
    valid = pos_gt > 0
    has_iou = valid if iou_rule == "detectron2" else union > 0
    iou, acc = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    acc[valid] = tp[valid] / pos_gt[valid]
    iou[has_iou] = tp[has_iou] / union[has_iou]
    total = pos_gt.sum()
    out: dict[str, Any] = {
        "miou": _masked_mean(iou, has_iou),
        "fwiou": float((iou[valid] * pos_gt[valid]).sum() / total) if total else float("nan"),
        "macc": _masked_mean(acc, valid),
        "pacc": float(tp.sum() / total) if total else float("nan"),
        "iou": iou,
        "acc": acc,
    }
    if seen is not None:
        out.update(seen_unseen_miou(iou, seen))
    return out


def harmonic_mean(seen: float, unseen: float) -> float:
    """hIoU = 2 s u / (s + u); 0 when both are 0, NaN when either is NaN."""
    if np.isnan(seen) or np.isnan(unseen):
        return float("nan")
    return 2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0


def seen_unseen_miou(iou: np.ndarray, seen: Sequence[bool]) -> dict[str, float]:
    """mIoU over seen classes, over unseen classes, and their harmonic mean.

    Args:
        iou: [C] per-class IoU, NaN for classes without gt (skipped).
        seen: [C] flags, True for classes seen in training.
    """
    flags = np.asarray(seen, dtype=bool)
    if flags.shape != iou.shape:
        raise ValueError(f"seen mask has {flags.size} entries but there are {iou.size} classes; "
                         "give one flag per class")
    s, u = _masked_mean(iou, flags), _masked_mean(iou, ~flags)
    return {"miou_seen": s, "miou_unseen": u, "hiou": harmonic_mean(s, u)}
