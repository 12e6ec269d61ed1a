"""Tests for vocabseg.layers.position_encoding."""
from __future__ import annotations

import math

import torch

from vocabseg.layers.position_encoding import sine_position_encoding


def test_shape_is_batch_by_twice_num_pos_feats():
    pos = sine_position_encoding(torch.zeros(2, 7, 3, 5), num_pos_feats=4)
    assert pos.shape == (2, 8, 3, 5)
    assert pos.dtype == torch.float32


def test_first_channel_at_origin():
    height = 6
    pos = sine_position_encoding(torch.zeros(1, 1, height, 9), num_pos_feats=8)
    # y of the first row is 1 / H of the extent, times 2*pi; channel 0 is sin(y / 1)
    assert math.isclose(pos[0, 0, 0, 0].item(), math.sin(1 / (height + 1e-6) * 2 * math.pi), abs_tol=1e-6)
    # channel F is sin(x) of the first column
    assert math.isclose(pos[0, 8, 0, 0].item(), math.sin(1 / (9 + 1e-6) * 2 * math.pi), abs_tol=1e-6)


def test_golden_values_at_one_position():
    # H=3, W=5, F=4, T=10000: dim_t = [1, 1, 100, 100] (10000 ** (2 * 1 / 4) = 100)
    pos = sine_position_encoding(torch.zeros(1, 1, 3, 5), num_pos_feats=4)
    y, x = 2 / 3 * 2 * math.pi, 3 / 5 * 2 * math.pi  # row 1, column 2 (1-based counts 2 and 3)
    expected = [
        math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
        math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100),
    ]
    torch.testing.assert_close(pos[0, :, 1, 2], torch.tensor(expected), atol=1e-5, rtol=0)


def test_last_row_and_column_map_to_the_full_scale():
    pos = sine_position_encoding(torch.zeros(1, 1, 4, 6), num_pos_feats=2)
    # y = x = 2*pi at the far corner: sin ~ 0, cos ~ 1
    torch.testing.assert_close(pos[0, :, -1, -1], torch.tensor([0.0, 1.0, 0.0, 1.0]), atol=1e-5, rtol=0)


def test_y_channels_vary_along_rows_only_and_x_channels_along_columns_only():
    pos = sine_position_encoding(torch.zeros(1, 1, 4, 6), num_pos_feats=6)
    y_part, x_part = pos[0, :6], pos[0, 6:]
    assert torch.equal(y_part, y_part[:, :, :1].expand_as(y_part))
    assert torch.equal(x_part, x_part[:, :1, :].expand_as(x_part))
    assert not torch.equal(y_part[:, 0], y_part[:, 1])
    assert not torch.equal(x_part[:, :, 0], x_part[:, :, 1])


def test_independent_of_batch_entry_and_feature_values():
    features = torch.randn(3, 5, 4, 4, dtype=torch.bfloat16)
    pos = sine_position_encoding(features, num_pos_feats=4)
    assert pos.dtype == torch.float32
    reference = sine_position_encoding(torch.zeros(1, 1, 4, 4), num_pos_feats=4)
    for entry in pos:
        assert torch.equal(entry, reference[0])
