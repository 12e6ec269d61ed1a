"""Tests for vocabseg.losses.point_sampling."""
from __future__ import annotations

import pytest
import torch

from vocabseg.losses.point_sampling import mask_uncertainty, pad_masks, point_sample, sample_uncertain_points


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_point_sample_shape_and_dtype():
    features = torch.randn(2, 3, 5, 7)
    coords = torch.rand(2, 11, 2)
    assert point_sample(features, coords).shape == (2, 3, 11)
    assert point_sample(features.bfloat16(), coords).dtype == torch.bfloat16


def test_point_sample_reads_pixel_centres_x_first():
    # align_corners=False: pixel (i, j) has its centre at ((j + .5) / W, (i + .5) / H).
    h, w = 4, 6
    features = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([(cols + 0.5) / w, (rows + 0.5) / h], dim=-1).reshape(1, -1, 2)
    assert torch.allclose(point_sample(features, coords)[0, 0], features.flatten(), atol=1e-5)


def test_point_sample_pads_with_zeros_outside_the_frame():
    features = torch.ones(1, 1, 4, 4)
    # The frame's edge is half a pixel from the first centre: half padding, half value.
    coords = torch.tensor([[[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]]])
    assert torch.allclose(point_sample(features, coords)[0, 0], torch.tensor([0.5, 1.0, 0.5]))


def test_mask_uncertainty_is_negative_abs():
    logits = torch.tensor([-3.0, 0.0, 2.0])
    assert torch.equal(mask_uncertainty(logits), torch.tensor([-3.0, 0.0, -2.0]))


def test_sample_uncertain_points_shape_and_range():
    logits = torch.randn(3, 1, 8, 8)
    coords = sample_uncertain_points(
        logits, mask_uncertainty, num_points=50, oversample_ratio=3.0, importance_sample_ratio=0.75, generator=_gen()
    )
    assert coords.shape == (3, 50, 2)
    assert coords.dtype == torch.float32
    assert coords.min() >= 0 and coords.max() <= 1


def test_sample_uncertain_points_takes_top_candidates_then_random():
    logits = torch.randn(2, 1, 16, 16)
    num_points, ratio, beta = 40, 3.0, 0.75
    coords = sample_uncertain_points(
        logits, mask_uncertainty, num_points=num_points, oversample_ratio=ratio,
        importance_sample_ratio=beta, generator=_gen(3),
    )
    # Replay the same random stream: candidates first, then the random fill.
    replay = _gen(3)
    candidates = torch.rand(2, int(num_points * ratio), 2, generator=replay)
    fill = torch.rand(2, num_points - int(beta * num_points), 2, generator=replay)
    uncertainty = mask_uncertainty(point_sample(logits, candidates))[:, 0]  # [2, kP]
    num_uncertain = int(beta * num_points)
    for n in range(2):
        top = candidates[n, uncertainty[n].topk(num_uncertain).indices]
        assert torch.equal(coords[n, :num_uncertain], top)
    assert torch.equal(coords[:, num_uncertain:], fill)


def test_sample_uncertain_points_prefers_uncertain_region():
    # Left half has logit 0 (maximally uncertain), right half is confident.
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., :4] = 0.0
    coords = sample_uncertain_points(
        logits, mask_uncertainty, num_points=100, oversample_ratio=3.0, importance_sample_ratio=0.3, generator=_gen(1)
    )
    assert (coords[0, :30, 0] < 0.5).all()


def test_sample_uncertain_points_all_random_when_ratio_zero():
    coords = sample_uncertain_points(
        torch.randn(2, 1, 4, 4), mask_uncertainty, num_points=10, oversample_ratio=2.0,
        importance_sample_ratio=0.0, generator=_gen(),
    )
    assert coords.shape == (2, 10, 2)


@pytest.mark.parametrize("ratio, beta", [(0.5, 0.5), (3.0, 1.5), (3.0, -0.1)])
def test_sample_uncertain_points_rejects_bad_ratios(ratio, beta):
    with pytest.raises(ValueError):
        sample_uncertain_points(
            torch.randn(1, 1, 4, 4), mask_uncertainty, num_points=4, oversample_ratio=ratio,
            importance_sample_ratio=beta,
        )


def test_pad_masks_bottom_right():
    masks = torch.ones(2, 2, 3, dtype=torch.bool)
    padded = pad_masks(masks, height=4, width=5)
    assert padded.shape == (2, 4, 5) and padded.dtype == torch.bool
    assert padded[:, :2, :3].all() and padded.sum() == masks.sum()
    assert pad_masks(masks, height=2, width=3) is masks
    with pytest.raises(ValueError):
        pad_masks(masks, height=1, width=3)
