"""Tests for vocabseg.layers.transformer: the post-norm attention and feed-forward blocks."""
from __future__ import annotations

import torch

from vocabseg.layers.transformer import AttentionBlock, FeedForwardBlock


def _block(seed: int = 0) -> AttentionBlock:
    torch.manual_seed(seed)
    return AttentionBlock(16, 4)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, n, 16, generator=g) for n in (3, 3, 5, 5)]  # x, query_pos, memory, memory_pos


def test_attention_is_residual_then_layer_norm():
    block = _block().eval()
    x, query_pos, memory, memory_pos = _inputs()
    with torch.no_grad():
        attended = block.attn(x + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        expected = block.norm(x + attended)
        torch.testing.assert_close(block(x, query_pos, memory, memory_pos), expected)


def test_inference_math_agrees_with_the_training_kernel():
    block = _block()
    inputs = _inputs()
    with torch.no_grad():
        fused = block.train()(*inputs)  # no dropout in the block: train and eval differ only in the kernel
        explicit = block.eval()(*inputs)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_blocked_memory_positions_are_not_attended():
    block = _block().eval()
    x, query_pos, memory, memory_pos = _inputs()
    blocked = torch.zeros(2 * 4, 3, 5, dtype=torch.bool)
    blocked[..., 3:] = True  # the last two memory positions are off limits
    changed = memory.clone()
    changed[:, 3:] += 100.0
    with torch.no_grad():
        torch.testing.assert_close(block(x, query_pos, memory, memory_pos, blocked),
                                   block(x, query_pos, changed, memory_pos, blocked))


def test_weights_are_xavier_initialised_and_norms_are_identity():
    block, ffn = _block(), FeedForwardBlock(16, 32)
    assert torch.equal(block.norm.weight, torch.ones(16)) and torch.equal(ffn.norm.bias, torch.zeros(16))
    bound = (6 / (16 + 32)) ** 0.5  # xavier_uniform of a 16 -> 32 linear
    assert ffn.linear1.weight.abs().max() <= bound


def test_feed_forward_is_residual_relu_mlp_then_layer_norm():
    torch.manual_seed(0)
    ffn = FeedForwardBlock(16, 32)
    x = torch.randn(2, 3, 16)
    expected = ffn.norm(x + ffn.linear2(torch.relu(ffn.linear1(x))))
    torch.testing.assert_close(ffn(x), expected)
