"""OVSeg's CLIP inputs: one masked, box-cropped, CLIP-normalised 224x224 crop per mask proposal.

For every query whose thresholded mask is non-empty: crop the image to the mask's tight
bounding box, paint the pixels outside the mask with CLIP's mean colour, normalise with CLIP's
mean/std (on the 0-255 scale), and resize the crop (bicubic, aspect ratio not kept) and its
mask (nearest) to 224x224. The crop mask later tells the mask-prompted ViT which patches are
background (see :mod:`vocabseg.clip.vit`).
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

REGION_SIZE = 224  # CLIP ViT input size


class MaskRegions(NamedTuple):
    """CLIP inputs for the valid queries, in query order."""

    regions: torch.Tensor  # [N, 3, S, S] float32, CLIP-normalised
    masks: torch.Tensor  # [N, 1, S, S] float32 in {0, 1}
    valid: torch.Tensor  # [Q] bool: query q has a non-empty thresholded mask (N = valid.sum())


def mask_boxes(bin_masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks, exclusive max (detectron2's ``BitMasks.get_bounding_boxes``).

    Args:
        bin_masks: [Q, H, W] bool.

    Returns:
        [Q, 4] float32 boxes (x0, y0, x1 + 1, y1 + 1); all zero for an empty mask.
    """
    cols = bin_masks.any(dim=1)  # [Q, W]
    rows = bin_masks.any(dim=2)  # [Q, H]
    x0, x1 = _first_last(cols)
    y0, y1 = _first_last(rows)
    boxes = torch.stack([x0, y0, x1 + 1, y1 + 1], dim=1).float()  # [Q, 4]
    nonempty = (cols.any(dim=1) & rows.any(dim=1)).unsqueeze(1)
    return torch.where(nonempty, boxes, torch.zeros_like(boxes))


def expand_boxes(boxes: torch.Tensor, *, ratio: float, height: int, width: int) -> torch.Tensor:
    """Scales boxes about their centres, truncates to integers and clips them to the image.

    Args:
        boxes: [N, 4] float32 (x0, y0, x1, y1), exclusive max.
        ratio: scale factor of width and height (OVSeg uses 1.0: the tight box).
        height: image height.
        width: image width.

    Returns:
        [N, 4] int64 (left, top, right, bottom) slice bounds.
    """
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # float32 as the reference arithmetic
    half = 0.5 * ((boxes[:, 2:] - boxes[:, :2]) * ratio)
    expanded = torch.cat([centre - half, centre + half], dim=1).long()  # int(): truncation toward zero
    low = expanded[:, :2].clamp(min=0)
    high = torch.minimum(expanded[:, 2:], torch.tensor([width, height], device=boxes.device))
    return torch.cat([low, high], dim=1)


def extract_regions(
    image: torch.Tensor,
    mask_probs: torch.Tensor,
    *,
    mask_thr: float,
    expand_ratio: float = 1.0,
    size: int = REGION_SIZE,
    chunk_size: int = 16,
) -> MaskRegions:
    """Masked CLIP crops of every query whose mask ``> mask_thr`` is non-empty.

    Args:
        image: [3, H, W] resized, unpadded RGB image, 0-255 (uint8 or float).
        mask_probs: [Q, H, W] mask probabilities at the image's size.
        mask_thr: binarisation threshold (strict ``>``).
        expand_ratio: box scale about its centre before cropping (1.0 = tight box).
        size: output side.
        chunk_size: crops of one shape resized together (bounds memory).

    Returns:
        The crops and crop masks of the N valid queries (N may be 0) and the [Q] valid flags.
    """
    bin_masks = mask_probs > mask_thr  # [Q, H, W]
    valid = bin_masks.flatten(1).any(dim=1)  # [Q]
    bin_masks = bin_masks[valid]  # [N, H, W]
    height, width = image.shape[-2:]
    boxes = expand_boxes(mask_boxes(bin_masks), ratio=expand_ratio, height=height, width=width)
    regions = image.new_empty((len(bin_masks), 3, size, size), dtype=torch.float32)
    masks = image.new_empty((len(bin_masks), 1, size, size), dtype=torch.float32)
    for indices in _same_shape_chunks(boxes.tolist(), chunk_size):  # note: one device sync
        index = torch.tensor(indices, device=image.device)
        crops, crop_masks = _masked_crops(image, bin_masks[index], boxes[index].tolist())
        regions[index] = F.interpolate(_clip_normalise(crops), size=(size, size), mode="bicubic", align_corners=False)
        masks[index] = F.interpolate(crop_masks, size=(size, size), mode="nearest")
    return MaskRegions(regions, masks, valid)


def _first_last(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the first and last True along dim 1 of [Q, L] (0 where none)."""
    length = flags.shape[1]
    first = flags.int().argmax(dim=1)
    last = length - 1 - flags.flip(1).int().argmax(dim=1)
    return first, last


def _same_shape_chunks(boxes: list[list[int]], chunk_size: int) -> list[list[int]]:
    """Indices of boxes grouped by crop shape, at most ``chunk_size`` per group."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (left, top, right, bottom) in enumerate(boxes):
        groups[(bottom - top, right - left)].append(i)
    return [ids[s : s + chunk_size] for ids in groups.values() for s in range(0, len(ids), chunk_size)]


def _masked_crops(
    image: torch.Tensor, bin_masks: torch.Tensor, boxes: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-shape crops [n, 3, h, w], outside the mask painted in CLIP's mean colour, and their masks [n, 1, h, w].

    ``bin_masks`` [n, H, W] and ``boxes`` (left, top, right, bottom) are those of the n crops.
    """
    crops = torch.stack([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]).float()
    crop_masks = torch.stack([m[None, y0:y1, x0:x1] for m, (x0, y0, x1, y1) in zip(bin_masks, boxes)]).float()
    fill = torch.tensor([255.0 * c for c in OPENAI_DATASET_MEAN], device=image.device).view(1, 3, 1, 1)
    return crops * crop_masks + (1 - crop_masks) * fill, crop_masks


def _clip_normalise(crops: torch.Tensor) -> torch.Tensor:
    # float32(mean) * 255 in float32, as the reference buffers (the fill above rounds 255 * mean once,
    # in double: the two differ in the last bit, so painted pixels normalise to ~1e-7, not exactly 0)
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=crops.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(OPENAI_DATASET_STD, device=crops.device).view(1, 3, 1, 1) * 255.0
    return (crops - mean) / std
