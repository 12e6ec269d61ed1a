"""Frozen CLIP image towers behind one typed feature contract.

One adapter class per CLIP kind (ConvNeXt, ModifiedResNet; ViT next) turns an open_clip
visual tower into what the segmentation heads need: a feature pyramid at strides 4-32, the
dense map CLIP's own head pools, and that head applied inside masks. Heads depend on
:class:`VisualFeatures` only, never on which CLIP is behind it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vocabseg.clip.convnext_fast import fast_stage
from vocabseg.errors import ConfigError
from vocabseg.layers.pooling import mask_pool, masked_attention_pool
from vocabseg.precision import fast_int8


@dataclass
class VisualFeatures:
    """Feature maps of one image batch [B, C, H/s, W/s]."""

    stem: torch.Tensor
    res2: torch.Tensor  # stride 4
    res3: torch.Tensor  # stride 8
    res4: torch.Tensor  # stride 16
    res5: torch.Tensor  # stride 32
    clip_dense: torch.Tensor  # stride 32, the input of CLIP's pooling head

    def levels(self) -> dict[str, torch.Tensor]:
        return {"res2": self.res2, "res3": self.res3, "res4": self.res4, "res5": self.res5}


class ConvNeXtAdapter:
    """An open_clip ``TimmModel`` ConvNeXt tower (e.g. ``convnext_large_d_320``).

    Holds a reference to the tower, not a copy: the parameters stay registered (and named)
    under the CLIP module that owns them.
    """

    def __init__(self, visual: nn.Module):
        self.visual: Any = visual  # an open_clip tower: attributes are untyped submodules

    def level_channels(self) -> dict[str, int]:
        trunk = self.visual.trunk
        widths = [_last_conv_channels(stage) for stage in trunk.stages]
        return {"stem": trunk.stem[0].out_channels, **{f"res{i + 2}": w for i, w in enumerate(widths)}}

    def features(self, images: torch.Tensor) -> VisualFeatures:
        trunk = self.visual.trunk
        stem = x = trunk.stem(images)
        levels = []
        int8_stages = len(trunk.stages) if fast_int8() else 0  # fast mode on x86: int8 MLPs (clip/convnext_fast.py)
        for index, stage in enumerate(trunk.stages):
            x = fast_stage(stage, x) if index < int8_stages else stage(x)
            levels.append(x)
        return _contiguous(stem, levels, trunk.norm_pre(x))

    def pool_masks(self, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        pooled = mask_pool(dense, mask_logits)  # [B, Q, C]
        batch, queries, channels = pooled.shape
        x = self.visual.trunk.head(pooled.reshape(batch * queries, channels, 1, 1))
        return self.visual.head(x).view(batch, queries, -1)


class ModifiedResNetAdapter:
    """An OpenAI ``ModifiedResNet`` tower (RN50, RN101, RN50x4, ...)."""

    def __init__(self, visual: nn.Module):
        self.visual: Any = visual  # an open_clip tower: attributes are untyped submodules

    def _layers(self) -> list[Any]:
        v = self.visual
        return [v.layer1, v.layer2, v.layer3, v.layer4]

    def level_channels(self) -> dict[str, int]:
        widths = [layer[-1].conv3.out_channels for layer in self._layers()]
        return {"stem": self.visual.conv3.out_channels, **{f"res{i + 2}": w for i, w in enumerate(widths)}}

    def features(self, images: torch.Tensor) -> VisualFeatures:
        v = self.visual
        x = v.act1(v.bn1(v.conv1(images)))
        x = v.act2(v.bn2(v.conv2(x)))
        stem = x = v.act3(v.bn3(v.conv3(x)))
        x = v.avgpool(x)
        levels = []
        for layer in self._layers():
            x = layer(x)
            levels.append(x)
        return _contiguous(stem, levels, x)

    def pool_masks(self, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        return masked_attention_pool(self.visual.attnpool, dense, mask_logits)


VisualAdapter = ConvNeXtAdapter | ModifiedResNetAdapter


def visual_adapter(visual: Any) -> VisualAdapter:
    """The adapter for an open_clip visual tower, chosen by its structure."""
    if hasattr(visual, "trunk") and hasattr(visual.trunk, "stages"):
        return ConvNeXtAdapter(visual)
    if hasattr(visual, "attnpool"):
        return ModifiedResNetAdapter(visual)
    raise ConfigError(f"unsupported CLIP visual tower {type(visual).__name__}: use a ConvNeXt or ModifiedResNet CLIP")


class CLIPBackbone(nn.Module):
    """A frozen open_clip CLIP used as a convolutional backbone (its weights are never trained)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip: Any = clip  # open_clip CLIP: attributes are untyped submodules
        self.adapter = visual_adapter(clip.visual)
        self.channels = self.adapter.level_channels()
        for param in self.clip.parameters():
            param.requires_grad_(False)
        self.clip.eval()

    def train(self, mode: bool = True) -> CLIPBackbone:
        super().train(mode)
        self.clip.eval()  # frozen: BatchNorm statistics and dropout stay in inference mode
        return self

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[-1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> VisualFeatures:
        """images: [B, 3, H, W] normalised. Returns the feature pyramid."""
        return self.adapter.features(images)

    @torch.no_grad()
    def pool_masks(self, dense: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings of each mask region.

        Args:
            dense: [B, C, h, w] dense CLIP features.
            mask_logits: [B, Q, h, w] mask logits at the dense resolution.

        Returns:
            [B, Q, D] embeddings in CLIP's joint space (not normalised).
        """
        return self.adapter.pool_masks(dense, mask_logits)


def _contiguous(stem: torch.Tensor, levels: list[torch.Tensor], dense: torch.Tensor) -> VisualFeatures:
    # timm ConvNeXt stages return channels-last-strided maps. Contiguous NCHW (as the
    # reference hands its pixel decoder) selects the same convolution kernels downstream.
    res2, res3, res4, res5 = (x.contiguous() for x in levels)
    return VisualFeatures(stem.contiguous(), res2, res3, res4, res5, clip_dense=dense.contiguous())


def _last_conv_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = convs[-1]
    return int(last.out_channels if isinstance(last, nn.Conv2d) else last.out_features)
