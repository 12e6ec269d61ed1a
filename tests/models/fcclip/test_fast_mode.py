"""FC-CLIP fast mode: fused attention (SDPA) against the reference block, a bf16 pixel decoder."""
from __future__ import annotations

import torch

from vocabseg.layers.transformer import AttentionBlock
from vocabseg.models.fcclip.pixel_decoder import MSDeformAttnPixelDecoder
from vocabseg.models.fcclip.transformer_decoder import fused_attention
from vocabseg.precision import choose_recipe, inference_precision


def _case(seed: int = 0):
    torch.manual_seed(seed)
    block = AttentionBlock(16, 4).eval()
    x, query_pos = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    memory, memory_pos = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    return block, x, query_pos, memory, memory_pos


@torch.no_grad()
def test_fused_attention_equals_the_block_with_and_without_a_mask():
    block, x, query_pos, memory, memory_pos = _case()
    blocked = torch.rand(2 * 4, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.5
    blocked[:, :, 0] = False  # every row may attend somewhere
    for mask in (None, blocked):
        torch.testing.assert_close(fused_attention(block, x, query_pos, memory, memory_pos, mask),
                                   block(x, query_pos, memory, memory_pos, mask), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_an_all_masked_row_attends_everywhere_instead_of_giving_nan():
    block, x, query_pos, memory, memory_pos = _case()
    blocked = torch.zeros(2 * 4, 5, 7, dtype=torch.bool)
    blocked[3, 2] = True  # image 0, head 3, query 2: no key allowed
    out = fused_attention(block, x, query_pos, memory, memory_pos, blocked)
    assert torch.isfinite(out).all()
    unmasked = fused_attention(block, x, query_pos, memory, memory_pos, None)
    torch.testing.assert_close(out, unmasked)  # the all-masked row fell back to no mask; the rest had none
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fast mode's dtype too
        assert torch.isfinite(fused_attention(block, x, query_pos, memory, memory_pos, blocked)).all()


@torch.no_grad()
def test_pixel_decoder_runs_bf16_projections_only_in_fast_inference():
    torch.manual_seed(0)
    channels = {"res2": 8, "res3": 16, "res4": 24, "res5": 40}
    decoder = MSDeformAttnPixelDecoder(in_channels=channels, conv_dim=32, mask_dim=16, num_encoder_layers=2,
                                       encoder_ffn_dim=64, n_heads=4, n_points=2).eval()
    strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    features = {name: torch.randn(1, channels[name], 64 // s, 96 // s) for name, s in strides.items()}
    reference, _ = decoder(features)
    with inference_precision(decoder, torch.device("cpu"), choose_recipe("bf16", torch.device("cpu"))):
        fast, _ = decoder(features)
    assert fast.dtype == torch.bfloat16  # the last 1x1 conv ran in bf16 (plain autocast keeps float32)
    error = float((fast.float() - reference).norm() / reference.norm())
    assert 0 < error < 5e-2
