"""Tests for vocabseg.models.fcclip.model on the tiny random-weight models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vocabseg.models import InputBatch, QueryOutput, get_family
from vocabseg.models.fcclip.model import MASK_STRIDE, geometric_ensemble
from vocabseg.testing import tiny_model
from vocabseg.text.classifier import TextClassifier, synonym_index

SYNONYMS = [2, 1, 3]  # K = 3 classes from T = 6 text embeddings
SEEN = [True, False, True]
QUERIES = 10


def _classifier(synonyms=SYNONYMS, rows: torch.Tensor | None = None, seed: int = 0) -> TextClassifier:
    if rows is None:
        rows = F.normalize(torch.randn(sum(synonyms), 32, generator=torch.Generator().manual_seed(seed)), dim=-1)
    return TextClassifier(embeddings=rows, synonym_index=synonym_index(synonyms),
                          seen=torch.tensor(SEEN[:len(synonyms)]), class_names=tuple("abc"[:len(synonyms)]))


def _images(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def outputs(tiny_models):
    """Eval-mode outputs of both tiny models on one 2x3x64x96 batch."""
    with torch.no_grad():
        return {kind: model(_images(), _classifier()) for kind, model in tiny_models.items()}


def test_forward_shapes(tiny_models, outputs, backbone_kind):
    out = outputs[backbone_kind]
    assert out.pred_logits.shape == (2, QUERIES, len(SYNONYMS) + 1)
    assert out.pred_masks.shape == (2, QUERIES, 64 // MASK_STRIDE, 96 // MASK_STRIDE)
    assert len(out.aux_outputs) == 3  # dec_layers
    res5 = tiny_models[backbone_kind].backbone.channels["res5"]
    assert out.clip_dense.shape == (2, res5, 64 // 32, 96 // 32)
    assert torch.isfinite(out.pred_logits).all() and torch.isfinite(out.pred_masks).all()


def test_void_is_the_unit_norm_void_embedding(tiny_models):
    model = tiny_models["convnext"]
    void = model.void()
    assert void.shape == (1, 32)
    torch.testing.assert_close(void.norm(), torch.tensor(1.0))
    torch.testing.assert_close(void, F.normalize(model.void_embedding.weight, dim=-1))


def test_void_logit_is_the_last_column(tiny_models):
    # classifying against the void embedding alone gives the void column of the full classifier
    model = tiny_models["convnext"]
    regions = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1))
    scale = model.transformer_decoder.logit_scale
    classifier = _classifier()
    full = classifier.logits(regions, scale, void=model.void())
    void_only = scale.exp().clamp(max=100) * F.normalize(regions, dim=-1) @ model.void()[0]
    assert full.shape == (2, 4, len(SYNONYMS) + 1)
    torch.testing.assert_close(full[..., :-1], classifier.logits(regions, scale))
    torch.testing.assert_close(full[..., -1], void_only)


def test_duplicate_synonym_does_not_change_logits(tiny_models, outputs):
    # class 1's single synonym (row 2) given twice: the max over synonyms is unchanged
    rows = _classifier().embeddings
    duplicated = torch.cat([rows[:3], rows[2:3], rows[3:]])
    with torch.no_grad():
        out = tiny_models["convnext"](_images(), _classifier([2, 2, 3], duplicated))
    torch.testing.assert_close(out.pred_logits, outputs["convnext"].pred_logits)


def test_out_of_vocab_logits_shapes_and_valid_flags(tiny_models, outputs, backbone_kind):
    model, out = tiny_models[backbone_kind], outputs[backbone_kind]
    masks = torch.full((2, QUERIES, 16, 24), -5.0)
    masks[:, 0] = 5.0  # whole image
    masks[0, 1, :8, :8] = 5.0  # top-left 8x8 of the 16x24 mask map: one cell of the 2x3 CLIP map
    logits, valid = model.out_of_vocab_logits(out.clip_dense, masks, _classifier())
    assert logits.shape == (2, QUERIES, len(SYNONYMS) + 1)
    assert valid.dtype == torch.bool and valid.shape == (2, QUERIES)
    expected = torch.zeros(2, QUERIES, dtype=torch.bool)
    expected[:, 0] = True
    expected[0, 1] = True
    assert torch.equal(valid, expected)
    assert torch.isfinite(logits).all()  # empty masks too
    # cosine logits scaled by CLIP's own temperature
    assert logits.abs().max() <= model.backbone.clip.logit_scale.exp().clamp(max=100) + 1e-4


@pytest.mark.parametrize("on_valid_mask", [False, True])
def test_inference_is_the_geometric_ensemble_of_both_heads(tiny_models, outputs, backbone_kind, on_valid_mask):
    model, out = tiny_models[backbone_kind], outputs[backbone_kind]
    settings = get_family("fcclip").default_settings(model.config).override(
        {"ensemble_alpha": 0.3, "ensemble_beta": 0.6, "ensemble_on_valid_mask": on_valid_mask})
    classifier = _classifier()
    with torch.no_grad():
        images = _images()
        batch = InputBatch(images, [tuple(images.shape[-2:])] * len(images), [])  # FC-CLIP reads images only
        result = model.inference(batch, classifier, settings)
    assert isinstance(result, QueryOutput) and result.mask_stride == MASK_STRIDE
    assert set(result.details) == {"in_vocab_logits", "out_vocab_logits"}
    torch.testing.assert_close(result.details["in_vocab_logits"], out.pred_logits)
    torch.testing.assert_close(result.mask_logits, out.pred_masks)
    out_vocab, valid = model.out_of_vocab_logits(out.clip_dense, out.pred_masks, classifier)
    torch.testing.assert_close(result.details["out_vocab_logits"], out_vocab)
    expected = geometric_ensemble(out.pred_logits, out_vocab, classifier.seen, alpha=0.3, beta=0.6,
                                  valid_masks=valid if on_valid_mask else None)
    torch.testing.assert_close(result.mask_cls, expected)


def test_input_policy_reads_the_settings_and_the_config(tiny_models):
    model = tiny_models["convnext"]
    settings = get_family("fcclip").default_settings(model.config).override({"min_size": 96, "max_size": 160})
    policy = model.input_policy(settings)
    assert (policy.min_size, policy.max_size) == (96, 160)
    assert (policy.pixel_mean, policy.pixel_std) == (model.config.pixel_mean, model.config.pixel_std)
    assert policy.size_divisibility == model.config.size_divisibility == 32


def test_model_backward(backbone_kind):
    """timm-style: every trainable parameter gets a finite gradient, the frozen CLIP none."""
    model = tiny_model(backbone_kind).train()
    out = model(_images(batch=2, height=64, width=64), _classifier())
    loss = out.pred_logits.sum() + out.pred_masks.sum()
    loss = loss + sum(aux["pred_logits"].sum() + aux["pred_masks"].sum() for aux in out.aux_outputs)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert trainable and all(p.requires_grad for _, p in trainable)
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.void_embedding.weight.grad.abs().sum() > 0
