"""Cascade-CLIP's cascaded vision-language decoders: text queries read masks off pixel features.

Three independent decoders each align one group of ViT levels with the text: the learned
weighted sum of levels 5-7, of levels 8-10, and the final feature. A decoder's queries are one
per class (the text embedding, alone and modulated by the image's global embedding); each of
its layers cross-attends from the queries to the pixels, and the layer's head-averaged
*pre-softmax* attention logits are that layer's class masks. The image's mask logits are the
sum of the three decoders' last-layer masks. The decoder layers have no self-attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.int8_linear import int8_linear
from vocabseg.precision import fast_int8


def pixel_linear(layer: nn.Linear, pixels: torch.Tensor) -> torch.Tensor:
    """``layer(pixels)`` on every pixel [B, P, D]; in fast mode on x86 an int8 linear (the decoders' big products:
    the layers on the few queries stay float)."""
    if fast_int8():
        return int8_linear(layer, pixels)
    return layer(pixels)


class CrossAttention(nn.Module):
    """Multi-head attention from queries to pixels that also returns its head-averaged logits."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [B, K, D], pixels [B, P, D] -> (output [B, K, D], logits [B, K, P] averaged over heads)."""
        q = self._split(self.q(queries))
        k, v = (self._split(pixel_linear(layer, pixels)) for layer in (self.k, self.v))
        logits = (q @ k.transpose(-2, -1)) * self.scale  # [B, heads, K, P]
        weights = self.attn_drop(logits.softmax(dim=-1))
        out = (weights @ v).transpose(1, 2).flatten(2)  # [B, K, D]
        return self.proj(out), logits.sum(dim=1) / self.heads

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        return x.reshape(batch, tokens, self.heads, dim // self.heads).permute(0, 2, 1, 3)  # [B, heads, N, d]


class DecoderLayer(nn.Module):
    """Post-norm layer: cross-attention to the pixels, then a ReLU feed-forward block."""

    def __init__(self, *, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.cross_attn = CrossAttention(dim, heads, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.attn_dropout, self.ffn_dropout, self.out_dropout = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [B, K, D], pixels [B, P, D] -> (queries [B, K, D], mask logits [B, K, P])."""
        attended, logits = self.cross_attn(queries, pixels)
        queries = self.attn_norm(queries + self.attn_dropout(attended))
        hidden = self.linear2(self.ffn_dropout(F.relu(self.linear1(queries))))
        return self.ffn_norm(queries + self.out_dropout(hidden)), logits


class StageDecoder(nn.Module):
    """One of the cascaded decoders: a few layers, each giving masks; the next layer refines the queries."""

    def __init__(self, *, layers: int, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim=dim, heads=heads, ffn_dim=ffn_dim, dropout=dropout)
                                    for _ in range(layers))

    def forward(self, queries: torch.Tensor, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Mask logits [B, K, P] of every layer."""
        masks = []
        for layer in self.layers:
            queries, logits = layer(queries, pixels)
            masks.append(logits)
        return masks


class CascadeDecoder(nn.Module):
    """Text queries + ViT levels -> per-class mask logits of each stage."""

    def __init__(self, *, dim: int, stage_levels: tuple[tuple[int, ...], ...], fusion_init: tuple[float, ...],
                 layers: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.stage_levels = stage_levels
        stages = len(stage_levels) + 1  # the fused groups, then the final feature alone
        # unnormalised learned weights of the levels fused by each group
        self.fusion_weights = nn.ParameterList(nn.Parameter(torch.tensor(fusion_init[-len(levels):]))
                                               for levels in stage_levels)
        self.query_projs = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(stages))
        self.stages = nn.ModuleList(StageDecoder(layers=layers, dim=dim, heads=heads, ffn_dim=ffn_dim,
                                                 dropout=dropout) for _ in range(stages))

    def forward(self, levels: list[torch.Tensor], global_embedding: torch.Tensor,
                text: torch.Tensor) -> list[torch.Tensor]:
        """Last-layer mask logits [B, T, h, w] of each stage.

        Args:
            levels: [B, D, h, w] unit-norm maps, the read-out levels then the final feature.
            global_embedding: [B, D] unit-norm image embedding.
            text: [T, D] text embeddings, one query per row.
        """
        batch, _, height, width = levels[-1].shape
        pixels = [level.flatten(2).transpose(1, 2) for level in levels]  # each [B, hw, D]
        rows = text.to(global_embedding.dtype).expand(batch, -1, -1)  # [B, T, D]
        query_input = torch.cat([global_embedding[:, None, :] * rows, rows], dim=-1)  # [B, T, 2D]
        memories = [self._fuse(pixels, levels_, weights)
                    for levels_, weights in zip(self.stage_levels, self.fusion_weights)] + [pixels[-1]]
        masks = []
        for proj, stage, memory in zip(self.query_projs, self.stages, memories):
            last = stage(proj(query_input), memory)[-1]  # [B, T, hw]; earlier layers' masks are unused
            masks.append(last.reshape(batch, -1, height, width))
        return masks

    @staticmethod
    def _fuse(pixels: list[torch.Tensor], levels: tuple[int, ...], weights: torch.Tensor) -> torch.Tensor:
        fused = weights[0] * pixels[levels[0]]
        for weight, level in zip(weights[1:], levels[1:]):
            fused = fused + weight * pixels[level]
        return fused  # [B, hw, D]
