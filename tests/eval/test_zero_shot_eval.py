"""Zero-shot evaluation: seen/unseen mIoU and hIoU by mmseg's IoU rule, over a split's official unseen classes.

The hand-made numbers below were also checked once against mmseg 0.24.1 ``eval_metrics`` (the
official Cascade-CLIP evaluation): same per-class IoU, mIoU and seen/unseen means.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import write_cascade_voc
from tiny_datasets.mmseg import VOC_VAL

from vocabseg.cli import main
from vocabseg.data import get_dataset, load_semantic
from vocabseg.eval import SemanticEvaluator, confusion_matrix, semantic_metrics
from vocabseg.eval.run import evaluate
from vocabseg.predictor import Prediction, Predictor
from vocabseg.testing import save_tiny_checkpoint
from vocabseg.text import TextEmbeddingCache

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny model (see tests/conftest.py)

# 5 classes; class 3 is predicted once but has no gt pixel, class 4 has no pixel at all.
GT = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 255])
PRED = np.array([0, 0, 0, 1, 1, 1, 2, 3, 0, 3])  # the last pixel's gt is ignored
SEEN = [True, True, False, False, True]  # unseen: 2 and 3


def test_hand_made_confusion_matrix_by_both_rules():
    conf = confusion_matrix(GT, PRED, 5)
    # IoU = tp / (gt + pred - tp): 3/(4+4-3), 2/(2+3-2), 1/(3+1-1), 0/(0+1-0), no pixel
    mm = semantic_metrics(conf, SEEN, iou_rule="mmseg")
    np.testing.assert_allclose(mm["iou"], [0.6, 2 / 3, 1 / 3, 0.0, np.nan])
    assert mm["miou"] == pytest.approx(1.6 / 4) and mm["miou_seen"] == pytest.approx((0.6 + 2 / 3) / 2)
    assert mm["miou_unseen"] == pytest.approx(1 / 6)
    s, u = (0.6 + 2 / 3) / 2, 1 / 6
    assert mm["hiou"] == pytest.approx(2 * s * u / (s + u))  # 0.2639
    # detectron2 leaves class 3 out (no gt), so its false positive lowers only class 2's IoU.
    d2 = semantic_metrics(conf, SEEN)
    assert math.isnan(d2["iou"][3]) and d2["miou"] == pytest.approx(1.6 / 3)
    assert d2["miou_unseen"] == pytest.approx(1 / 3) and d2["hiou"] == pytest.approx(2 * s / 3 / (s + 1 / 3))
    for key in ("macc", "pacc"):  # accuracies do not depend on the rule
        assert mm[key] == pytest.approx(d2[key])


def test_evaluator_reports_percent_and_refuses_unknown_rule():
    evaluator = SemanticEvaluator([f"c{i}" for i in range(5)], seen=SEEN, iou_rule="mmseg")
    evaluator.process(GT[:5], PRED[:5])
    evaluator.process(GT[5:], PRED[5:])  # dataset-level sums over images
    res = evaluator.evaluate()
    assert res["mIoU"] == pytest.approx(40.0) and res["mIoU_unseen"] == pytest.approx(100 / 6)
    assert res["per_class"]["c3"]["IoU"] == 0.0
    with pytest.raises(ValueError, match="unknown iou_rule 'voc'"):
        SemanticEvaluator(["a"], iou_rule="voc")


# ---- end to end on the mmseg VOC layout -------------------------------------------------------------
# Tiny VOC label (tiny_datasets.mmseg): rows of raw 0 (ignored), 1 (class 0, seen), 16 (class 15, unseen),
# 20 (class 19, unseen), 255 (ignored). The prediction below gets classes 0 and 15 right and paints
# class 19's row as class 1 (seen, absent from the gt): IoUs 1, 0 (mmseg; NaN by detectron2), 1, 0.
# Official split: seen {0, 1} -> 50, unseen {15, 19} -> 50, hIoU 50, mIoU 50 (detectron2 would give 66.7).
# The tiny FC-CLIP model's own seen mask (overlap with COCO) would make class 0 unseen and 1 seen instead.
EXPECTED = {"mIoU": 50.0, "mIoU_seen": 50.0, "mIoU_unseen": 50.0, "hIoU": 50.0}


def _prediction_for(labels: np.ndarray) -> np.ndarray:
    pred = np.where(labels == 19, 1, labels)
    return np.maximum(pred, 0).astype(np.int32)  # ignored pixels: any class


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_cascade_voc(root)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=0, min_size=64, max_size=128)


@pytest.fixture(scope="module")
def text_cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "vocabseg_text_cache"  # shared by the test modules of a session


class FixedPredictions:
    """A real predictor whose ``predict`` returns ``_prediction_for`` the record's gt."""

    def __init__(self, inner: Predictor, dataset):
        self._inner, self._records = inner, {r.image: r for r in dataset}

    def predict(self, image, task):
        record = self._records[image]
        pred = Prediction(record.height, record.width, self._inner.vocabulary.class_names)
        pred.semantic = _prediction_for(load_semantic(record.semantic))
        return pred

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_evaluate_uses_the_official_split_and_mmseg_rule(voc_root, checkpoint, text_cache_dir, tmp_path):
    dataset = get_dataset("cascade_voc_20_val", voc_root)
    predictor = Predictor.from_pretrained(str(checkpoint), text_cache=TextEmbeddingCache(text_cache_dir),
                                          progress=False)
    results = evaluate(FixedPredictions(predictor, dataset), dataset, output_dir=tmp_path, progress=False)
    semantic = results["semantic"]
    assert {k: semantic[k] for k in EXPECTED} == pytest.approx(EXPECTED)
    assert results["vocabulary"] == "cascade_voc_20" and semantic["per_class"]["bicycle"]["IoU"] == 0.0
    model_seen = predictor.classifier.seen.tolist()
    assert model_seen[0] is False and model_seen[1] is True  # 'aeroplane' is not a COCO name, 'bicycle' is
    assert "| 50.0 | " in (tmp_path / "results.md").read_text()


