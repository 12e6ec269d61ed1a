"""Tests for vocabseg.layers.pooling: mask pooling and CLIP ResNet attention pooling inside masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d

from vocabseg.layers.pooling import mask_pool, masked_attention_pool

CHANNELS, HEADS, OUT_DIM = 64, 4, 32


def test_mask_pool_averages_inside_and_gives_zero_for_empty_masks():
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]])[None]  # [1, C=2, 2, 2]
    masks = torch.full((1, 3, 2, 2), -1.0)
    masks[0, 0, 0, :] = 1.0  # top row
    masks[0, 1, :, 1] = 0.0  # logit 0 is outside: empty
    masks[0, 2] = 2.0  # whole map
    pooled = mask_pool(features, masks)
    expected = torch.tensor([[[1.5, 15.0], [0.0, 0.0], [2.5, 25.0]]])
    torch.testing.assert_close(pooled, expected)


def test_mask_pool_resizes_masks_to_the_features():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    masks = torch.tensor([[[[5.0, -5.0], [-5.0, -5.0]]]])  # 2x2 -> 4x4: the top-left quadrant
    torch.testing.assert_close(mask_pool(features, masks), torch.tensor([[[(0 + 1 + 4 + 5) / 4]]]))


def test_mask_pool_passes_no_gradient_to_the_masks():
    features = torch.randn(1, 3, 4, 4, requires_grad=True)
    masks = torch.randn(1, 2, 4, 4, requires_grad=True)
    mask_pool(features, masks).sum().backward()
    assert masks.grad is None
    assert features.grad is not None


@pytest.fixture(scope="module")
def attnpool() -> AttentionPool2d:
    """open_clip's ResNet attention pool on a native 2x2 grid, random weights."""
    torch.manual_seed(0)
    return AttentionPool2d(spacial_dim=2, embed_dim=CHANNELS, num_heads=HEADS, output_dim=OUT_DIM).eval()


def _dense(batch: int = 2, height: int = 2, width: int = 2) -> torch.Tensor:
    return torch.randn(batch, CHANNELS, height, width, generator=torch.Generator().manual_seed(1))


def _attnpool_over_spatial_keys(attnpool, dense: torch.Tensor) -> torch.Tensor:
    """open_clip's AttentionPool2d, except that only the spatial tokens are keys.

    open_clip's query (mean token + its positional embedding) also attends to itself;
    FC-CLIP's mask pooling attends to the h*w positions only.
    """
    x = dense.flatten(2).permute(2, 0, 1)  # [hw, B, C]
    x = torch.cat([x.mean(0, keepdim=True), x]) + attnpool.positional_embedding[:, None]
    return F.multi_head_attention_forward(
        query=x[:1], key=x[1:], value=x[1:], embed_dim_to_check=x.shape[-1], num_heads=attnpool.num_heads,
        q_proj_weight=attnpool.q_proj.weight, k_proj_weight=attnpool.k_proj.weight,
        v_proj_weight=attnpool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight, out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False,
    )[0][0]  # [B, D]


def test_full_mask_equals_attnpool_over_spatial_keys(attnpool):
    dense = _dense()
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, torch.ones(2, 3, 2, 2))
        reference = _attnpool_over_spatial_keys(attnpool, dense)
    assert pooled.shape == (2, 3, OUT_DIM)
    torch.testing.assert_close(pooled, reference[:, None].expand(-1, 3, -1), atol=1e-4, rtol=1e-4)
    # ... and not open_clip's attnpool(x): as in the official FC-CLIP, the mean token is
    # the query only, so a whole-image mask is not CLIP's image embedding for ResNets
    with torch.no_grad():
        assert not torch.allclose(pooled[:, 0], attnpool(dense), atol=1e-3)


def test_single_pixel_mask_returns_that_pixels_value(attnpool):
    dense = _dense(batch=1)
    masks = torch.full((1, 4, 2, 2), -1.0)
    for q in range(4):
        masks[0, q].view(-1)[q] = 1.0  # query q sees only pixel q
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, masks)
        # one key: softmax weight 1 whatever the query, output = c_proj(v_proj(token + its position))
        tokens = dense[0].flatten(1).T + attnpool.positional_embedding[1:]
        expected = attnpool.c_proj(attnpool.v_proj(tokens))
    torch.testing.assert_close(pooled[0], expected, atol=1e-5, rtol=1e-5)


def test_empty_mask_pools_to_the_projection_bias(attnpool):
    """As the reference under current PyTorch: a fully masked row attends to nothing (output c_proj(0))."""
    dense = _dense()
    masks = torch.ones(2, 2, 2, 2)
    masks[:, 1] = -1.0  # query 1 empty in both images
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, masks)
    assert torch.isfinite(pooled).all()
    torch.testing.assert_close(pooled[:, 1], attnpool.c_proj.bias.expand(2, -1))
    assert not torch.allclose(pooled[:, 0], pooled[:, 1])


def test_positional_embedding_is_resized_to_the_feature_map(attnpool):
    dense = _dense(batch=1, height=3, width=4)  # not the native 2x2
    masks = torch.full((1, 1, 3, 4), -1.0)
    masks[0, 0, 2, 3] = 1.0  # the bottom-right pixel alone
    with torch.no_grad():
        pooled = masked_attention_pool(attnpool, dense, masks)
        grid = attnpool.positional_embedding[1:].T.reshape(1, CHANNELS, 2, 2)
        position = F.interpolate(grid, size=(3, 4), mode="bilinear", align_corners=False)[0, :, 2, 3]
        expected = attnpool.c_proj(attnpool.v_proj(dense[0, :, 2, 3] + position))
    torch.testing.assert_close(pooled[0, 0], expected, atol=1e-5, rtol=1e-5)
