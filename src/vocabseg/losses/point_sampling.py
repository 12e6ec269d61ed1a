"""Point sampling for mask losses (PointRend-style, as in Mask2Former).

Mask losses are evaluated on a few thousand points rather than on every pixel.
Point coordinates are normalised to [0, 1] over the whole (padded) frame,
x first, so a prediction at 1/4 resolution and a target at full resolution are
read at the same physical locations without resizing either.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vocabseg.errors import ConfigError

__all__ = ["mask_uncertainty", "pad_masks", "point_sample", "sample_uncertain_points"]


def point_sample(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly reads `features` at normalised point coordinates.

    Matches detectron2's `point_sample(..., align_corners=False)`: coordinate 0
    is the outer edge of the first pixel and 1 the outer edge of the last, and
    points outside the frame read zeros.

    Args:
        features: Maps of shape [N, C, H, W].
        coords: Points of shape [N, P, 2], (x, y) in [0, 1].

    Returns:
        Sampled values of shape [N, C, P], in the dtype of `features`.
    """
    # grid_sample wants [-1, 1] and a 2-D grid: [N, P, 1, 2]; it also wants the
    # grid in the dtype of the input.
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(features.dtype)
    sampled = F.grid_sample(features, grid, mode="bilinear", align_corners=False)
    return sampled.squeeze(3)  # [N, C, P]


def mask_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of binary mask logits: highest where the logit is near 0.

    Args:
        logits: Mask logits of any shape.

    Returns:
        `-|logits|`, same shape.
    """
    return -logits.abs()


def sample_uncertain_points(
    logits: torch.Tensor,
    uncertainty_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Picks points biased towards uncertain regions, plus uniform ones.

    Same procedure as detectron2's `get_uncertain_point_coords_with_randomness`:
    draw `int(num_points * oversample_ratio)` uniform candidates per map, keep
    the `int(importance_sample_ratio * num_points)` most uncertain of them, and
    fill up to `num_points` with fresh uniform points (appended last).

    Args:
        logits: Coarse logits of shape [N, 1, H, W].
        uncertainty_fn: Maps sampled logits [N, 1, P'] to uncertainties of the
            same shape; larger means more uncertain.
        num_points: Points to return per map (P).
        oversample_ratio: Candidates drawn per returned point; at least 1.
        importance_sample_ratio: Fraction of P taken from the most uncertain
            candidates; in [0, 1].
        generator: Random source; its device must be the device of `logits`.

    Returns:
        Coordinates of shape [N, P, 2], (x, y) in [0, 1], float32.
    """
    if oversample_ratio < 1:
        raise ConfigError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ConfigError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_maps = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    candidates = _uniform_points(num_maps, num_candidates, device=logits.device, generator=generator)
    uncertainty = uncertainty_fn(point_sample(logits, candidates))  # [N, 1, kP]
    top = uncertainty[:, 0, :].topk(num_uncertain, dim=1).indices  # [N, beta*P]
    chosen = candidates.gather(1, top.unsqueeze(-1).expand(-1, -1, 2))  # [N, beta*P, 2]
    num_random = num_points - num_uncertain
    if num_random == 0:
        return chosen
    extra = _uniform_points(num_maps, num_random, device=logits.device, generator=generator)
    return torch.cat([chosen, extra], dim=1)


def pad_masks(masks: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """Zero-pads masks at the bottom and right to `height` x `width`.

    Normalised coordinates refer to the padded frame, so target masks must be
    padded exactly like the image batch the predictions were made on.

    Args:
        masks: Masks of shape [N, H, W], any dtype.
        height: Padded height, at least H.
        width: Padded width, at least W.

    Returns:
        Masks of shape [N, height, width]; `masks` itself when no padding is needed.
    """
    pad_h, pad_w = height - masks.shape[-2], width - masks.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise ConfigError(f"cannot pad masks of size {tuple(masks.shape[-2:])} to {(height, width)}")
    if pad_h == 0 and pad_w == 0:
        return masks
    padded = masks.new_zeros((masks.shape[0], height, width))
    padded[:, : masks.shape[-2], : masks.shape[-1]] = masks
    return padded


def _uniform_points(
    num_maps: int, num_points: int, *, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform random coordinates of shape [num_maps, num_points, 2] in [0, 1)."""
    return torch.rand(num_maps, num_points, 2, device=device, generator=generator)
