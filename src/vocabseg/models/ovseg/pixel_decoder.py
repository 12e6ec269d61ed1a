"""MaskFormer's FPN pixel decoder: backbone levels -> per-pixel mask features at stride 4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.conv import Conv2dNorm, c2_xavier_fill

LEVELS = ("res2", "res3", "res4", "res5")  # fine to coarse


class FPNPixelDecoder(nn.Module):
    """Top-down FPN over res5..res2 (GroupNorm, no lateral on res5), then a 3x3 mask-feature conv.

    Module names follow the official checkpoints: ``adapter_i``/``layer_i`` for res2..res4
    (i = 1..3, lateral 1x1 and output 3x3) and ``layer_4`` for res5.
    """

    def __init__(self, *, in_channels: dict[str, int], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        for i, level in enumerate(LEVELS[:-1], start=1):
            setattr(self, f"adapter_{i}", _conv_gn(in_channels[level], conv_dim, 1, relu=False))
            setattr(self, f"layer_{i}", _conv_gn(conv_dim, conv_dim, 3, relu=True))
        self.layer_4 = _conv_gn(in_channels["res5"], conv_dim, 3, relu=True)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        c2_xavier_fill(self.mask_features)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """features: {"res2": [B, C2, H/4, W/4], ..., "res5": [B, C5, H/32, W/32]} -> [B, mask_dim, H/4, W/4]."""
        y = self.layer_4(features["res5"])
        for i in (3, 2, 1):  # res4, res3, res2
            lateral = getattr(self, f"adapter_{i}")(features[LEVELS[i - 1]])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{i}")(y)
        return self.mask_features(y)


def _conv_gn(in_channels: int, out_channels: int, kernel_size: int, *, relu: bool) -> Conv2dNorm:
    # With a norm the official convs have no bias.
    conv = Conv2dNorm(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False,
                      norm=nn.GroupNorm(32, out_channels), activation=F.relu if relu else None)
    c2_xavier_fill(conv)
    return conv
