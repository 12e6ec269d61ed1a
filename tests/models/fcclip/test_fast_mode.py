"""FC-CLIP fast mode: fused attention (SDPA) against the reference block, a bf16 pixel decoder, int8
ConvNeXt MLPs on x86 CPUs."""
from __future__ import annotations

import pytest
import torch

from vocabseg.layers import int8_linear as int8
from vocabseg.layers.int8_linear import int8_available
from vocabseg.layers.transformer import AttentionBlock
from vocabseg.models.fcclip.pixel_decoder import MSDeformAttnPixelDecoder
from vocabseg.models.fcclip.transformer_decoder import fused_attention
from vocabseg.precision import choose_recipe, inference_precision
from vocabseg.testing import tiny_model


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


@torch.no_grad()
def test_convnext_backbone_runs_int8_mlps_in_fast_mode_only():
    if not int8_available(torch.device("cpu"))[0]:
        pytest.skip("no fbgemm int8 kernels on this CPU")
    model = tiny_model("convnext").eval()
    trunk = model.backbone.clip.visual.trunk
    blocks = [block for stage in trunk.stages for block in stage.blocks]
    for block in blocks:
        block.gamma.fill_(0.5)  # the random CLIP's layer scale (1e-6) would hide the MLPs' error
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    x = trunk.stem(images)
    for stage in trunk.stages:  # timm's own forward: what exact mode must keep, bit for bit
        x = stage(x)
    cpu = torch.device("cpu")
    with inference_precision(model, cpu, choose_recipe("fp32", cpu)):
        exact = model.backbone(images)
    assert torch.equal(exact.res5, x) and not any(b.mlp.fc1 in int8._PACKED for b in blocks)
    with inference_precision(model, cpu, choose_recipe("fast", cpu)):
        fast = model.backbone(images)
    assert all(b.mlp.fc1 in int8._PACKED and b.mlp.fc2 in int8._PACKED for b in blocks)
    for name, level in exact.levels().items():
        error = float((getattr(fast, name) - level).norm() / level.norm())
        assert 0 < error < 0.05, name  # measured about 1e-2 (ConvNeXt-L at 800x1200: 1.7e-2 at res5)
