"""Mask-prompted CLIP ViT image tower (OVSeg's "mask prompt tuning").

A region crop is encoded by an OpenAI-style CLIP ViT in which the patch tokens outside the
region's mask are replaced by learned tokens, ``mask_embedding[d]``: once before the class
token and positional embedding are added (d = 0), and again on the outputs of blocks
1 .. depth-1. The class token is never replaced. With depth 0 (or no masks) this is plain
CLIP image encoding.

The modules are those of an open_clip ``VisionTransformer`` (conv1, class_embedding,
positional_embedding, ln_pre, transformer.resblocks, ln_post, proj); only the mask
embedding is new. It is registered on the tower itself, so its state-dict key under a CLIP
is ``visual.mask_embedding``, as in the official checkpoints.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.fast_block import run_block_int8
from vocabseg.errors import ConfigError

MASK_PROMPT_DEPTH = 3  # OVSeg's MODEL.CLIP_ADAPTER.MASK_PROMPT_DEPTH in every released config


def add_mask_prompt(clip: nn.Module, *, depth: int = MASK_PROMPT_DEPTH) -> nn.Parameter:
    """Registers a zero-initialised ``mask_embedding`` [depth, grid*grid, width] on ``clip.visual``.

    Args:
        clip: an open_clip ``CLIP`` with a ``VisionTransformer`` image tower.
        depth: number of token replacements (before the first block and after blocks 1 .. depth-1).

    Returns:
        The new parameter (also reachable as ``clip.visual.mask_embedding``).
    """
    visual: Any = _vit_tower(clip)
    if depth < 1:
        raise ConfigError(f"mask prompt depth must be >= 1, got {depth}")
    if depth > len(visual.transformer.resblocks):
        raise ConfigError(f"mask prompt depth {depth} exceeds the {len(visual.transformer.resblocks)} ViT blocks")
    grid_h, grid_w = visual.grid_size
    like = visual.conv1.weight
    embedding = nn.Parameter(torch.zeros(depth, grid_h * grid_w, like.shape[0], dtype=like.dtype, device=like.device))
    visual.register_parameter("mask_embedding", embedding)
    return embedding


def prompt_mask(region_masks: torch.Tensor, *, patch_size: int) -> torch.Tensor:
    """Per-patch foreground flags: 1 where any pixel of the patch is inside the mask.

    Args:
        region_masks: [N, 1, H, W] masks with values in [0, 1].
        patch_size: the ViT patch size (H and W are multiples of it).

    Returns:
        [N, grid*grid, 1] float flags in {0, 1}, patches in row-major order.
    """
    pooled = F.avg_pool2d(region_masks.float(), kernel_size=patch_size, stride=patch_size)  # [N, 1, gh, gw]
    return torch.ceil(pooled).flatten(1).unsqueeze(-1)


def encode_masked_regions(
    visual: nn.Module,
    regions: torch.Tensor,
    region_masks: torch.Tensor | None,
    *,
    depth: int,
    int8: bool = False,
) -> torch.Tensor:
    """CLIP image embeddings of region crops, mask-prompted as in OVSeg.

    Args:
        visual: an open_clip ``VisionTransformer`` (with ``mask_embedding`` when depth > 0).
        regions: [N, 3, S, S] CLIP-normalised crops, S the tower's image size.
        region_masks: [N, 1, S, S] region masks in {0, 1}, or None for plain CLIP encoding.
        depth: number of token replacements (0 = plain CLIP encoding); at most the number of
            mask embeddings.
        int8: fast inference on x86: the blocks' linear layers in int8
            (:func:`vocabseg.clip.fast_block.run_block_int8`).

    Returns:
        [N, D] unnormalised image embeddings in CLIP's joint space.
    """
    v: Any = visual  # open_clip tower: attributes are untyped submodules
    _check_vit(v)
    tokens = _patch_tokens(v, regions)  # [N, grid*grid, width]
    flags, embedding = None, None
    if region_masks is not None and depth > 0:
        embedding = _mask_embedding(v, depth).to(tokens.dtype)  # [depth, grid*grid, width]
        flags = prompt_mask(region_masks, patch_size=v.conv1.kernel_size[0]).to(tokens.dtype)  # [N, grid*grid, 1]
        tokens = _replace(tokens, flags, embedding[0])
    x = _add_class_token(v, tokens)  # [N, 1 + grid*grid, width]
    x = x.permute(1, 0, 2)  # [1 + grid*grid, N, width], sequence-first as the official tower
    for index, block in enumerate(v.transformer.resblocks, start=1):
        x = run_block_int8(block, x) if int8 else run_block(block, x)
        if flags is not None and embedding is not None and index < depth:  # patch tokens only, never x[:1]
            x = torch.cat([x[:1], _replace(x[1:], flags.transpose(0, 1), embedding[index].unsqueeze(1))])
    pooled = v.ln_post(x[0])  # [N, width], the class token
    return pooled @ v.proj if v.proj is not None else pooled


def _vit_tower(clip: nn.Module) -> Any:
    visual = getattr(clip, "visual", None)
    _check_vit(visual)
    return visual


def _check_vit(visual: Any) -> None:
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if not hasattr(visual, "class_embedding") or not blocks or not isinstance(blocks[0].attn, nn.MultiheadAttention):
        raise ConfigError(f"{type(visual).__name__} is not an OpenAI-style CLIP ViT tower: mask prompts need one")


def _mask_embedding(visual: Any, depth: int) -> torch.Tensor:
    embedding = getattr(visual, "mask_embedding", None)
    if embedding is None:
        raise ConfigError("this CLIP ViT has no mask_embedding: call vocabseg.clip.vit.add_mask_prompt first")
    if depth > embedding.shape[0]:
        raise ConfigError(f"mask prompt depth {depth} exceeds the {embedding.shape[0]} learned mask embeddings")
    return embedding


def _patch_tokens(visual: Any, images: torch.Tensor) -> torch.Tensor:
    x = visual.conv1(images.to(visual.conv1.weight.dtype))  # [N, width, grid, grid]
    return x.flatten(2).permute(0, 2, 1)  # [N, grid*grid, width]


def _replace(tokens: torch.Tensor, flags: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """Keeps foreground tokens (flag 1) and puts the mask embedding on the others (flag 0)."""
    return tokens * flags + embedding * (1 - flags)


def _add_class_token(visual: Any, tokens: torch.Tensor) -> torch.Tensor:
    batch, _, width = tokens.shape
    cls = visual.class_embedding.to(tokens.dtype).expand(batch, 1, width)
    x = torch.cat([cls, tokens], dim=1) + visual.positional_embedding.to(tokens.dtype)
    return visual.ln_pre(x)


def run_block(block: Any, x: torch.Tensor, drop_path: float = 0.0) -> torch.Tensor:
    """One open_clip pre-LN residual block on sequence-first tokens [L, N, C] (no attention mask).

    ``drop_path`` is the stochastic-depth probability of each residual branch in training
    (one draw per sample, survivors rescaled), as Cascade-CLIP trains its prompted ViT.

    The attention runs sequence-first through ``F.multi_head_attention_forward``, the path of a
    sequence-first ``nn.MultiheadAttention``: open_clip's batch-first call (its fast path without
    grad, or a transposed view with grad) drifts by ~1e-7 per block from the official tower.
    """
    attn = block.attn
    h = block.ln_1(x)
    out, _ = F.multi_head_attention_forward(
        h, h, h, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias, attn.bias_k, attn.bias_v,
        attn.add_zero_attn, attn.dropout, attn.out_proj.weight, attn.out_proj.bias,
        training=attn.training, need_weights=False,
    )
    x = x + _drop_path(block.ls_1(out), drop_path, block.training)
    return x + _drop_path(block.ls_2(block.mlp(block.ln_2(x))), drop_path, block.training)


def _drop_path(branch: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Zeroes a residual branch [L, N, C] for whole samples with ``probability`` (training only)."""
    if not training or probability == 0.0:
        return branch
    keep = 1.0 - probability
    survivors = branch.new_empty((1, branch.shape[1], 1)).bernoulli_(keep)  # one draw per sample
    return branch * survivors / keep
