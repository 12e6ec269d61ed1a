"""`Prediction.to_supervision()` against the real supervision package."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from vocabseg.errors import ConfigError

sv = pytest.importorskip("supervision")


def test_instances_round_trip(predictor, photos):
    pred = predictor.predict(str(photos[1]), task="instance")
    detections = pred.to_supervision()
    assert isinstance(detections, sv.Detections) and len(detections) == len(pred.instance_masks) > 0
    assert detections.mask.dtype == bool and detections.mask.shape == pred.instance_masks.shape
    np.testing.assert_array_equal(detections.mask, pred.instance_masks)
    np.testing.assert_array_equal(detections.class_id, pred.instance_classes)
    np.testing.assert_array_equal(detections.confidence, pred.instance_scores)
    assert list(detections["class_name"]) == [pred.class_names[c] for c in pred.instance_classes]
    filled = detections.mask.any(axis=(1, 2))
    ys, xs = np.nonzero(detections.mask[np.argmax(filled)])
    assert list(detections.xyxy[np.argmax(filled)]) == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_panoptic_segments_when_no_instances(predictor, photos):
    pred = predictor.predict(str(photos[0]), task="panoptic")
    detections = pred.to_supervision()
    assert len(detections) == len(pred.segments) > 0
    for k, segment in enumerate(pred.segments):
        np.testing.assert_array_equal(detections.mask[k], pred.panoptic == segment.id)
        assert detections.class_id[k] == segment.category
        assert detections["class_name"][k] == segment.class_name
        assert detections.confidence[k] == np.float32(segment.score)


def test_semantic_only_is_one_line_error(predictor, photos):
    pred = predictor.predict(str(photos[0]), task="semantic")
    with pytest.raises(ConfigError, match="task='instance'"):
        pred.to_supervision()


def test_missing_supervision_is_one_line_naming_the_extra(predictor, photos, monkeypatch):
    pred = predictor.predict(str(photos[0]), task="instance")
    monkeypatch.setitem(sys.modules, "supervision", None)  # what an install without the extra gives: ImportError
    with pytest.raises(ConfigError) as error:
        pred.to_supervision()
    assert str(error.value) == 'supervision is not installed: pip install "vocabseg[supervision]"'
