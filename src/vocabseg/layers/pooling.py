"""Pooling features inside predicted masks (mask pooling, CLIP attention pooling)."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def mask_pool(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Averages features inside each predicted mask (logit > 0).

    Args:
        features: [B, C, H, W]
        mask_logits: [B, Q, h, w]; resized bilinearly to (H, W) when needed.

    Returns:
        [B, Q, C]; an empty mask pools to zeros.
    """
    if mask_logits.shape[-2:] != features.shape[-2:]:
        mask_logits = F.interpolate(mask_logits, size=features.shape[-2:], mode="bilinear", align_corners=False)
    with torch.no_grad():  # binary masks: no gradient flows into the mask branch from pooling
        masks = (mask_logits.detach() > 0).to(features.dtype)
        denominator = masks.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, masks / denominator)


def masked_attention_pool(attnpool: Any, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """CLIP ResNet attention pooling restricted to each mask.

    The class-token query (spatial mean + its positional embedding) attends only to
    the positions inside the mask; the positional embedding is resized bilinearly
    to the feature map.

    Args:
        attnpool: open_clip ``AttentionPool2d`` (q/k/v/c projections, positional_embedding [1 + s*s, C]).
        dense: [B, C, h, w]
        mask_logits: [B, Q, h, w]

    Returns:
        [B, Q, D]
    """
    batch, channels, height, width = dense.shape
    num_masks, heads = mask_logits.shape[1], attnpool.num_heads
    pos = attnpool.positional_embedding.to(dense.dtype)  # [1 + s*s, C]
    grid = int(math.sqrt(pos.shape[0] - 1))
    spatial_pos = pos[1:].T.reshape(1, channels, grid, grid)
    spatial_pos = F.interpolate(spatial_pos, size=(height, width), mode="bilinear", align_corners=False)
    tokens = dense.flatten(2).transpose(1, 2)  # [B, hw, C]
    key_value = tokens + spatial_pos.flatten(2).transpose(1, 2)
    query = (tokens.mean(1, keepdim=True) + pos[:1]).expand(batch, num_masks, channels)  # [B, Q, C]

    blocked = mask_logits.flatten(2) <= 0  # [B, Q, hw]: outside the mask
    # An empty mask leaves a row with nothing to attend to: unblock it so softmax stays
    # finite, then zero its output below (the reference gives c_proj(0) there under current
    # PyTorch). The ensemble ignores the out-of-vocabulary score of empty masks anyway.
    empty = blocked.all(-1, keepdim=True)  # [B, Q, 1]
    blocked = blocked & ~empty
    head_dim = channels // heads
    split = lambda t: t.view(batch, -1, heads, head_dim).transpose(1, 2)  # [B, heads, L, d]
    q, k, v = split(attnpool.q_proj(query)), split(attnpool.k_proj(key_value)), split(attnpool.v_proj(key_value))
    attn_bias = torch.zeros(blocked.shape, dtype=q.dtype, device=q.device).masked_fill(blocked, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias[:, None])  # [B, heads, Q, d]
    out = out.transpose(1, 2).reshape(batch, num_masks, channels).masked_fill(empty, 0.0)
    return attnpool.c_proj(out)
