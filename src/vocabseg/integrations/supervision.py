"""`Prediction` -> ``supervision.Detections`` (Roboflow's common currency for masks and boxes)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vocabseg.errors import ConfigError
from vocabseg.integrations import require

if TYPE_CHECKING:
    from vocabseg.predictor import Prediction


def to_detections(pred: Prediction) -> Any:
    """One detection per instance (instance task), else per panoptic segment; a ``supervision.Detections``.

    ``mask`` [N, H, W] bool, ``xyxy`` [N, 4] from the masks (supervision's inclusive corners;
    an empty mask gets a zero box), ``class_id`` [N] vocabulary indices, ``confidence`` [N]
    (None for panoptic segments without a score), ``data["class_name"]`` [N] names.

    Raises:
        ConfigError: supervision is not installed, or the prediction has neither instances nor segments.
    """
    sv = require("supervision", "supervision")
    masks, classes, scores = _masks_classes_scores(pred)
    names = np.array([pred.class_names[c] for c in classes], dtype=str)
    return sv.Detections(xyxy=sv.mask_to_xyxy(masks), mask=masks, class_id=classes, confidence=scores,
                         data={"class_name": names})


def _masks_classes_scores(pred: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """[N, H, W] bool masks, [N] int class indices, [N] float32 scores (None: not all segments have one)."""
    if pred.instance_masks is not None:
        if pred.instance_classes is None or pred.instance_scores is None:
            raise ConfigError("the prediction has instance masks but no classes or scores")
        return (pred.instance_masks.astype(bool), pred.instance_classes.astype(np.int64),
                pred.instance_scores.astype(np.float32))
    if pred.panoptic is not None:
        ids = np.array([s.id for s in pred.segments], np.int64)
        masks = pred.panoptic[None] == ids[:, None, None]  # [N, H, W]
        classes = np.array([s.category for s in pred.segments], np.int64)
        known = all(s.score is not None for s in pred.segments)
        scores = np.array([s.score for s in pred.segments], np.float32) if known else None
        return masks, classes, scores
    raise ConfigError("the prediction has no instances or panoptic segments: predict with task='instance' "
                      "or 'panoptic' (semantic maps have no objects to list)")
