"""Large-scale jitter (LSJ) for an image and its panoptic id map, then per-segment targets.

The official COCO panoptic training mapper (Mask2Former's "new baseline", reused by
FC-CLIP) applies, in this order: a horizontal flip with probability 0.5; a resize
that fits the image into a random ``scale x image_size`` square, with ``scale``
uniform in [min_scale, max_scale]; a random crop to ``image_size`` (smaller where
the resized image is smaller); padding to ``image_size`` (image value 128, labels
VOID). Crowd segments get no target; we also drop segments with no pixel left
after the crop (an empty target mask teaches nothing and skews the matching).

Randomness comes only from the ``numpy.random.Generator`` passed in, so a sample
is a pure function of its seed (see ``data.SampleKey``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from vocabseg.data.records import Segment  # the transforms read its id, category and iscrowd

PAD_PIXEL = 128  # raw (0-255) image value of the padding, as detectron2's FixedSizeCrop
VOID_ID = 0  # panoptic id of unlabelled pixels


class LSJParams(NamedTuple):
    """One draw of the jitter, in the order it is applied."""

    flip: bool
    resized: tuple[int, int]  # (H, W) after the resize
    offset: tuple[int, int]  # (top, left) of the crop in the resized image
    crop: tuple[int, int]  # (H, W) of the crop, <= image_size
    padded: tuple[int, int]  # (H, W) after padding; == crop when padding is off


def sample_lsj(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    image_size: int,
    min_scale: float,
    max_scale: float,
    flip: bool,
    pad: bool = True,
) -> LSJParams:
    """Draws flip, scale and crop offset for an image of ``height x width``."""
    flipped = bool(flip and rng.random() < 0.5)
    scale = rng.uniform(min_scale, max_scale)
    # Fit the image into the scaled target square, keeping its aspect ratio.
    ratio = min(image_size * scale / height, image_size * scale / width)
    resized = (max(1, round(height * ratio)), max(1, round(width * ratio)))
    crop = (min(resized[0], image_size), min(resized[1], image_size))
    # detectron2 draws one uniform number for both axes; so do we.
    fraction = rng.uniform(0.0, 1.0)
    offset = (round((resized[0] - crop[0]) * fraction), round((resized[1] - crop[1]) * fraction))
    padded = (image_size, image_size) if pad else crop
    return LSJParams(flipped, resized, offset, crop, padded)


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an [H, W] integer map, sampling pixel centres (as PIL)."""
    height, width = labels.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
    return labels[rows[:, None], cols[None, :]]


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, 3] with PIL bilinear (what detectron2 uses for uint8 images)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def apply_lsj(image: np.ndarray, ids: np.ndarray, params: LSJParams) -> tuple[np.ndarray, np.ndarray]:
    """Applies one jitter draw to an [H, W, 3] uint8 image and its [H, W] id map."""
    if params.flip:
        image, ids = image[:, ::-1], ids[:, ::-1]
    image = resize_bilinear(np.ascontiguousarray(image), params.resized)
    ids = resize_nearest(ids, params.resized)
    (top, left), (crop_h, crop_w) = params.offset, params.crop
    image = image[top : top + crop_h, left : left + crop_w]
    ids = ids[top : top + crop_h, left : left + crop_w]
    out_image = np.full((*params.padded, 3), PAD_PIXEL, dtype=np.uint8)
    out_ids = np.full(params.padded, VOID_ID, dtype=np.int64)
    out_image[:crop_h, :crop_w], out_ids[:crop_h, :crop_w] = image, ids  # pad bottom and right
    return out_image, out_ids


def panoptic_targets(ids: np.ndarray, segments: Sequence[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment targets of an id map.

    Crowd segments and segments without a pixel in ``ids`` are dropped.

    Returns:
        labels int64 [N] and masks bool [N, H, W].
    """
    kept = [s for s in segments if not s.iscrowd]
    seg_ids = np.asarray([s.id for s in kept], dtype=np.int64)
    masks = ids[None] == seg_ids[:, None, None]  # [N, H, W]
    present = masks.any(axis=(1, 2))
    labels = np.asarray([s.category for s in kept], dtype=np.int64)[present]
    return torch.from_numpy(labels), torch.from_numpy(np.ascontiguousarray(masks[present]))


def lsj_targets(
    image: np.ndarray,
    ids: np.ndarray,
    segments: Sequence[Segment],
    *,
    rng: np.random.Generator,
    image_size: int,
    min_scale: float,
    max_scale: float,
    flip: bool,
    pad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jitters one example and builds its targets.

    Args:
        image: [H, W, 3] uint8 RGB.
        ids: [H, W] int64 segment ids, ``VOID_ID`` where unlabelled.
        segments: the segments of ``ids``.

    Returns:
        image uint8 [3, h, w], labels int64 [N], masks bool [N, h, w].
    """
    if image.shape[:2] != ids.shape:
        raise ValueError(f"image is {image.shape[:2]} but its labels are {ids.shape}")
    params = sample_lsj(rng, height=ids.shape[0], width=ids.shape[1], image_size=image_size,
                        min_scale=min_scale, max_scale=max_scale, flip=flip, pad=pad)
    image, ids = apply_lsj(image, ids, params)
    labels, masks = panoptic_targets(ids, segments)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), labels, masks
