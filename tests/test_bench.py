"""`vocabseg bench` and fast mode on a tiny model: the table, the deviation math, exact mode untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocabseg.bench import Deviation, ModeResult, deviation, format_table
from vocabseg.cli import main
from vocabseg.errors import ConfigError
from vocabseg.models import InferenceConfig
from vocabseg.predictor import Prediction, Predictor
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo
from vocabseg.text import TextEmbeddingCache

VOCAB = "car; person; road [stuff]; sky [stuff]"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("bench") / "tiny.pth", min_size=64, max_size=96)


def test_bench_prints_stages_both_modes_and_the_deviation(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    assert main(["bench", "--checkpoint", str(checkpoint), "--size", "60x90", "--vocab", VOCAB,
                 "--modes", "exact,fast", "--repeats", "1", "--warmup", "0", "--clock", "cpu"]) == 0
    out = capsys.readouterr().out
    for mode in ("exact", "fast"):  # fast mode's bf16 text tower is timed on its own
        assert f"text classifier (car; person; road [stuff]; sky [stuff], {mode}): cold" in out and "warm" in out
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert header.split() == ["stage", "exact", "s", "fast", "s", "fast/exact", "fast", "rel.err"]
    for stage in ("backbone", "pixel_decoder", "transformer_decoder", "rest of run", "post: panoptic",
                  "post: semantic", "post: instance", "total", "images/s", "peak memory GiB"):
        assert any(line.startswith(stage) for line in out.splitlines()), stage
    assert "semantic label agreement with exact" in out and "mask_cls relative error" in out


@pytest.mark.parametrize("flag, value, message", [
    ("--size", "800by1200", "expected HxW"), ("--size", "0x5", "expected HxW"),
    ("--modes", "exact,turbo", "unknown mode 'turbo'"), ("--warmup", "-1", "expected a whole number"),
])
def test_bench_refuses_a_bad_argument(checkpoint, capsys, flag, value, message):
    with pytest.raises(SystemExit):
        main(["bench", "--checkpoint", str(checkpoint), flag, value])
    assert message in capsys.readouterr().err


def test_bench_refuses_a_task_the_family_does_not_give(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    assert main(["bench", "--checkpoint", str(checkpoint), "--tasks", "semantic,depth", "--text", "skip"]) != 0
    err = capsys.readouterr().err
    assert "not 'depth'" in err and "Traceback" not in err


def _result(mode: str, captured: dict, semantic: np.ndarray) -> ModeResult:
    pred = Prediction(2, 2, [], semantic=semantic)
    return ModeResult(mode, {"backbone": 1.0}, 2.0, 0.5, 2 ** 30, [2.0], captured, [], [pred])


def test_deviation_is_relative_error_and_label_agreement():
    exact = _result("exact", {"backbone": [torch.tensor([3.0, 4.0])]}, np.array([[0, 1], [2, 3]]))
    fast = _result("fast", {"backbone": [torch.tensor([3.0, 4.5])]}, np.array([[0, 1], [2, 0]]))
    dev = deviation(fast, exact)
    assert dev.relative_error["backbone"] == pytest.approx(0.5 / 5.0)
    assert dev.semantic_agreement == pytest.approx(0.75)
    table = format_table([exact, fast], {"fast": dev})
    assert "1.0e-01" in table and "75.000 %" in table and "1.00x" in table


def test_precision_setting_is_checked():
    with pytest.raises(ConfigError, match="precision='fp16'.*fp32.*bf16"):
        InferenceConfig(precision="fp16")


def _predictor(checkpoint, tmp_path, precision: str) -> Predictor:
    predictor = Predictor.from_pretrained(str(checkpoint), inference={"precision": precision},
                                          text_cache=TextEmbeddingCache(tmp_path))
    predictor.set_vocabulary(VOCAB)
    return predictor


def test_auto_precision_on_cpu_is_exact_and_fast_mode_stays_close(checkpoint, tmp_path):
    image = synthetic_photo(60, 90)
    exact = _predictor(checkpoint, tmp_path, "fp32").run([image])[0]
    auto = _predictor(checkpoint, tmp_path, "auto").run([image])[0]
    assert torch.equal(exact.mask_cls, auto.mask_cls) and torch.equal(exact.pred_masks, auto.pred_masks)
    fast_predictor = _predictor(checkpoint, tmp_path, "bf16")
    fast = fast_predictor.run([image])[0]
    assert fast.mask_cls.dtype == fast.pred_masks.dtype == torch.float32  # post-processing sees float32
    assert (fast.pred_masks - exact.pred_masks).norm() / exact.pred_masks.norm() < 0.1
    fast_predictor.with_settings({"precision": "fp32"})  # back to exact: weights back to contiguous
    again = fast_predictor.run([image])[0]
    assert torch.equal(again.mask_cls, exact.mask_cls) and torch.equal(again.pred_masks, exact.pred_masks)


def test_an_unknown_deviation_mode_prints_dashes():
    exact = _result("exact", {}, np.zeros((2, 2)))
    table = format_table([exact, _result("fast", {}, np.zeros((2, 2)))], {"fast": Deviation({}, None)})
    backbone = next(line for line in table.splitlines() if line.startswith("backbone"))
    assert backbone.split() == ["backbone", "1.000", "1.000", "1.00x", "-"]


def test_predict_fast_flag_records_fast(checkpoint, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    Image.fromarray(synthetic_photo(60, 90)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(checkpoint), "--vocab", VOCAB, "--fast",
                 "--task", "semantic", "--output", str(tmp_path / "out")]) == 0
    assert '"precision": "fast"' in (tmp_path / "out" / "run.json").read_text()


def test_fast_semantic_scores_coarse_masks_and_mostly_agrees_with_exact():
    import torch.nn.functional as F

    from vocabseg.predictor import RawOutput

    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(12, 1, 4, 6, generator=g) * 6  # smooth masks: [Q, h, w] upsampled from 4x6
    masks = F.interpolate(coarse, size=(24, 36), mode="bilinear", align_corners=False)[:, 0]
    raw = RawOutput(torch.randn(12, 6, generator=g).log_softmax(-1), masks, 4, (90, 140), (180, 280))
    exact = Predictor._semantic(raw, ("semantic",), raw.query_mask_logits())
    fast = Predictor._semantic(raw, ("semantic",), raw.query_mask_logits(), fast=True)
    assert fast.shape == exact.shape == (180, 280)
    agreement = float((fast == exact).float().mean())
    assert 0.95 < agreement < 1.0  # scoring before or after the upsampling differs only near label boundaries


def test_fast_mode_embeds_text_in_bf16_under_its_own_cache_entry(checkpoint, tmp_path):
    exact = _predictor(checkpoint, tmp_path, "fp32")
    fast = _predictor(checkpoint, tmp_path, "bf16")
    assert len(list(tmp_path.glob("text_*.pt"))) == 2  # one entry per precision, never mixed
    cosine = torch.nn.functional.cosine_similarity(fast.classifier.embeddings, exact.classifier.embeddings)
    assert 0.99 < float(cosine.min()) and not torch.equal(fast.classifier.embeddings, exact.classifier.embeddings)
    fast.with_settings({"precision": "fp32"})  # the classifier follows the mode
    assert torch.equal(fast.classifier.embeddings, exact.classifier.embeddings)


def test_embeddings_read_from_a_file_are_kept_across_a_mode_change(checkpoint, tmp_path):
    predictor = _predictor(checkpoint, tmp_path, "fp32")
    file = tmp_path / "text.npy"
    np.save(file, predictor.classifier.embeddings.numpy()[:4])  # one row per class of VOCAB
    predictor.set_vocabulary(VOCAB, text_embeddings=file)
    from_file = predictor.classifier
    predictor.with_settings({"precision": "bf16"})  # a file's embeddings have no precision to follow
    assert predictor.classifier is from_file
    predictor.set_vocabulary(VOCAB)  # encoded in bf16 now, then re-encoded exactly on the way back
    assert not torch.equal(predictor.classifier.embeddings, from_file.embeddings)
    predictor.with_settings({"precision": "fp32"})
    assert torch.equal(predictor.classifier.embeddings, from_file.embeddings)


def test_post_processing_is_reported_per_megapixel():
    from vocabseg.bench import post_seconds_per_megapixel

    preds = [Prediction(1000, 2000, []), Prediction(1000, 2000, [])]  # 4 MP in all
    result = ModeResult("exact", {"backbone": 9.0, "post: panoptic": 1.0, "post: semantic": 1.0}, 11.0, 0.1, 0,
                        [11.0], {}, [], preds)
    assert post_seconds_per_megapixel(result) == pytest.approx(0.5)
    assert "exact: post-processing 0.500 s per megapixel" in format_table([result])
    assert post_seconds_per_megapixel(_result("exact", {}, np.zeros((2, 2)))) == 0.0  # no post stage timed


def test_deviation_skips_stages_whose_outputs_differ_in_shape():
    """Fast OVSeg keeps one decoder layer's heads where exact keeps six: no broadcast nonsense, no figure."""
    exact = ModeResult("exact", {}, 1.0, 1.0, 0, [1.0], captured={"predictor": [torch.ones(6, 2)],
                                                                  "backbone": [torch.ones(3)]})
    fast = ModeResult("fast", {}, 1.0, 1.0, 0, [1.0], captured={"predictor": [torch.ones(1, 2)],
                                                                "backbone": [torch.full((3,), 1.1)]})
    errors = deviation(fast, exact).relative_error
    assert "predictor" not in errors and abs(errors["backbone"] - 0.1) < 1e-6
