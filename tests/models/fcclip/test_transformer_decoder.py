"""Tests for vocabseg.models.fcclip.transformer_decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vocabseg.models.fcclip.transformer_decoder import MaskedTransformerDecoder
from vocabseg.text.classifier import TextClassifier, synonym_index

QUERIES, HEADS, LAYERS, CLIP_DIM = 5, 4, 3, 24
MASK_DIM = 32  # must equal hidden_dim: mask-pooled features go through LayerNorm(hidden_dim), as in the official code
SYNONYMS = [2, 1, 3]  # K = 3 classes, T = 6 text embeddings
LEVEL_SIZES = [(2, 3), (4, 6), (8, 12)]  # strides 32, 16, 8 of a 64x96 image


def _decoder(seed: int = 0) -> MaskedTransformerDecoder:
    torch.manual_seed(seed)
    return MaskedTransformerDecoder(
        hidden_dim=32, num_queries=QUERIES, nheads=HEADS, dim_feedforward=64,
        dec_layers=LAYERS, mask_dim=MASK_DIM, clip_embed_dim=CLIP_DIM,
    )


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    multi_scale = [torch.randn(batch, 32, h, w, generator=g) for h, w in LEVEL_SIZES]
    mask_features = torch.randn(batch, MASK_DIM, 16, 24, generator=g)
    rows = F.normalize(torch.randn(sum(SYNONYMS) + 1, CLIP_DIM, generator=g), dim=-1)
    classifier = TextClassifier(embeddings=rows[:-1], synonym_index=synonym_index(SYNONYMS),
                                seen=torch.zeros(len(SYNONYMS), dtype=torch.bool), class_names=("a", "b", "c"))
    return multi_scale, mask_features, classifier, rows[-1:]  # the last row is the void embedding


def test_output_shapes_and_one_aux_output_per_layer():
    out = _decoder()(*_inputs(batch=2))
    assert out.pred_logits.shape == (2, QUERIES, len(SYNONYMS) + 1)
    assert out.pred_masks.shape == (2, QUERIES, 16, 24)
    # the learnable-query prediction plus every layer but the last
    assert len(out.aux_outputs) == LAYERS
    for aux in out.aux_outputs:
        assert aux["pred_logits"].shape == out.pred_logits.shape
        assert aux["pred_masks"].shape == out.pred_masks.shape
    assert all(set(aux) == {"pred_logits", "pred_masks"} for aux in out.aux_outputs)  # the criterion's keys


def test_layers_visit_levels_coarse_to_fine_round_robin():
    decoder, seen = _decoder(), []
    for layer in decoder.layers:
        layer.cross_attn.register_forward_hook(
            lambda module, args, output: seen.append((args[2].shape[1], args[4].shape))
        )
    decoder(*_inputs(batch=2))
    # layer i attends to level i % 3 (memory length h*w) with a [B*heads, Q, h*w] mask of that level
    expected = [h * w for h, w in LEVEL_SIZES][:LAYERS]
    assert [length for length, _ in seen] == expected
    assert [tuple(shape) for _, shape in seen] == [(2 * HEADS, QUERIES, n) for n in expected]


def test_attention_mask_blocks_below_half_and_repeats_per_head():
    decoder = _decoder()
    masks = torch.full((2, 2, 2, 2), -5.0)  # [B, Q, h, w], already at the target size
    masks[0, 0, 0, 1] = 5.0  # image 0, query 0: only pixel 1 is inside
    masks[1, 1] = 5.0  # image 1, query 1: everything inside
    blocked = decoder._attention_mask(masks, (2, 2))
    assert blocked.dtype == torch.bool and blocked.shape == (2 * HEADS, 2, 4)
    # batch-major: rows b * heads + h belong to image b (nn.MultiheadAttention's layout)
    image0 = torch.tensor([[True, False, True, True], [False, False, False, False]])
    image1 = torch.tensor([[False, False, False, False], [False, False, False, False]])
    for head in range(HEADS):
        assert torch.equal(blocked[head], image0)
        assert torch.equal(blocked[HEADS + head], image1)


def test_fully_blocked_rows_attend_everywhere():
    masks = torch.full((2, QUERIES, 16, 24), -30.0)  # every mask empty
    masks[1, 2, :4, :4] = 30.0
    blocked = _decoder()._attention_mask(masks, (8, 12))
    assert not blocked.all(-1).any()  # no row left with nothing to attend to
    assert blocked.sum() == HEADS * (8 * 12 - 2 * 2)  # only image 1 query 2 keeps a mask


def _empty_mask_decoder() -> MaskedTransformerDecoder:
    """Every predicted mask is -MASK_DIM everywhere when mask_features are all ones."""
    decoder = _decoder()
    last = decoder.mask_embed.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1.0)
    return decoder


def test_empty_masks_give_finite_outputs_equal_to_unmasked_attention():
    multi_scale, _, classifier, void = _inputs()
    mask_features = torch.ones(2, MASK_DIM, 16, 24)
    decoder = _empty_mask_decoder()
    out = decoder(multi_scale, mask_features, classifier, void)
    assert (out.pred_masks == -MASK_DIM).all()
    for stage in [*out.aux_outputs, {"pred_logits": out.pred_logits}]:
        assert torch.isfinite(stage["pred_logits"]).all()
    # "attend everywhere" is exactly attention without a mask
    decoder._attention_mask = lambda masks, size: torch.zeros(
        masks.shape[0] * HEADS, masks.shape[1], size[0] * size[1], dtype=torch.bool
    )
    unmasked = decoder(multi_scale, mask_features, classifier, void)
    torch.testing.assert_close(out.pred_logits, unmasked.pred_logits)


def test_gradient_reaches_every_parameter():
    decoder = _decoder()
    out = decoder(*_inputs())
    loss = out.pred_logits.sum() + out.pred_masks.sum()
    loss = loss + sum(a["pred_logits"].sum() + a["pred_masks"].sum() for a in out.aux_outputs)
    loss.backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert decoder.query_feat.weight.grad.abs().sum() > 0


def test_batched_equals_per_image():
    decoder = _decoder().eval()
    multi_scale, mask_features, classifier, void = _inputs(batch=2)
    with torch.no_grad():
        out = decoder(multi_scale, mask_features, classifier, void)
        for i in range(2):
            single = decoder([x[i : i + 1] for x in multi_scale], mask_features[i : i + 1], classifier, void)
            torch.testing.assert_close(out.pred_logits[i : i + 1], single.pred_logits, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.pred_masks[i : i + 1], single.pred_masks, atol=1e-4, rtol=1e-4)


def test_void_embedding_feeds_only_the_last_logit_column():
    decoder = _decoder().eval()
    multi_scale, mask_features, classifier, void = _inputs()
    other_void = F.normalize(torch.randn(1, CLIP_DIM, generator=torch.Generator().manual_seed(5)), dim=-1)
    with torch.no_grad():
        out = decoder(multi_scale, mask_features, classifier, void)
        other = decoder(multi_scale, mask_features, classifier, other_void)
    torch.testing.assert_close(out.pred_logits[..., :-1], other.pred_logits[..., :-1])
    torch.testing.assert_close(out.pred_masks, other.pred_masks)  # classification never steers the masks
    assert not torch.allclose(out.pred_logits[..., -1], other.pred_logits[..., -1])


@torch.no_grad()
def test_fast_inference_makes_only_the_last_prediction_and_stays_close():
    from vocabseg.precision import _FAST_INFERENCE

    decoder = _decoder().eval()
    inputs = _inputs(batch=2)
    exact = decoder(*inputs)
    token = _FAST_INFERENCE.set(True)  # fast mode's algorithms without autocast: the float32 recipe
    try:
        fast = decoder(*inputs)
    finally:
        _FAST_INFERENCE.reset(token)
    assert fast.aux_outputs == []  # nothing reads the earlier layers' predictions at inference
    torch.testing.assert_close(fast.pred_logits, exact.pred_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.pred_masks, exact.pred_masks, rtol=1e-4, atol=1e-4)
