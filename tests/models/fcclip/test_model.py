"""Tests for vocabseg.model.fcclip on the tiny random-weight models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

SYNONYMS = [2, 1, 3]  # K = 3 classes from T = 6 text embeddings
QUERIES = 10


def _text(rows: int = sum(SYNONYMS), seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, 32, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _images(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def outputs(tiny_models):
    """Eval-mode outputs of both tiny models on one 2x3x64x96 batch."""
    with torch.no_grad():
        return {kind: model(_images(), _text(), SYNONYMS) for kind, model in tiny_models.items()}


def test_forward_shapes(tiny_models, outputs, backbone_kind):
    out = outputs[backbone_kind]
    assert out.pred_logits.shape == (2, QUERIES, len(SYNONYMS) + 1)
    assert out.pred_masks.shape == (2, QUERIES, 64 // 4, 96 // 4)
    assert len(out.aux_outputs) == 3  # dec_layers
    res5 = tiny_models[backbone_kind].backbone.channels["res5"]
    assert out.clip_dense.shape == (2, res5, 64 // 32, 96 // 32)
    assert torch.isfinite(out.pred_logits).all() and torch.isfinite(out.pred_masks).all()


def test_classifier_with_void_appends_one_unit_row(tiny_models):
    model = tiny_models["convnext"]
    text = _text()
    classifier = model.classifier_with_void(text)
    assert classifier.shape == (len(text) + 1, 32)
    assert torch.equal(classifier[:-1], text)
    torch.testing.assert_close(classifier[-1].norm(), torch.tensor(1.0))
    torch.testing.assert_close(classifier[-1], F.normalize(model.void_embedding.weight[0], dim=0))


def test_duplicate_synonym_does_not_change_logits(tiny_models, outputs):
    # class 1's single synonym (row 2) given twice: the max over synonyms is unchanged
    text = _text()
    duplicated = torch.cat([text[:3], text[2:3], text[3:]])
    with torch.no_grad():
        out = tiny_models["convnext"](_images(), duplicated, [2, 2, 3])
    torch.testing.assert_close(out.pred_logits, outputs["convnext"].pred_logits)


def test_out_of_vocab_logits_shapes_and_valid_flags(tiny_models, outputs, backbone_kind):
    model, out = tiny_models[backbone_kind], outputs[backbone_kind]
    masks = torch.full((2, QUERIES, 16, 24), -5.0)
    masks[:, 0] = 5.0  # whole image
    masks[0, 1, :8, :8] = 5.0  # top-left 8x8 of the 16x24 mask map: one cell of the 2x3 CLIP map
    logits, valid = model.out_of_vocab_logits(out.clip_dense, masks, _text(), SYNONYMS)
    assert logits.shape == (2, QUERIES, len(SYNONYMS) + 1)
    assert valid.dtype == torch.bool and valid.shape == (2, QUERIES)
    expected = torch.zeros(2, QUERIES, dtype=torch.bool)
    expected[:, 0] = True
    expected[0, 1] = True
    assert torch.equal(valid, expected)
    assert torch.isfinite(logits).all()  # empty masks too
    # cosine logits scaled by CLIP's own temperature
    assert logits.abs().max() <= model.backbone.clip.logit_scale.exp().clamp(max=100) + 1e-4


def test_model_backward(make_tiny_model, backbone_kind):
    """timm-style: every trainable parameter gets a finite gradient, the frozen CLIP none."""
    model = make_tiny_model(backbone_kind).train()
    out = model(_images(batch=2, height=64, width=64), _text(), SYNONYMS)
    loss = out.pred_logits.sum() + out.pred_masks.sum()
    loss = loss + sum(aux["pred_logits"].sum() + aux["pred_masks"].sum() for aux in out.aux_outputs)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert trainable and all(p.requires_grad for _, p in trainable)
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.void_embedding.weight.grad.abs().sum() > 0
