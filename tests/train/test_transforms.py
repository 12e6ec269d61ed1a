"""LSJ keeps image and targets aligned, flips both, and drops what the crop removes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from vocabseg.data.records import Segment
from vocabseg.train.transforms import (
    PAD_PIXEL,
    LSJParams,
    apply_lsj,
    lsj_targets,
    panoptic_targets,
    resize_nearest,
    sample_lsj,
)

# Segment id -> (class, colour). Id 5 is a crowd region.
COLOURS = {1: (0, (250, 0, 0)), 2: (1, (0, 250, 0)), 3: (2, (0, 0, 250)), 4: (3, (250, 250, 0)), 5: (0, (0, 250, 250))}


def colour_coded_example(height: int = 48, width: int = 80) -> tuple[np.ndarray, np.ndarray, list[Segment]]:
    """Four blocks plus a crowd block; each segment's pixels have the segment's colour."""
    ids = np.zeros((height, width), dtype=np.int64)  # VOID border
    ids[2:24, 2:40], ids[2:24, 40:78], ids[24:46, 2:40], ids[24:46, 40:60], ids[24:46, 60:78] = 1, 2, 3, 4, 5
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    for seg_id, (_, colour) in COLOURS.items():
        image[ids == seg_id] = colour
    segments = [Segment(i, cls, is_thing=True, iscrowd=i == 5, area=int((ids == i).sum()))
                for i, (cls, _) in COLOURS.items()]
    return image, ids, segments


@pytest.mark.parametrize("seed", range(6))
def test_masks_stay_on_their_colour(seed):
    image, ids, segments = colour_coded_example()
    rng = np.random.default_rng(seed)
    out, labels, masks = lsj_targets(image, ids, segments, rng=rng, image_size=64, min_scale=0.5, max_scale=2.0,
                                     flip=True)
    assert out.shape == (3, 64, 64) and masks.shape[1:] == (64, 64)
    assert not (masks.sum(0) > 1).any(), "segments overlap"
    class_colour = {cls: colour for seg_id, (cls, colour) in COLOURS.items() if seg_id != 5}
    checked = 0
    for label, mask in zip(labels.tolist(), masks.numpy()):
        inner = binary_erosion(mask, iterations=3)  # bilinear blends colours near borders
        pixels = out.numpy().transpose(1, 2, 0)[inner]  # [P, 3]
        assert np.abs(pixels.astype(int) - class_colour[label]).max(initial=0) <= 2
        checked += len(pixels)
    assert checked > 0


def test_crowd_and_void_get_no_target():
    image, ids, segments = colour_coded_example()
    labels, masks = panoptic_targets(ids, segments)
    assert labels.tolist() == [0, 1, 2, 3]  # the crowd segment (class 0 too) is dropped
    assert not masks.any(0).numpy()[ids == 5].any() and not masks.any(0).numpy()[ids == 0].any()
    assert masks.dtype.is_floating_point is False and str(masks.dtype) == "torch.bool"


def test_flip_mirrors_image_and_masks():
    image, ids, segments = colour_coded_example()
    size = ids.shape
    keep = LSJParams(flip=False, resized=size, offset=(0, 0), crop=size, padded=size)
    flip = keep._replace(flip=True)
    image_a, ids_a = apply_lsj(image, ids, keep)
    image_b, ids_b = apply_lsj(image, ids, flip)
    np.testing.assert_array_equal(image_b, image_a[:, ::-1])
    np.testing.assert_array_equal(ids_b, ids_a[:, ::-1])
    _, masks = panoptic_targets(ids_b, segments)
    assert masks[0, 10, -10] and not masks[0, 10, 10]  # segment 1 was on the left, now on the right


def test_flip_happens_half_the_time():
    flips = [sample_lsj(np.random.default_rng(s), height=40, width=60, image_size=64, min_scale=0.1, max_scale=2.0,
                        flip=True).flip for s in range(400)]
    assert 0.4 < np.mean(flips) < 0.6


def test_segments_cropped_away_are_dropped():
    image, ids, segments = colour_coded_example()
    # Double the size and keep rows 0-47, columns 48-111: only segments 1 and 2 (top) remain.
    params = LSJParams(flip=False, resized=(96, 160), offset=(0, 48), crop=(48, 64), padded=(64, 64))
    out_image, out_ids = apply_lsj(image, ids, params)
    labels, masks = panoptic_targets(out_ids, segments)
    assert labels.tolist() == [0, 1]
    assert masks.shape == (2, 64, 64)
    assert (out_image[48:] == PAD_PIXEL).all() and (out_ids[48:] == 0).all()  # padding: grey image, VOID labels


def test_jitter_respects_the_crop_and_the_scale_range():
    for seed in range(50):
        p = sample_lsj(np.random.default_rng(seed), height=480, width=640, image_size=1024,
                       min_scale=0.1, max_scale=2.0, flip=True)
        assert max(p.resized) <= round(2.0 * 1024) and max(p.resized) >= round(0.1 * 1024) - 1
        assert p.crop == (min(p.resized[0], 1024), min(p.resized[1], 1024)) and p.padded == (1024, 1024)
        assert 0 <= p.offset[0] <= p.resized[0] - p.crop[0] and 0 <= p.offset[1] <= p.resized[1] - p.crop[1]


def test_nearest_resize_keeps_label_values():
    labels = np.arange(12, dtype=np.int64).reshape(3, 4) * 1000
    up = resize_nearest(labels, (6, 8))
    np.testing.assert_array_equal(up, np.repeat(np.repeat(labels, 2, 0), 2, 1))
    assert set(np.unique(resize_nearest(labels, (2, 3)))) <= set(labels.ravel())
