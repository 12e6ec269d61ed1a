"""mmsegmentation's training augmentation for an image and its semantic label map.

The pipeline of the official mmseg-based recipes (Cascade-CLIP's ``train_pipeline``), in order:

1. ``Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0))``: a ratio r uniform in the range;
   the image is rescaled, aspect kept, to fit in ``(2048 r) x (512 r)`` (so its short side is
   usually ``512 r``); cv2 bilinear for the image, nearest for the labels; mmcv rounding.
2. ``RandomCrop(512, cat_max_ratio=0.75)``: a random window (smaller where the image is);
   redrawn up to 10 times while one class covers >= 75 % of its labelled pixels.
3. ``RandomFlip(0.5)``: horizontal.
4. ``PhotoMetricDistortion()``: brightness, contrast (first or last), saturation and hue in
   HSV, each with probability 1/2, on uint8 with clipping.
5. Normalisation and padding to the crop size (image 0 after normalisation, labels ignored)
   happen in the batch collation (:class:`vocabseg.train.cascade_clip.data.DenseCollate`).

Randomness comes only from the ``numpy.random.Generator`` passed in; the draws are those of
mmseg (same distributions), not its global-state stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vocabseg.preprocess import shortest_edge_size


@dataclass(frozen=True)
class MMSegAugment:
    """Parameters of the mmseg train pipeline (defaults: the official Cascade-CLIP configs)."""

    crop_size: int = 512
    scale: tuple[int, int] = (2048, 512)  # Resize img_scale (long, short) before the ratio
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75  # 1.0 disables the redraws
    flip_prob: float = 0.5
    photometric: bool = True
    ignore_label: int = -1  # unlabelled pixels of the label maps (mmseg: 255; -1 leaves room for any class index)
    # detectron2's ResizeShortestEdge(sample_style="choice") instead of the ratio (MaskFormer-based
    # recipes such as OVSeg): a short side drawn from these, the long side capped at scale[0]
    short_side_choices: tuple[int, ...] = ()


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``imrescale``: the largest size with the aspect kept inside ``scale`` (long, short edge)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def random_resize(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  aug: MMSegAugment) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: [H, W, 3] uint8 and [H, W] labels rescaled by a random ratio of ``aug.scale``."""
    if aug.short_side_choices:
        short = int(aug.short_side_choices[int(rng.integers(len(aug.short_side_choices)))])
        new_h, new_w = shortest_edge_size(image.shape[0], image.shape[1], short, max(aug.scale))
    else:
        low, high = aug.ratio_range
        ratio = rng.random() * (high - low) + low
        target = (int(aug.scale[0] * ratio), int(aug.scale[1] * ratio))
        new_h, new_w = rescale_size(image.shape[0], image.shape[1], target)
    image = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    # OpenCV has no int64 maps; int32 holds any class index
    labels = cv2.resize(labels.astype(np.int32), (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    return image, labels.astype(np.int64)


def crop_window(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A uniformly placed ``size`` window (clipped to the image): (top, bottom, left, right)."""
    top = int(rng.integers(0, max(height - size, 0) + 1))
    left = int(rng.integers(0, max(width - size, 0) + 1))
    return top, top + size, left, left + size


def random_crop(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                aug: MMSegAugment) -> tuple[np.ndarray, np.ndarray]:
    """Step 2, with mmseg's category balance: up to 10 redraws while one class dominates."""
    window = crop_window(labels.shape[0], labels.shape[1], aug.crop_size, rng)
    if aug.cat_max_ratio < 1.0:
        for _ in range(10):
            top, bottom, left, right = window
            classes, counts = np.unique(labels[top:bottom, left:right], return_counts=True)
            counts = counts[classes != aug.ignore_label]
            if len(counts) > 1 and counts.max() / counts.sum() < aug.cat_max_ratio:
                break
            window = crop_window(labels.shape[0], labels.shape[1], aug.crop_size, rng)
    top, bottom, left, right = window
    return image[top:bottom, left:right], labels[top:bottom, left:right]


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``values * alpha + beta`` clipped to uint8 (truncating, as mmseg)."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Step 4 on an [H, W, 3] uint8 RGB image, mmseg's defaults (brightness 32, contrast and
    saturation 0.5-1.5, hue 18 of OpenCV's 180)."""
    if rng.integers(2):
        image = _convert(image, beta=rng.uniform(-32, 32))
    contrast_last = rng.integers(2) == 0  # mmseg's "mode 0"
    if not contrast_last and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(0.5, 1.5))
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=rng.uniform(0.5, 1.5))
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + int(rng.integers(-18, 18))) % 180
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if contrast_last and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(0.5, 1.5))
    return image


def mmseg_augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  aug: MMSegAugment) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4: an [h, w, 3] uint8 RGB crop and its [h, w] labels, h and w <= ``aug.crop_size``.

    Args:
        image: [H, W, 3] uint8 RGB.
        labels: [H, W] class indices, ``aug.ignore_label`` where unlabelled.
    """
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image is {image.shape[:2]} but its labels are {labels.shape}")
    image, labels = random_resize(image, labels, rng, aug)
    image, labels = random_crop(image, labels, rng, aug)
    if rng.random() < aug.flip_prob:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image, labels = np.ascontiguousarray(image), np.ascontiguousarray(labels)
    if aug.photometric:
        image = photometric_distortion(image, rng)
    return image, labels
