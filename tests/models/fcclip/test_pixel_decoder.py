"""Tests for vocabseg.model.pixel_decoder."""
from __future__ import annotations

import torch

from vocabseg.models.fcclip.pixel_decoder import MSDeformAttnPixelDecoder, _reference_points

CHANNELS = {"res2": 8, "res3": 16, "res4": 24, "res5": 40}
STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _decoder(seed: int = 0) -> MSDeformAttnPixelDecoder:
    torch.manual_seed(seed)
    return MSDeformAttnPixelDecoder(
        in_channels=CHANNELS, conv_dim=32, mask_dim=16, num_encoder_layers=2, encoder_ffn_dim=64, n_heads=4, n_points=2
    ).eval()


def _features(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch, CHANNELS[name], height // s, width // s, generator=g) for name, s in STRIDES.items()
    }


def test_output_shapes_and_strides():
    mask_features, multi_scale = _decoder()(_features(batch=2, height=64, width=96))
    assert mask_features.shape == (2, 16, 64 // 4, 96 // 4)
    # coarse to fine: strides 32, 16, 8, all conv_dim wide
    assert [tuple(x.shape) for x in multi_scale] == [(2, 32, 2, 3), (2, 32, 4, 6), (2, 32, 8, 12)]


def test_runs_in_float32_under_bfloat16_autocast():
    decoder, features = _decoder(), _features()
    with torch.no_grad():
        reference_masks, reference_levels = decoder(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            masks, levels = decoder(features)
    assert masks.dtype == torch.float32 and all(x.dtype == torch.float32 for x in levels)
    # bfloat16 would be off by ~1e-2; float32 matches the plain run
    torch.testing.assert_close(masks, reference_masks)
    for level, reference in zip(levels, reference_levels):
        torch.testing.assert_close(level, reference)


def test_accepts_bfloat16_features():
    features = {k: v.bfloat16() for k, v in _features().items()}
    with torch.no_grad():
        masks, levels = _decoder()(features)
    assert masks.dtype == torch.float32 and torch.isfinite(masks).all()


def test_res2_feeds_only_the_mask_features():
    decoder, features = _decoder(), _features()
    changed = dict(features, res2=features["res2"] + 1.0)
    with torch.no_grad():
        masks, levels = decoder(features)
        changed_masks, changed_levels = decoder(changed)
    for level, other in zip(levels, changed_levels):
        assert torch.equal(level, other)
    assert not torch.allclose(masks, changed_masks)


def test_batched_equals_per_image():
    decoder, features = _decoder(), _features(batch=2)
    with torch.no_grad():
        masks, levels = decoder(features)
        for i in range(2):
            single_masks, single_levels = decoder({k: v[i : i + 1] for k, v in features.items()})
            torch.testing.assert_close(masks[i : i + 1], single_masks, atol=1e-5, rtol=1e-5)
            for level, single in zip(levels, single_levels):
                torch.testing.assert_close(level[i : i + 1], single, atol=1e-5, rtol=1e-5)


def test_reference_points_are_normalised_pixel_centres():
    points = _reference_points([(2, 2), (1, 1)], batch=3, device=torch.device("cpu"))
    assert points.shape == (3, 5, 2, 2)  # [B, S, L, (x, y)]
    expected = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.5, 0.5]])
    for batch in range(3):
        for level in range(2):
            torch.testing.assert_close(points[batch, :, level], expected)

