"""Tests for vocabseg.preprocess (detectron2's test-time resize, normalise and pad)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocabseg.preprocess import crop_and_resize, normalize_and_pad, resize_image, shortest_edge_size

MEAN, STD = (100.0, 110.0, 120.0), (50.0, 55.0, 60.0)


@pytest.mark.parametrize(
    "height, width, min_size, max_size, expected",
    [
        (480, 640, 800, 1333, (800, 1067)),  # 640 * 800 / 480 = 1066.67
        (640, 480, 800, 1333, (1067, 800)),  # portrait: same, transposed
        (500, 500, 800, 1333, (800, 800)),
        (100, 1000, 800, 1333, (133, 1333)),  # 8000 wide would exceed the cap: shrink both sides
        (1000, 100, 800, 1333, (1333, 133)),
        (800, 1067, 800, 1333, (800, 1067)),  # already at size
    ],
)
def test_shortest_edge_size(height, width, min_size, max_size, expected):
    assert shortest_edge_size(height, width, min_size, max_size) == expected


@pytest.mark.parametrize(
    "height, width, min_size, expected",
    [(2, 3, 3, (3, 5)), (4, 5, 2, (2, 3))],  # 4.5 -> 5 and 2.5 -> 3: int(x + 0.5), not round-half-even
)
def test_exact_half_rounds_up(height, width, min_size, expected):
    assert shortest_edge_size(height, width, min_size, 100) == expected


def test_resize_image_returns_uint8_of_the_computed_size():
    image = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    resized = resize_image(image, min_size=3, max_size=100)
    assert resized.dtype == np.uint8 and resized.shape == (3, 4, 3)
    flat = np.full((6, 8, 3), 77, dtype=np.uint8)
    assert (resize_image(flat, min_size=12, max_size=100) == 77).all()  # bilinear keeps a constant


def test_resize_image_is_identity_at_target_size():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    assert resize_image(image, min_size=4, max_size=100) is image


def test_normalize_and_pad():
    first = torch.tensor(MEAN).view(3, 1, 1).expand(3, 5, 7).clone()
    first[:, 0, 0] = torch.tensor(MEAN) + torch.tensor(STD)  # one pixel one std above the mean
    second = torch.full((3, 33, 2), 255, dtype=torch.uint8)
    batch, sizes = normalize_and_pad([first, second], MEAN, STD, size_divisibility=32)
    assert batch.shape == (2, 3, 64, 32) and batch.dtype == torch.float32  # max (33, 7) rounded up to 32
    assert sizes == [(5, 7), (33, 2)]
    expected_first = torch.zeros(3, 64, 32)
    expected_first[:, 0, 0] = 1.0
    torch.testing.assert_close(batch[0], expected_first)  # the mean colour and the padding are 0
    expected_second = (255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(batch[1, :, :33, :2], expected_second.view(3, 1, 1).expand(3, 33, 2))
    assert torch.count_nonzero(batch[1, :, 33:]) == 0 and torch.count_nonzero(batch[1, :, :, 2:]) == 0


def test_normalize_and_pad_without_divisibility_pads_to_the_largest_image():
    batch, _ = normalize_and_pad([torch.zeros(3, 5, 7), torch.zeros(3, 6, 2)], MEAN, STD, size_divisibility=0)
    assert batch.shape == (2, 3, 6, 7)


def test_crop_and_resize_removes_the_padding():
    maps = torch.full((2, 8, 8), 100.0)  # padding holds garbage
    maps[:, :5, :6] = torch.arange(30.0).view(5, 6)
    assert torch.equal(crop_and_resize(maps, (5, 6), (5, 6)), maps[:, :5, :6])
    upsampled = crop_and_resize(maps, (5, 6), (10, 12))
    assert upsampled.shape == (2, 10, 12)
    assert upsampled.max() <= 29.0  # nothing from the padding bleeds in at the borders
