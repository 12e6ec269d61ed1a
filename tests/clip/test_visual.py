"""Tests for vocabseg.clip.visual: the adapters of tiny random-weight open_clip towers."""
from __future__ import annotations

import open_clip
import pytest
import torch
from torch import nn

from vocabseg.clip.visual import CLIPBackbone, ConvNeXtAdapter, ModifiedResNetAdapter, VisualFeatures, visual_adapter
from vocabseg.errors import ConfigError

STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
STEM_STRIDE = {"convnext": 4, "resnet": 2}
ADAPTERS = {"convnext": ConvNeXtAdapter, "resnet": ModifiedResNetAdapter}


def _images(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_feature_strides_and_channels(tiny_backbones, backbone_kind):
    backbone = tiny_backbones[backbone_kind]
    assert type(backbone.adapter) is ADAPTERS[backbone_kind]
    assert type(visual_adapter(backbone.clip.visual)) is ADAPTERS[backbone_kind]
    features = backbone(_images(height=64, width=96))
    assert isinstance(features, VisualFeatures)
    for name, stride in STRIDES.items():
        x = getattr(features, name)
        assert tuple(x.shape) == (2, backbone.channels[name], 64 // stride, 96 // stride), name
        assert x.is_contiguous(), name
    stem = STEM_STRIDE[backbone_kind]
    assert tuple(features.stem.shape) == (2, backbone.channels["stem"], 64 // stem, 96 // stem)
    assert features.clip_dense.shape == features.res5.shape
    assert list(features.levels()) == ["res2", "res3", "res4", "res5"]
    assert not features.res2.requires_grad


def test_embed_dim_is_the_text_projection_width(tiny_backbones, backbone_kind):
    assert tiny_backbones[backbone_kind].embed_dim == 32


class _Head(nn.Module):
    """A frozen backbone under a trainable module, as the families hold it."""

    def __init__(self, backbone: CLIPBackbone):
        super().__init__()
        self.backbone, self.head = backbone, nn.Linear(4, 4)


def test_clip_is_frozen_and_stays_in_eval_mode(make_backbone, backbone_kind):
    model = _Head(make_backbone(backbone_kind)).eval()
    images = _images()
    reference = model.backbone(images).res5
    model.train()
    assert model.training and model.head.training and model.backbone.training
    assert not any(module.training for module in model.backbone.clip.modules())
    assert not any(param.requires_grad for param in model.backbone.clip.parameters())
    # BatchNorm (ResNet) would switch to batch statistics in train mode
    torch.testing.assert_close(model.backbone(images).res5, reference)


def test_unsupported_visual_tower_is_rejected():
    vit = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "head_width": 16, "patch_size": 32, "image_size": 64},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
    )
    with pytest.raises(ConfigError, match="unsupported CLIP visual tower"):
        CLIPBackbone(vit)


def test_convnext_whole_image_mask_gives_clip_image_embedding(tiny_backbones):
    backbone = tiny_backbones["convnext"]
    images = _images(batch=2, height=64, width=64)
    dense = backbone(images).clip_dense
    masks = torch.ones(2, 3, *dense.shape[-2:])
    pooled = backbone.pool_masks(dense, masks)
    with torch.no_grad():
        image_embedding = backbone.clip.encode_image(images)  # [2, D]
    assert pooled.shape == (2, 3, 32)
    torch.testing.assert_close(pooled, image_embedding[:, None].expand(-1, 3, -1), atol=1e-5, rtol=1e-5)


def test_resnet_pool_masks_is_attention_pooling_on_the_clip_head(tiny_backbones):
    """The ResNet adapter pools with the tower's own attnpool (tested in tests/layers/test_pooling.py)."""
    from vocabseg.layers.pooling import masked_attention_pool

    backbone = tiny_backbones["resnet"]
    dense = backbone(_images(batch=1, height=64, width=64)).clip_dense  # native 2x2 attnpool grid
    assert dense.shape[-2:] == (2, 2)
    masks = torch.randn(1, 5, 2, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = masked_attention_pool(backbone.clip.visual.attnpool, dense, masks)
    torch.testing.assert_close(backbone.pool_masks(dense, masks), expected)


def test_resnet_pool_masks_resizes_positional_embedding(tiny_backbones):
    backbone = tiny_backbones["resnet"]
    dense = backbone(_images(batch=1, height=96, width=128)).clip_dense  # 3x4, not the native 2x2
    with torch.no_grad():
        pooled = backbone.pool_masks(dense, torch.randn(1, 5, 3, 4))
    assert pooled.shape == (1, 5, 32) and torch.isfinite(pooled).all()
