"""Tests for vocabseg.clip.vit: the mask-prompted CLIP ViT tower on a tiny open_clip ViT."""
from __future__ import annotations

import open_clip
import pytest
import torch
from torch import nn

from vocabseg.clip.vit import add_mask_prompt, encode_masked_regions, prompt_mask
from vocabseg.errors import ConfigError

SIZE, PATCH, GRID = 32, 8, 4  # 4 x 4 patches


def _tiny_vit_clip(seed: int = 0, layers: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    vision = {"image_size": SIZE, "patch_size": PATCH, "width": 32, "layers": layers, "head_width": 16}
    text = {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}
    return open_clip.CLIP(embed_dim=24, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()


def _prompted(seed: int = 0, depth: int = 3) -> nn.Module:
    clip = _tiny_vit_clip(seed)
    with torch.no_grad():
        add_mask_prompt(clip, depth=depth).normal_(0, 1.0)  # non-zero, so replacements show
    return clip


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    regions = torch.randn(n, 3, SIZE, SIZE, generator=g)
    foreground = torch.rand(n, 1, GRID, GRID, generator=g) > 0.5  # about half the patches
    one_pixel = torch.zeros(n, 1, GRID, GRID, PATCH, PATCH)  # one random pixel per patch
    where = torch.randint(PATCH * PATCH, (n, 1, GRID, GRID, 1), generator=g)
    one_pixel.view(n, 1, GRID, GRID, -1).scatter_(-1, where, 1)
    masks = (one_pixel * foreground[..., None, None]).permute(0, 1, 2, 4, 3, 5).reshape(n, 1, SIZE, SIZE)
    return regions, masks


def _reference(visual, regions: torch.Tensor, masks: torch.Tensor, depth: int) -> torch.Tensor:
    """Step-by-step reference on open_clip's own (batch-first) blocks."""
    fg = (masks.reshape(len(masks), GRID, PATCH, GRID, PATCH).amax(dim=(2, 4)) > 0).float()  # [N, 4, 4]
    fg = fg.reshape(len(masks), GRID * GRID, 1)
    x = visual.conv1(regions).flatten(2).transpose(1, 2)  # [N, 16, C]
    x = torch.where(fg > 0, x, visual.mask_embedding[0])
    cls = visual.class_embedding.expand(len(x), 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    for d, block in enumerate(visual.transformer.resblocks, start=1):
        x = block(x)
        if d < depth:
            x = torch.cat([x[:, :1], torch.where(fg > 0, x[:, 1:], visual.mask_embedding[d])], dim=1)
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_add_mask_prompt_registers_a_zero_parameter_on_the_tower():
    clip = _tiny_vit_clip()
    embedding = add_mask_prompt(clip, depth=3)
    assert clip.visual.mask_embedding is embedding
    assert tuple(clip.state_dict()["visual.mask_embedding"].shape) == (3, GRID * GRID, 32)
    assert torch.count_nonzero(embedding) == 0
    assert embedding.requires_grad


def test_add_mask_prompt_rejects_non_vit_towers_and_too_deep_prompts():
    with pytest.raises(ConfigError, match="depth"):
        add_mask_prompt(_tiny_vit_clip(layers=2), depth=3)
    resnet = open_clip.CLIP(embed_dim=24, vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
                            text_cfg={"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1})
    with pytest.raises(ConfigError, match="ViT"):
        add_mask_prompt(resnet)


def test_prompt_mask_flags_a_patch_with_any_foreground_pixel():
    masks = torch.zeros(1, 1, SIZE, SIZE)
    masks[0, 0, 9, 17] = 1  # patch (row 1, col 2)
    masks[0, 0, 31, 0] = 1  # patch (row 3, col 0)
    flags = prompt_mask(masks, patch_size=PATCH)
    assert flags.shape == (1, GRID * GRID, 1)
    assert flags[0, :, 0].nonzero().flatten().tolist() == [1 * GRID + 2, 3 * GRID + 0]


def test_matches_a_step_by_step_reference():
    clip = _prompted()
    regions, masks = _inputs(3)
    with torch.no_grad():
        for depth in (1, 2, 3):
            out = encode_masked_regions(clip.visual, regions, masks, depth=depth)
            torch.testing.assert_close(out, _reference(clip.visual, regions, masks, depth), rtol=1e-5, atol=1e-6)


def test_one_region_equals_that_region_in_a_batch_of_three():
    clip = _prompted()
    regions, masks = _inputs(3)
    with torch.no_grad():
        batch = encode_masked_regions(clip.visual, regions, masks, depth=3)
        single = encode_masked_regions(clip.visual, regions[1:2], masks[1:2], depth=3)
    assert single.shape == (1, 24)
    torch.testing.assert_close(single, batch[1:2], rtol=1e-6, atol=1e-7)


def test_full_masks_and_depth_zero_are_plain_clip():
    clip = _prompted()
    regions, _ = _inputs(2)
    with torch.no_grad():
        plain = clip.visual(regions)  # open_clip's own forward
        full = encode_masked_regions(clip.visual, regions, torch.ones(2, 1, SIZE, SIZE), depth=3)
        no_masks = encode_masked_regions(clip.visual, regions, None, depth=3)
        depth0 = encode_masked_regions(clip.visual, regions, torch.zeros(2, 1, SIZE, SIZE), depth=0)
    for out in (full, no_masks, depth0):
        torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full, no_masks, rtol=0, atol=0)


def test_empty_masks_hide_the_image_but_not_the_class_token():
    clip = _prompted()
    empty = torch.zeros(2, 1, SIZE, SIZE)
    with torch.no_grad():
        a = encode_masked_regions(clip.visual, _inputs(2, seed=1)[0], empty, depth=3)
        b = encode_masked_regions(clip.visual, _inputs(2, seed=2)[0], empty, depth=3)
        clip.visual.class_embedding.add_(0.5)
        c = encode_masked_regions(clip.visual, _inputs(2, seed=1)[0], empty, depth=3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # every patch token replaced before the first block
    assert not torch.allclose(a, c)  # the class token is kept


def test_only_the_first_depth_embeddings_are_used():
    clip = _prompted()
    regions, masks = _inputs(2)
    with torch.no_grad():
        depth2 = encode_masked_regions(clip.visual, regions, masks, depth=2)
        depth3 = encode_masked_regions(clip.visual, regions, masks, depth=3)
        clip.visual.mask_embedding[2].add_(torch.randn(GRID * GRID, 32))  # (a constant shift LayerNorm would hide)
        depth2_changed = encode_masked_regions(clip.visual, regions, masks, depth=2)
        depth3_changed = encode_masked_regions(clip.visual, regions, masks, depth=3)
    torch.testing.assert_close(depth2_changed, depth2, rtol=0, atol=0)
    assert not torch.allclose(depth3_changed, depth3)


def test_gradients_reach_the_mask_embedding_and_the_clip_weights():
    clip = _prompted().train()
    regions, masks = _inputs(2)
    encode_masked_regions(clip.visual, regions, masks, depth=3).square().sum().backward()
    grad = clip.visual.mask_embedding.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert all(grad[d].abs().sum() > 0 for d in range(3))
    for name in ("conv1.weight", "class_embedding", "proj", "transformer.resblocks.0.attn.in_proj_weight"):
        assert clip.visual.get_parameter(name).grad.abs().sum() > 0, name


def test_errors_and_empty_batches():
    clip = _tiny_vit_clip()
    regions, masks = _inputs(1)
    with pytest.raises(ConfigError, match="add_mask_prompt"):
        encode_masked_regions(clip.visual, regions, masks, depth=3)
    add_mask_prompt(clip, depth=2)
    with pytest.raises(ConfigError, match="exceeds"):
        encode_masked_regions(clip.visual, regions, masks, depth=3)
    out = encode_masked_regions(clip.visual, regions[:0], masks[:0], depth=2)
    assert out.shape == (0, 24)
