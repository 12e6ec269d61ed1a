"""Sine positional encoding of a 2-D feature map (DETR style, normalised)."""
from __future__ import annotations

import math

import torch


def sine_position_encoding(
    features: torch.Tensor, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi
) -> torch.Tensor:
    """Positional encoding of a feature map of shape [B, C, H, W].

    Coordinates are the 1-based cumulative pixel counts divided by the extent (so the
    last row/column maps to ``scale``); the first ``num_pos_feats`` channels encode y,
    the next ``num_pos_feats`` encode x, alternating sin and cos.

    Returns:
        [B, 2 * num_pos_feats, H, W] float32
    """
    batch, _, height, width = features.shape
    device, eps = features.device, 1e-6
    y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(1, height, 1)
    x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, 1, width)
    y_embed = (y_embed / (height + eps) * scale).expand(batch, height, width)
    x_embed = (x_embed / (width + eps) * scale).expand(batch, height, width)

    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = _interleave_sin_cos(x_embed[..., None] / dim_t)
    pos_y = _interleave_sin_cos(y_embed[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    # [B, H, W, F] -> sin of even, cos of odd feature indices, interleaved back to F
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=4).flatten(3)
