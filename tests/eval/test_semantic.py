"""Semantic metrics against confusion matrices counted by hand."""

import math

import numpy as np
import pytest

from vocabseg.eval.evaluators import SemanticEvaluator
from vocabseg.eval.report import format_markdown
from vocabseg.eval.semantic import confusion_matrix, harmonic_mean, seen_unseen_miou, semantic_metrics

GT = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 0, 2]])  # the 2 at the ignored pixel is not counted


def test_confusion_matrix_by_hand():
    conf = confusion_matrix(GT, PRED, num_classes=3)
    expected = np.array(
        [
            [1, 1, 0, 0],  # gt 0: one right, one predicted 1
            [0, 2, 0, 0],  # gt 1: both right
            [1, 0, 0, 0],  # gt 2: predicted 0
        ]
    )
    assert np.array_equal(conf, expected)


def test_metrics_by_hand():
    m = semantic_metrics(confusion_matrix(GT, PRED, 3))
    # tp = [1, 2, 0]; gt = [2, 2, 1]; pred = [2, 3, 0]; union = [3, 3, 1]
    assert m["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert m["acc"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert m["miou"] == pytest.approx(1 / 3)
    assert m["macc"] == pytest.approx(1 / 2)
    assert m["pacc"] == pytest.approx(3 / 5)
    assert m["fwiou"] == pytest.approx(2 / 5 * 1 / 3 + 2 / 5 * 2 / 3)


def test_ignore_label_is_honoured():
    conf = confusion_matrix(np.array([[255, 255, 0]]), np.array([[1, 0, 0]]), 2)
    assert conf.sum() == 1 and conf[0, 0] == 1
    conf = confusion_matrix(np.array([[7, 0]]), np.array([[1, 0]]), 2, ignore_label=7)
    assert conf.sum() == 1


def test_class_without_gt_is_nan_and_excluded():
    # Class 2 is predicted but never in gt: NaN, out of the means; its fp still hurt class 0.
    m = semantic_metrics(confusion_matrix(np.array([[0, 0, 1, 1]]), np.array([[0, 2, 1, 1]]), 3))
    assert math.isnan(m["iou"][2]) and math.isnan(m["acc"][2])
    assert m["iou"][:2] == pytest.approx([0.5, 1.0])
    assert m["miou"] == pytest.approx(0.75)


def test_unpredicted_pixel_is_a_miss():
    conf = confusion_matrix(np.array([[0, 0]]), np.array([[0, 255]]), 2)
    assert conf[0].tolist() == [1, 0, 1]
    m = semantic_metrics(conf)
    assert m["iou"][0] == pytest.approx(0.5) and m["pacc"] == pytest.approx(0.5)


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError, match="gt label 5 is outside"):
        confusion_matrix(np.array([[5]]), np.array([[0]]), 3)
    with pytest.raises(ValueError, match="prediction label 3 is outside"):
        confusion_matrix(np.array([[0]]), np.array([[3]]), 3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)


def test_seen_unseen_and_harmonic_mean():
    iou = np.array([0.8, 0.6, np.nan, 0.2])
    out = seen_unseen_miou(iou, [True, True, False, False])
    assert out["miou_seen"] == pytest.approx(0.7)
    assert out["miou_unseen"] == pytest.approx(0.2)  # NaN class skipped
    assert out["hiou"] == pytest.approx(2 * 0.7 * 0.2 / 0.9)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(0.5, float("nan")))


def test_evaluator_merge_equals_whole_and_percent():
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 4, (8, 8)), rng.integers(0, 4, (8, 8))) for _ in range(6)]
    for gt, _ in pairs:
        gt[0, :3] = 255
    names, seen = ["a", "b", "c", "d"], [True, False, True, False]
    whole, parts = SemanticEvaluator(names, seen=seen), [SemanticEvaluator(names, seen=seen) for _ in range(3)]
    for i, (gt, pred) in enumerate(pairs):
        whole.process(gt, pred)
        parts[i % 3].process(gt, pred)
    merged = SemanticEvaluator(names, seen=seen)
    merged.merge(p.state_dict() for p in parts)
    assert np.array_equal(merged.conf, whole.conf)
    res = whole.evaluate()
    m = semantic_metrics(whole.conf, seen)
    assert res["mIoU"] == pytest.approx(100 * m["miou"])
    assert res["hIoU"] == pytest.approx(100 * m["hiou"])
    assert res["per_class"]["c"]["IoU"] == pytest.approx(100 * m["iou"][2])


def test_markdown():
    ev = SemanticEvaluator(["a", "b", "c"])
    ev.process(GT, PRED)
    md = format_markdown(ev.evaluate())
    assert md.splitlines()[0] == "| mIoU | fwIoU | mACC | pACC |"
    assert "| 33.3 | 40.0 | 50.0 | 60.0 |" in md
    assert "| b | 66.7 | 100.0 |" in md
