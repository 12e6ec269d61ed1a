"""Tests for vocabseg.layers.ms_deform_attn."""
from __future__ import annotations

import math

import pytest
import torch

from vocabseg.layers import ms_deform_attn
from vocabseg.layers.ms_deform_attn import MSDeformAttn, gather_deformable_attention, multi_scale_deformable_attention
from vocabseg.precision import _FAST_INFERENCE


def _bilinear_zero_padded(level: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Naive bilinear sample of [H, W, D] at normalised (x, y); pixel centres at (j + 0.5) / W."""
    height, width, _ = level.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(level.shape[-1], dtype=level.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < height and 0 <= xx < width:  # zero outside the map
                out += wy * wx * level[yy, xx]
    return out


def _naive_msda(value, shapes, locations, weights) -> torch.Tensor:
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, num_queries, heads, head_dim, dtype=value.dtype)
    for n in range(batch):
        for q in range(num_queries):
            for m in range(heads):
                for lvl, (h, w) in enumerate(shapes):
                    level = value[n, starts[lvl]:starts[lvl + 1], m].reshape(h, w, head_dim)
                    for p in range(num_points):
                        x, y = locations[n, q, m, lvl, p].tolist()
                        out[n, q, m] += weights[n, q, m, lvl, p] * _bilinear_zero_padded(level, x, y)
    return out.reshape(batch, num_queries, heads * head_dim)


def _random_case(shapes, *, batch=2, queries=3, heads=2, head_dim=3, points=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(h * w for h, w in shapes)
    value = torch.randn(batch, total, heads, head_dim, generator=g, dtype=torch.float64)
    # [-0.2, 1.2]: some points fall partly or wholly outside the map (zero padding)
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes) * points, generator=g, dtype=torch.float64).softmax(-1)
    return value, locations, weights.view(batch, queries, heads, len(shapes), points)


def test_grid_sample_implementation_matches_naive_bilinear():
    shapes = [(3, 4), (2, 5), (1, 1)]
    value, locations, weights = _random_case(shapes)
    out = multi_scale_deformable_attention(value, shapes, locations, weights)
    assert out.shape == (2, 3, 2 * 3)
    torch.testing.assert_close(out, _naive_msda(value, shapes, locations, weights), atol=1e-10, rtol=0)


def test_gather_implementation_matches_naive_bilinear():
    shapes = [(3, 4), (2, 5), (1, 1)]
    value, locations, weights = _random_case(shapes, seed=1)
    locations[0, 0, 0, 0] = torch.tensor([[-3.0, 0.5], [0.5, 7.0]])  # far outside: zero, not a wrapped row
    out = gather_deformable_attention(value, shapes, locations, weights)
    torch.testing.assert_close(out, _naive_msda(value, shapes, locations, weights), atol=1e-10, rtol=0)


def test_gather_with_a_non_finite_location_gives_nan_there_not_an_index_error():
    value, locations, weights = _random_case([(3, 4)], seed=2)
    locations[0, 1, 0, 0, 0, 0] = float("nan")
    locations[1, 2, 1, 0, 1, 1] = float("nan")
    out = gather_deformable_attention(value, [(3, 4)], locations, weights)  # [2, 3, heads 2 x dim 3]
    broken = torch.zeros_like(out, dtype=torch.bool)
    broken[0, 1, :3] = broken[1, 2, 3:] = True  # head 0 of query 1 in image 0; head 1 of query 2 in image 1
    assert torch.equal(out.isnan(), broken)
    reference = _naive_msda(value, [(3, 4)], locations.nan_to_num(0.5), weights)  # same where finite
    torch.testing.assert_close(out[~broken], reference[~broken], atol=1e-10, rtol=0)


@pytest.mark.parametrize("fast, grad, path", [(True, False, "gather"), (False, False, "grid"), (True, True, "grid")])
def test_fast_inference_off_cuda_takes_the_gather_path(monkeypatch, fast, grad, path):
    taken = []
    for name, label in (("gather_deformable_attention", "gather"), ("grid_sample_deformable_attention", "grid")):
        original = getattr(ms_deform_attn, name)
        monkeypatch.setattr(ms_deform_attn, name, lambda *a, _f=original, _l=label: taken.append(_l) or _f(*a))
    value, locations, weights = _random_case([(2, 2)])
    value.requires_grad_(grad)
    token = _FAST_INFERENCE.set(fast)
    try:
        multi_scale_deformable_attention(value, [(2, 2)], locations, weights)
    finally:
        _FAST_INFERENCE.reset(token)
    assert taken == [path]


def test_points_outside_the_map_sample_zero():
    shapes = [(2, 2)]
    value, locations, weights = _random_case(shapes, points=1)
    locations[..., 0] = -0.3  # more than one pixel left of the map: every corner is outside
    assert torch.count_nonzero(multi_scale_deformable_attention(value, shapes, locations, weights)) == 0


@pytest.mark.parametrize("row, col", [(0, 0), (1, 2), (2, 3)])
def test_sampling_a_pixel_centre_returns_that_pixel(row, col):
    height, width, dim = 3, 4, 5
    value = torch.arange(height * width * dim, dtype=torch.float32).view(1, height * width, 1, dim)
    location = torch.tensor([(col + 0.5) / width, (row + 0.5) / height]).view(1, 1, 1, 1, 1, 2)
    out = multi_scale_deformable_attention(value, [(height, width)], location, torch.ones(1, 1, 1, 1, 1))
    torch.testing.assert_close(out[0, 0], value[0, row * width + col, 0])


def test_output_shape_is_queries_by_heads_times_head_dim():
    shapes = [(4, 4), (2, 2)]
    value, locations, weights = _random_case(shapes, batch=3, queries=7, heads=4, head_dim=2, points=3)
    assert multi_scale_deformable_attention(value, shapes, locations, weights).shape == (3, 7, 8)


def test_reset_parameters_puts_offsets_on_a_ring():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=3)
    # head h points at angle h * 45 degrees, scaled so the larger |component| is 1
    directions = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]],
                              dtype=torch.float32)
    expected = directions.view(8, 1, 1, 2) * torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1)  # point p at radius p + 1
    expected = expected.expand(8, 2, 3, 2)  # identical on every level
    torch.testing.assert_close(attn.sampling_offsets.bias.view(8, 2, 3, 2), expected, atol=1e-5, rtol=0)
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    # attention starts uniform over the L * P samples
    assert torch.count_nonzero(attn.attention_weights.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.bias) == 0


def test_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_levels=1, n_heads=4, n_points=1)


def test_offsets_are_in_pixels_of_each_level():
    # one head, one point per level, identity projections: the output is the mean of the
    # two sampled pixels, one pixel right of the reference on level 0 and one below on level 1
    attn = MSDeformAttn(d_model=2, n_levels=2, n_heads=1, n_points=1)
    with torch.no_grad():
        for linear in (attn.value_proj, attn.output_proj):
            linear.weight.copy_(torch.eye(2))
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    shapes = [(4, 4), (2, 2)]
    level0 = torch.randn(4, 4, 2)
    level1 = torch.randn(2, 2, 2)
    flat = torch.cat([level0.reshape(16, 2), level1.reshape(4, 2)])[None]
    # reference: pixel (row 1, col 1) of level 0 and pixel (row 0, col 1) of level 1
    reference = torch.tensor([[1.5 / 4, 1.5 / 4], [1.5 / 2, 0.5 / 2]]).view(1, 1, 2, 2)
    out = attn(torch.randn(1, 1, 2), reference, flat, shapes)
    torch.testing.assert_close(out[0, 0], 0.5 * level0[1, 2] + 0.5 * level1[1, 1])
