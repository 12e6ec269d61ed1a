"""Frozen open_clip backbone: multi-scale features, dense CLIP features, text tower.

One typed contract (``BackboneFeatures``) hides whether a ConvNeXt or a
ModifiedResNet CLIP is behind it. The CLIP weights are never trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from .heads import mask_pool


@dataclass
class BackboneFeatures:
    """Feature maps of one image batch [B, C, H/s, W/s]."""

    stem: torch.Tensor
    res2: torch.Tensor  # stride 4
    res3: torch.Tensor  # stride 8
    res4: torch.Tensor  # stride 16
    res5: torch.Tensor  # stride 32
    clip_dense: torch.Tensor  # stride 32, the input of CLIP's pooling head

    def levels(self) -> dict[str, torch.Tensor]:
        return {"res2": self.res2, "res3": self.res3, "res4": self.res4, "res5": self.res5}


def create_clip(model_name: str, *, quick_gelu: bool = False) -> nn.Module:
    """Builds an open_clip model with random weights (they are loaded afterwards)."""
    import logging

    # open_clip warns about random init; weights always come from a checkpoint here.
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    finally:
        logging.getLogger().setLevel(previous)


class CLIPBackbone(nn.Module):
    """Wraps a frozen open_clip ConvNeXt or ModifiedResNet CLIP."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip
        visual = clip.visual
        if hasattr(visual, "trunk") and hasattr(visual.trunk, "stages"):
            self.kind = "convnext"
        elif hasattr(visual, "attnpool"):
            self.kind = "resnet"
        else:
            raise ValueError(f"unsupported CLIP visual tower {type(visual).__name__}: use a ConvNeXt or ModifiedResNet CLIP")
        self.channels = self._level_channels()
        for param in self.clip.parameters():
            param.requires_grad_(False)
        self.clip.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # frozen: BatchNorm statistics and dropout stay in inference mode
        return self

    @property
    def embed_dim(self) -> int:
        return self.clip.text_projection.shape[-1]

    def _level_channels(self) -> dict[str, int]:
        visual = self.clip.visual
        if self.kind == "convnext":
            stages = visual.trunk.stages
            widths = [_last_conv_channels(stage) for stage in stages]
            return {"stem": visual.trunk.stem[0].out_channels, **{f"res{i + 2}": w for i, w in enumerate(widths)}}
        layers = [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
        widths = [layer[-1].conv3.out_channels for layer in layers]
        return {"stem": visual.conv3.out_channels, **{f"res{i + 2}": w for i, w in enumerate(widths)}}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """images: [B, 3, H, W] normalised. Returns the feature pyramid."""
        visual = self.clip.visual
        if self.kind == "convnext":
            trunk = visual.trunk
            stem = x = trunk.stem(images)
            levels = []
            for stage in trunk.stages:
                x = stage(x)
                levels.append(x)
            dense = trunk.norm_pre(x)
        else:
            x = visual.act1(visual.bn1(visual.conv1(images)))
            x = visual.act2(visual.bn2(visual.conv2(x)))
            stem = x = visual.act3(visual.bn3(visual.conv3(x)))
            x = visual.avgpool(x)
            levels = []
            for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
                x = layer(x)
                levels.append(x)
            dense = x
        # timm ConvNeXt stages return channels-last-strided maps. Contiguous NCHW (as the
        # reference hands its pixel decoder) selects the same convolution kernels downstream.
        levels = [x.contiguous() for x in levels]
        return BackboneFeatures(stem.contiguous(), *levels, clip_dense=dense.contiguous())

    @torch.no_grad()
    def pool_masks(self, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings of each mask region (the out-of-vocabulary classifier's input).

        Args:
            dense: [B, C, h, w] dense CLIP features.
            mask_logits: [B, Q, h, w] mask logits at the dense resolution.

        Returns:
            [B, Q, D] embeddings in CLIP's joint space (not normalised).
        """
        if self.kind == "convnext":
            pooled = mask_pool(dense, mask_logits)  # [B, Q, C]
            batch, queries, channels = pooled.shape
            x = self.clip.visual.trunk.head(pooled.reshape(batch * queries, channels, 1, 1))
            return self.clip.visual.head(x).view(batch, queries, -1)
        return masked_attention_pool(self.clip.visual.attnpool, dense, mask_logits)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unnormalised text embeddings [N, D] of token ids [N, 77].

        Only the first ``max_len`` positions are run, where ``max_len`` covers the
        longest prompt's end-of-text token: attention is causal, so the end-of-text
        output does not depend on the padding after it.
        """
        clip = self.clip
        eot_positions = tokens.argmax(dim=-1)  # end-of-text has the largest token id
        max_len = int(eot_positions.max()) + 1
        tokens = tokens[:, :max_len]
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:max_len].to(cast_dtype)
        causal = clip.attn_mask[:max_len, :max_len] if clip.attn_mask is not None else None
        x = clip.transformer(x, attn_mask=causal)  # batch-first in open_clip >= 2.22
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_positions]
        return x @ clip.text_projection


def _last_conv_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = convs[-1]
    return last.out_channels if isinstance(last, nn.Conv2d) else last.out_features


def masked_attention_pool(attnpool: nn.Module, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
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
