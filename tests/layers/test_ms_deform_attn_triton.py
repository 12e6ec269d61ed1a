"""The Triton deformable-attention kernel against the grid_sample path, on CPU through Triton's
interpreter (TRITON_INTERPRET=1 must be set before triton is imported: a child process)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

# Odd sizes on purpose: a head width that is not a power of two (masked channels), a query count
# that is not a multiple of the block, points outside every level (zero padding), a 1x1 level,
# and bf16 values (accumulated in float32).
SCRIPT = textwrap.dedent("""
    import torch
    from vocabseg.layers.ms_deform_attn import grid_sample_deformable_attention
    from vocabseg.layers.ms_deform_attn_triton import multi_scale_deformable_attention_triton

    def case(shapes, batch, queries, heads, head_dim, points, seed):
        g = torch.Generator().manual_seed(seed)
        total = sum(h * w for h, w in shapes)
        value = torch.randn(batch, total, heads, head_dim, generator=g)
        locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=g) * 1.6 - 0.3
        weights = torch.rand(batch, queries, heads, len(shapes) * points, generator=g).softmax(-1)
        return value, locations, weights.view(batch, queries, heads, len(shapes), points)

    for shapes, batch, queries, heads, head_dim, points in [
        ([(5, 7), (3, 4), (1, 1)], 2, 37, 2, 6, 3),
        ([(4, 4)], 1, 5, 3, 8, 1),
    ]:
        value, locations, weights = case(shapes, batch, queries, heads, head_dim, points, seed=queries)
        ours = multi_scale_deformable_attention_triton(value, shapes, locations, weights)
        reference = grid_sample_deformable_attention(value, shapes, locations, weights)
        assert ours.shape == reference.shape == (batch, queries, heads * head_dim)
        torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)
        half = multi_scale_deformable_attention_triton(value.bfloat16(), shapes, locations, weights)
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half.float(), reference, atol=3e-2, rtol=3e-2)
    outside = torch.full_like(locations, -0.5)  # every corner of every point is off the map
    assert torch.count_nonzero(multi_scale_deformable_attention_triton(value, shapes, outside, weights)) == 0
    print("ok")
""")


def test_triton_kernel_matches_grid_sample_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_cpu_inference_takes_the_grid_sample_path(monkeypatch):
    import torch

    from vocabseg.layers import ms_deform_attn

    calls = []
    monkeypatch.setattr(ms_deform_attn, "_triton_kernel", lambda: calls.append(1) or None)
    value = torch.randn(1, 4, 1, 2)
    out = ms_deform_attn.multi_scale_deformable_attention(
        value, [(2, 2)], torch.full((1, 3, 1, 1, 1, 2), 0.5), torch.ones(1, 3, 1, 1, 1))
    assert out.shape == (1, 3, 2) and not calls  # never asked for the kernel off CUDA