def test_score_uses_the_official_split(voc_root, tmp_path, capsys):
    labels = load_semantic(get_dataset("cascade_voc_20_val", voc_root)[0].semantic)
    Image.fromarray(_prediction_for(labels).astype(np.uint8)).save(tmp_path / f"{VOC_VAL}.png")
    assert main(["score", "--dataset", "cascade_voc_20_val", "--data-root", str(voc_root),
                 "--semantic-dir", str(tmp_path)]) == 0  # fmt: skip
    assert "mIoU 50.0 mIoU_seen 50.0 mIoU_unseen 50.0 hIoU 50.0" in capsys.readouterr().out


def test_cli_eval_prints_seen_unseen_and_hiou(voc_root, checkpoint, text_cache_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(text_cache_dir))
    out = tmp_path / "out"
    assert main(["eval", "--model", str(checkpoint), "--dataset", "cascade_voc_20_val", "--data-root",
                 str(voc_root), "--output", str(out), "--no-progress"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "cascade_voc_20_val (1 images): mIoU" in printed
    assert all(f"{k} " in printed for k in ("mIoU_seen", "mIoU_unseen", "hIoU"))
    results = json.loads((out / "results.json").read_text())["semantic"]
    # classes 0, 15, 19 have gt; whatever the random model predicts, the means use the official split
    iou = {name: v["IoU"] for name, v in results["per_class"].items() if v["IoU"] is not None}
    unseen_names = ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
    assert {"aeroplane", "pottedplant", "tvmonitor"} <= set(iou)  # the classes with gt pixels
    assert results["mIoU_seen"] == pytest.approx(np.mean([v for n, v in iou.items() if n not in unseen_names]))
    assert results["mIoU_unseen"] == pytest.approx(np.mean([v for n, v in iou.items() if n in unseen_names]))
