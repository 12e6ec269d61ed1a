"""Test-time input preparation exactly as detectron2 does it for the official models."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def shortest_edge_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output (H, W) of detectron2's ResizeShortestEdge for one image."""
    scale = min_size / min(height, width)
    new_h, new_w = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    # detectron2 rounds with int(x + 0.5); a side rounding to 0 (a sliver image) would crash it
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def mmseg_short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output (H, W) of mmseg's test ``Resize(keep_ratio=True, min_size=short_side)``: the short side
    becomes ``short_side`` (small images are upsampled), the long side follows with mmcv's rounding."""
    target = (short_side * height / width, short_side) if height > width else (short_side, short_side * width / height)
    factor = min(max(target) / max(height, width), min(target) / min(height, width))  # mmcv.rescale_size
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize_image(image: np.ndarray, min_size: int, max_size: int, backend: str = "pil") -> np.ndarray:
    """Resizes an HxWx3 uint8 RGB image for a model's test input.

    Backends: ``"pil"`` is detectron2's (shortest edge ``min_size``, longest capped at ``max_size``,
    PIL bilinear on uint8); ``"cv2"`` is mmseg's (shortest edge ``min_size``, no cap, OpenCV
    INTER_LINEAR on uint8 with its fixed-point rounding: bit-exact with the mmseg models).
    """
    height, width = image.shape[:2]
    if backend == "cv2":
        new_h, new_w = mmseg_short_side_size(height, width, min_size)
    else:
        new_h, new_w = shortest_edge_size(height, width, min_size, max_size)
    if (new_h, new_w) == (height, width):
        return image
    if backend == "cv2":
        import cv2  # deferred: only the mmseg-style families need OpenCV

        return cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def normalize_and_pad(
    images: list[torch.Tensor], pixel_mean, pixel_std, size_divisibility: int
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Normalises [3, H, W] images (0-255) and zero-pads them into one batch.

    Padding is applied after normalisation (pad value 0 = the mean colour), to the
    largest size in the batch rounded up to ``size_divisibility``.

    Returns:
        batch [B, 3, H_pad, W_pad] float32 and the (H, W) of each image before padding.
    """
    device = images[0].device
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32, device=device).view(-1, 1, 1)
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    max_h, max_w = (max(s[i] for s in sizes) for i in (0, 1))
    div = max(size_divisibility, 1)
    pad_h, pad_w = -(-max_h // div) * div, -(-max_w // div) * div
    batch = torch.zeros((len(images), 3, pad_h, pad_w), dtype=torch.float32, device=device)
    for i, img in enumerate(images):
        batch[i, :, : img.shape[-2], : img.shape[-1]] = (img.float() - mean) / std
    return batch, sizes


def crop_and_resize(maps: torch.Tensor, image_size: tuple[int, int], output_size: tuple[int, int]) -> torch.Tensor:
    """Removes padding from [C, H_pad, W_pad] maps and resizes them bilinearly to ``output_size``."""
    maps = maps[:, : image_size[0], : image_size[1]]
    if tuple(maps.shape[-2:]) == tuple(output_size):  # a same-size bilinear resize returns its input exactly
        return maps
    return F.interpolate(maps[None], size=output_size, mode="bilinear", align_corners=False)[0]
