"""Tests for vocabseg.model.backbone (tiny random-weight open_clip towers)."""
from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from vocabseg.clip.visual import CLIPBackbone, masked_attention_pool

STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
STEM_STRIDE = {"convnext": 4, "resnet": 2}


def _images(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_feature_strides_and_channels(tiny_models, backbone_kind):
    backbone = tiny_models[backbone_kind].backbone
    assert backbone.kind == backbone_kind
    features = backbone(_images(height=64, width=96))
    for name, stride in STRIDES.items():
        x = getattr(features, name)
        assert tuple(x.shape) == (2, backbone.channels[name], 64 // stride, 96 // stride), name
    stem = STEM_STRIDE[backbone_kind]
    assert tuple(features.stem.shape) == (2, backbone.channels["stem"], 64 // stem, 96 // stem)
    assert features.clip_dense.shape == features.res5.shape
    assert list(features.levels()) == ["res2", "res3", "res4", "res5"]
    assert not features.res2.requires_grad


def test_embed_dim_is_the_text_projection_width(tiny_models, backbone_kind):
    assert tiny_models[backbone_kind].backbone.embed_dim == 32


def test_encode_text_truncated_equals_open_clip_full_context(tiny_models):
    clip = tiny_models["convnext"].backbone.clip
    prompts = ["a", "a photo of a dog.", "a very long prompt about a small red bicycle leaning on a wall"]
    tokens = open_clip.tokenize(prompts)  # [3, 77], zero padded after end-of-text
    assert len({int(t) for t in tokens.argmax(-1)}) == 3  # three different lengths
    ours = tiny_models["convnext"].backbone.encode_text(tokens)
    with torch.no_grad():
        reference = clip.encode_text(tokens)
    assert ours.shape == (3, 32)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_clip_is_frozen_and_stays_in_eval_mode(make_tiny_model, backbone_kind):
    model = make_tiny_model(backbone_kind).eval()
    images = _images()
    reference = model.backbone(images).res5
    model.train()
    assert model.training and model.pixel_decoder.training
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
    with pytest.raises(ValueError, match="unsupported CLIP visual tower"):
        CLIPBackbone(vit)


def test_convnext_whole_image_mask_gives_clip_image_embedding(tiny_models):
    backbone = tiny_models["convnext"].backbone
    images = _images(batch=2, height=64, width=64)
    dense = backbone(images).clip_dense
    masks = torch.ones(2, 3, *dense.shape[-2:])
    pooled = backbone.pool_masks(dense, masks)
    with torch.no_grad():
        image_embedding = backbone.clip.encode_image(images)  # [2, D]
    assert pooled.shape == (2, 3, 32)
    torch.testing.assert_close(pooled, image_embedding[:, None].expand(-1, 3, -1), atol=1e-5, rtol=1e-5)


def _attnpool_over_spatial_keys(attnpool, dense: torch.Tensor) -> torch.Tensor:
    """open_clip's AttentionPool2d, except that only the spatial tokens are keys.

    open_clip's query (mean token + its positional embedding) also attends to itself;
    FC-CLIP's mask pooling attends to the h*w positions only.
    """
    x = dense.flatten(2).permute(2, 0, 1)  # [hw, B, C]
    x = torch.cat([x.mean(0, keepdim=True), x]) + attnpool.positional_embedding[:, None]
    return F.multi_head_attention_forward(
        query=x[:1], key=x[1:], value=x[1:], embed_dim_to_check=x.shape[-1], num_heads=attnpool.num_heads,
        q_proj_weight=attnpool.q_proj.weight, k_proj_weight=attnpool.k_proj.weight, v_proj_weight=attnpool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight, out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False,
    )[0][0]  # [B, D]


def _resnet_dense(tiny_models, batch: int = 2) -> tuple[torch.nn.Module, torch.Tensor]:
    backbone = tiny_models["resnet"].backbone
    dense = backbone(_images(batch=batch, height=64, width=64)).clip_dense  # native 2x2 attnpool grid
    assert dense.shape[-2:] == (2, 2)
    return backbone.clip.visual.attnpool, dense


def test_resnet_full_mask_equals_attnpool_over_spatial_keys(tiny_models):
    attnpool, dense = _resnet_dense(tiny_models)
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, torch.ones(2, 3, 2, 2))
        reference = _attnpool_over_spatial_keys(attnpool, dense)
    assert pooled.shape == (2, 3, 32)
    torch.testing.assert_close(pooled, reference[:, None].expand(-1, 3, -1), atol=1e-4, rtol=1e-4)
    # ... and not open_clip's attnpool(x): as in the official FC-CLIP, the mean token is
    # the query only, so a whole-image mask is not CLIP's image embedding for ResNets
    with torch.no_grad():
        assert not torch.allclose(pooled[:, 0], attnpool(dense), atol=1e-3)


def test_resnet_single_pixel_mask_returns_that_pixels_value(tiny_models):
    attnpool, dense = _resnet_dense(tiny_models, batch=1)
    masks = torch.full((1, 4, 2, 2), -1.0)
    for q in range(4):
        masks[0, q].view(-1)[q] = 1.0  # query q sees only pixel q
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, masks)
        # one key: softmax weight 1 whatever the query, output = c_proj(v_proj(token + its position))
        tokens = dense[0].flatten(1).T + attnpool.positional_embedding[1:]
        expected = attnpool.c_proj(attnpool.v_proj(tokens))
    torch.testing.assert_close(pooled[0], expected, atol=1e-5, rtol=1e-5)


def test_resnet_empty_mask_pools_to_the_projection_bias(tiny_models):
    """As the reference under current PyTorch: a fully masked row attends to nothing (output c_proj(0))."""
    attnpool, dense = _resnet_dense(tiny_models)
    masks = torch.ones(2, 2, 2, 2)
    masks[:, 1] = -1.0  # query 1 empty in both images
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, masks)
    assert torch.isfinite(pooled).all()
    torch.testing.assert_close(pooled[:, 1], attnpool.c_proj.bias.expand(2, -1))
    assert not torch.allclose(pooled[:, 0], pooled[:, 1])


def test_resnet_pool_masks_resizes_positional_embedding(tiny_models):
    backbone = tiny_models["resnet"].backbone
    dense = backbone(_images(batch=1, height=96, width=128)).clip_dense  # 3x4, not the native 2x2
    with torch.no_grad():
        pooled = backbone.pool_masks(dense, torch.randn(1, 5, 3, 4))
    assert pooled.shape == (1, 5, 32) and torch.isfinite(pooled).all()
