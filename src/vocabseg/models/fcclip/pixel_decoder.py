"""MSDeformAttn pixel decoder (Mask2Former).

A deformable-attention encoder runs over the three coarsest backbone levels
(res3..res5 at strides 8/16/32); an FPN lateral connection then adds the finest
level (res2, stride 4) to produce the per-pixel mask features.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.ms_deform_attn import MSDeformAttn
from vocabseg.layers.position_encoding import sine_position_encoding
from vocabseg.precision import fast_inference


class ConvNorm(nn.Module):
    """Conv2d followed by GroupNorm(32) and an optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.norm = nn.GroupNorm(32, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.conv.weight, a=1)  # detectron2's c2_xavier_fill
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention then a ReLU feed-forward block."""

    def __init__(self, *, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes):
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformableEncoder(nn.Module):
    """Stack of deformable encoder layers with a learned embedding per level."""

    def __init__(self, *, d_model: int, d_ffn: int, num_layers: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        nn.init.normal_(self.level_embed)
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(d_model=d_model, d_ffn=d_ffn, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
            for _ in range(num_layers)
        )
        for name, param in self.layers.named_parameters():
            if param.dim() > 1 and "self_attn" not in name:
                nn.init.xavier_uniform_(param)

    def forward(self, srcs: list[torch.Tensor], pos_embeds: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encodes the levels jointly and returns them with their input shapes [B, C, H_l, W_l]."""
        shapes = [(int(src.shape[-2]), int(src.shape[-1])) for src in srcs]
        src_flat = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)  # [B, S, C]
        pos_flat = torch.cat(
            [
                pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                for lvl, pos in enumerate(pos_embeds)
            ],
            1,
        )
        reference_points = _reference_points(shapes, src_flat.shape[0], src_flat.device)
        output = src_flat
        for layer in self.layers:
            output = layer(output, pos_flat, reference_points, shapes)
        batch, channels = output.shape[0], output.shape[2]
        chunks = output.split([h * w for h, w in shapes], dim=1)
        return [c.transpose(1, 2).reshape(batch, channels, h, w) for c, (h, w) in zip(chunks, shapes)]


def _reference_points(shapes: list[tuple[int, int]], batch: int, device: torch.device) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1]: [B, S, L, 2] (x, y).

    Inputs are never padded inside the encoder (valid ratio 1), so every query
    uses the same normalised point on all levels.
    """
    points = []
    for height, width in shapes:
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device),
            torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        points.append(torch.stack((ref_x.reshape(-1) / width, ref_y.reshape(-1) / height), -1))
    reference = torch.cat(points, 0)  # [S, 2]
    return reference[None, :, None, :].expand(batch, -1, len(shapes), -1)


class MSDeformAttnPixelDecoder(nn.Module):
    """Turns backbone features res2..res5 into mask features and three decoder levels."""

    def __init__(
        self,
        *,
        in_channels: dict[str, int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        num_encoder_layers: int = 6,
        encoder_ffn_dim: int = 1024,
        n_heads: int = 8,
        n_points: int = 4,
    ):
        """
        Args:
            in_channels: channels of "res2", "res3", "res4", "res5".
        """
        super().__init__()
        self.encoder_features = ["res5", "res4", "res3"]  # coarse to fine
        self.input_proj = nn.ModuleList(
            ConvNorm(in_channels[f], conv_dim, 1, bias=True, relu=False) for f in self.encoder_features
        )
        for proj in self.input_proj:
            assert isinstance(proj, ConvNorm)
            nn.init.xavier_uniform_(proj.conv.weight, gain=1)
        self.encoder = DeformableEncoder(
            d_model=conv_dim, d_ffn=encoder_ffn_dim, num_layers=num_encoder_layers,
            n_levels=len(self.encoder_features), n_heads=n_heads, n_points=n_points,
        )
        self.conv_dim = conv_dim
        self.lateral_conv = ConvNorm(in_channels["res2"], conv_dim, 1, bias=False, relu=False)
        self.output_conv = ConvNorm(conv_dim, conv_dim, 3, bias=False, relu=True)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)  # type: ignore[arg-type]  # built with bias

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            features: "res2".."res5" maps [B, C_l, H/s, W/s].

        Returns:
            mask_features [B, mask_dim, H/4, W/4] and the multi-scale features for the
            transformer decoder at strides 32, 16, 8: each [B, conv_dim, h, w].
        """
        device = features["res5"].device.type
        # Under autocast (training AMP) float32 throughout, as the official pixel decoder
        # (deformable attention is fragile in half precision). Fast inference (vocabseg.precision)
        # runs projections, convolutions and feed-forward blocks in bf16, while MSDeformAttn keeps
        # sampling locations and weights, and LayerNorm/GroupNorm the residual stream, in float32.
        keep_fp32 = self.training or not fast_inference()
        with torch.autocast(device_type=device, enabled=False) if keep_fp32 else contextlib.nullcontext():
            srcs, pos = [], []
            for proj, name in zip(self.input_proj, self.encoder_features):
                x = features[name].float()
                srcs.append(proj(x))
                pos.append(sine_position_encoding(x, self.conv_dim // 2))
            multi_scale = self.encoder(srcs, pos)
            fine = self.lateral_conv(features["res2"].float())
            fine = fine + F.interpolate(multi_scale[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False)
            fine = self.output_conv(fine)
            return self.mask_features(fine), multi_scale
