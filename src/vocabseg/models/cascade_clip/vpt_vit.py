"""The CLIP ViT with deep visual prompts, and the multi-level features Cascade-CLIP decodes.

The image tower is an open_clip ``VisionTransformer`` (OpenAI ViT-B/16 weights, positional grid
resized to the 512 crop); what Cascade-CLIP adds lives in two small modules beside it:

- :class:`VisualPrompts`: T learned tokens inserted between the class token and the patches
  after ``ln_pre``, and replaced by fresh ones before every later block (VPT-deep). One
  projection is shared by all layers; ``norm`` normalises every block output that is read out.
- :class:`LevelProjections`: each read-out block output (blocks 5..10) goes through its own
  LayerNorm and a [width, D] projection into CLIP's joint space. Official training never updates
  them (they are frozen at their initialisation); released checkpoints carry their values.

Two official details kept on purpose: the class token receives ``class_embedding`` twice (once
as the token, once added to its positional embedding), and the positional grid is resized
bilinearly to the input grid (an identity for 512 x 512 windows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.fast_block import run_block_int8
from vocabseg.clip.vit import run_block
from vocabseg.layers.int8_linear import int8_linear
from vocabseg.layers.linear_view import linear_view
from vocabseg.precision import fast_int8


class VisualPrompts(nn.Module):
    """Deep visual prompt tokens: one set [T, width] for the input sequence and one per later block."""

    def __init__(self, *, tokens: int, width: int, blocks: int, patch_size: int, norm_eps: float, dropout: float):
        super().__init__()
        # VPT's uniform init bound sqrt(6 / (3 * patch^2 + width)) (Xavier over a patch's fan-in)
        bound = math.sqrt(6.0 / (3 * patch_size * patch_size + width))
        self.shallow = nn.Parameter(torch.empty(1, tokens, width).uniform_(-bound, bound))
        self.deep = nn.Parameter(torch.empty(blocks - 1, tokens, width).uniform_(-bound, bound))
        self.proj = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.proj.weight, a=0, mode="fan_out")
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)

    @property
    def num_tokens(self) -> int:
        return int(self.shallow.shape[1])

    def tokens(self, block: int, batch: int) -> torch.Tensor:
        """[T, N, width] prompt tokens entering ``block`` (0: inserted after ln_pre), sequence-first.

        Dropout acts after the batch expansion: each sample drops its own prompt entries.
        """
        source = self.shallow[0] if block == 0 else self.deep[block - 1]  # [T, width]
        return self.dropout(self.proj(source).unsqueeze(1).expand(-1, batch, -1))


class LevelProjections(nn.Module):
    """Per-level LayerNorm and projection [levels, width, D] of intermediate block outputs."""

    def __init__(self, *, levels: int, width: int, embed_dim: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(levels))
        self.proj = nn.Parameter(width ** -0.5 * torch.randn(levels, width, embed_dim))
        for param in self.parameters():  # official training leaves them at their initialisation
            param.requires_grad_(False)

    def forward(self, level: int, tokens: torch.Tensor) -> torch.Tensor:
        """[N, L, width] -> [N, L, D] for one level."""
        return project(self, f"level{level}", self.norms[level](tokens), self.proj[level])


@dataclass
class VisualFeatures:
    """What the cascaded decoders read from one batch of windows."""

    levels: list[torch.Tensor]  # each [N, D, h, w], unit norm over D: the read-out blocks, then the final feature
    global_embedding: torch.Tensor  # [N, D] unit-norm class-token embedding


def encode_windows(visual: Any, prompts: VisualPrompts, projections: LevelProjections, images: torch.Tensor,
                   *, level_blocks: tuple[int, ...], drop_path_rate: float) -> VisualFeatures:
    """Prompted ViT features of normalised windows [N, 3, H, W] (H, W multiples of the patch size)."""
    patches = visual.conv1(images.to(visual.conv1.weight.dtype))  # [N, width, h, w]
    batch, width, grid_h, grid_w = patches.shape
    x = _embed(visual, patches.flatten(2).transpose(1, 2), (grid_h, grid_w))  # [N, 1 + hw, width]
    x = x.transpose(0, 1)  # [1 + hw, N, width] sequence-first, as the official tower runs
    blocks = visual.transformer.resblocks
    drop_rates = torch.linspace(0, drop_path_rate, len(blocks)).tolist()
    t = prompts.num_tokens
    read_out: list[torch.Tensor] = []
    int8 = fast_int8()  # fast mode on x86: int8 linears (labels measured to hold)
    for index, block in enumerate(blocks):
        prompt = prompts.tokens(index, batch).to(x.dtype)
        rest = x[1:] if index == 0 else x[1 + t:]  # patches (the old prompts are dropped)
        tokens = torch.cat([x[:1], prompt, rest])  # [1 + T + hw, N, width]
        x = run_block_int8(block, tokens) if int8 else run_block(block, tokens, drop_rates[index])
        if index in level_blocks:
            read_out.append(prompts.norm(x))
    final = prompts.norm(x)
    levels = [_to_map(projections(k, hidden.transpose(0, 1)), grid_h, grid_w) for k, hidden in enumerate(read_out)]
    joint = project(visual, "proj", visual.ln_post(final.transpose(0, 1)), visual.proj)  # [N, 1 + T + hw, D]
    levels.append(_to_map(joint, grid_h, grid_w))
    return VisualFeatures(levels, F.normalize(joint[:, 0], dim=-1))


def project(owner: nn.Module, name: str, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x @ matrix`` ([..., width] @ [width, D]); in fast mode on x86 an int8 linear over a view of ``matrix``."""
    if fast_int8():
        return int8_linear(linear_view(owner, name, matrix.T), x)
    return x @ matrix


def _embed(visual: Any, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Class token + patches [N, hw, width] with positional embeddings (grid resized), then ln_pre."""
    batch, _, width = patches.shape
    cls = visual.class_embedding.to(patches.dtype)
    positional = visual.positional_embedding.to(patches.dtype)  # [1 + g*g, width]
    side = math.isqrt(positional.shape[0] - 1)
    spatial = positional[1:].reshape(1, side, side, width).permute(0, 3, 1, 2)  # [1, width, g, g]
    spatial = F.interpolate(spatial, size=grid, mode="bilinear", align_corners=False)
    spatial = spatial.flatten(2).transpose(1, 2)  # [1, hw, width]
    # The official tower adds class_embedding to the class token's positional embedding as well
    cls_token = (cls + (positional[0] + cls)).expand(batch, 1, width)
    return visual.ln_pre(torch.cat([cls_token, patches + spatial], dim=1))


def _to_map(tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """The last h*w tokens of [N, L, D] as a unit-norm map [N, D, h, w] (class and prompt tokens dropped)."""
    patches = tokens[:, -grid_h * grid_w:]
    maps = patches.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)
    return F.normalize(maps, dim=1)
