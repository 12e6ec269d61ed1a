"""OVSeg's Swin backbone: shapes, shifted-window mask, padding semantics, checkpoint key names."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vocabseg.models.ovseg.swin import (
    SHIFT_MASK_VALUE,
    PatchMerging,
    SwinBlock,
    SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    swin_base,
)

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference"


def tiny(**kwargs) -> SwinTransformer:
    torch.manual_seed(0)
    config = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4)
    return SwinTransformer(**(config | kwargs)).eval()


def randomise(module: torch.nn.Module) -> None:
    """Non-trivial LayerNorm affines and position biases (the defaults are 1/0 and ~0)."""
    torch.manual_seed(1)
    for name, p in module.named_parameters():
        if "norm" in name or "relative_position_bias_table" in name:
            p.data.normal_(0.5 if name.endswith("weight") else 0.0, 0.5)


def test_levels_for_odd_input_size():
    model = tiny()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 37, 50))
    # patch embed pads to 40x52 -> 10x13; merging rounds up: 5x7, 3x4, 2x2
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 16, 10, 13), "res3": (1, 32, 5, 7), "res4": (1, 64, 3, 4), "res5": (1, 128, 2, 2)}
    assert model.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    assert model.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    assert all(v.is_contiguous() for v in out.values())


def test_batch_equals_per_image():
    model = tiny()
    x = torch.randn(2, 3, 36, 44)
    with torch.no_grad():
        batched, single = model(x), model(x[1:])
    for k in batched:
        torch.testing.assert_close(batched[k][1:], single[k], rtol=1e-5, atol=1e-5)


def test_shift_mask_separates_the_rolled_regions():
    mask = shifted_window_mask(8, 8, window_size=4, shift_size=2)  # [4 windows, 16, 16]
    assert mask.shape == (4, 16, 16)
    assert set(mask.unique().tolist()) == {0.0, SHIFT_MASK_VALUE}
    assert (mask[0] == 0).all()  # the top-left window mixes no regions
    # bottom-right window: four 2x2 quadrants, each a region of its own
    rows, cols = torch.arange(16) // 4, torch.arange(16) % 4
    quadrant = 2 * (rows >= 2).long() + (cols >= 2).long()
    expected = torch.where(quadrant[:, None] == quadrant[None, :], 0.0, SHIFT_MASK_VALUE)
    assert torch.equal(mask[3], expected)
    # top-right window: left and right column halves differ, rows do not
    half = (cols >= 2).long()
    assert torch.equal(mask[1], torch.where(half[:, None] == half[None, :], 0.0, SHIFT_MASK_VALUE))


@pytest.mark.parametrize("shift", [0, 2])
def test_shifted_window_sees_only_its_region(shift):
    """On a one-window grid, the shift splits the window into quadrants that cannot see each other."""
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=shift).eval()
    mask = shifted_window_mask(4, 4, window_size=4, shift_size=2)
    x = torch.randn(1, 4, 4, 8)
    x2 = x.clone()
    x2[:, :2, :2] += torch.randn(1, 2, 2, 8)  # perturb the top-left quadrant only
    with torch.no_grad():
        y, y2 = block(x, mask), block(x2, mask)
    others = torch.ones(4, 4, dtype=torch.bool)
    others[:2, :2] = False
    changed = (y - y2).abs()[0][others].amax()
    if shift:
        assert changed < 1e-6  # -100 logits leave weights of ~1e-44
    else:
        assert changed > 1e-3  # one regular window: everything attends to everything


@pytest.mark.parametrize("shift", [0, 2])
def test_padding_tokens_are_zero_after_norm1_and_attended(shift):
    """A grid not a multiple of the window behaves as if padded with tokens whose ``norm1`` output is 0.

    Zero tokens normalise to ``norm1.bias``; with that bias 0 they equal the block's internal
    padding, so explicit padding (no internal padding, same mask) must give the same real tokens.
    """
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=shift).eval()
    randomise(block)
    block.norm1.bias.data.zero_()
    x = torch.randn(2, 6, 7, 8)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 1, 0, 2))  # [2, 8, 8, 8]
    mask = shifted_window_mask(8, 8, window_size=4, shift_size=2)
    with torch.no_grad():
        y, y_padded = block(x, mask), block(padded, mask)
    torch.testing.assert_close(y, y_padded[:, :6, :7], rtol=1e-5, atol=1e-6)
    # the stand-ins' values matter (they are attended): non-zero ones change the partial windows
    block.norm1.bias.data.fill_(1.0)
    with torch.no_grad():
        assert not torch.allclose(block(x, mask), block(padded, mask)[:, :6, :7], atol=1e-4)


def test_full_windows_do_not_depend_on_the_grid_extent():
    """Padding is right/bottom: a regular block's top-left full windows ignore what follows them."""
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=4).eval()
    x = torch.randn(1, 10, 11, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x, None)[:, :8, :8], block(x[:, :8, :8], None), rtol=1e-5, atol=1e-6)


def test_patch_merging_pads_odd_sizes_and_orders_neighbours():
    merge = PatchMerging(dim=1)
    merge.norm = torch.nn.Identity()  # type: ignore[assignment]
    merge.reduction = torch.nn.Identity()  # type: ignore[assignment]
    x = torch.arange(1, 16, dtype=torch.float).view(1, 3, 5, 1)  # ids 1..15, row-major
    out = merge(x)  # [1, 2, 3, 4]
    assert out.shape == (1, 2, 3, 4)
    assert out[0, 0, 0].tolist() == [1, 6, 2, 7]  # (0,0), (1,0), (0,1), (1,1)
    assert out[0, 1, 2].tolist() == [15, 0, 0, 0]  # zero padding beyond the odd edges


def test_relative_position_index():
    index = relative_position_index(3)
    assert index.shape == (9, 9) and index.dtype == torch.long
    assert (index.diagonal() == 12).all()  # offset (0, 0) is the centre of the 5x5 table
    assert index[0, 8].item() == 0 and index[8, 0].item() == 24  # offsets (-2, -2) and (2, 2)


def test_drop_path_only_in_training():
    model = tiny(drop_path_rate=0.5)
    rates = [b.drop_path.p for stage in model.layers for b in stage.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        eval_out = model(x)["res5"]
        torch.manual_seed(0)
        train_out = model.train()(x)["res5"]
    assert not torch.allclose(eval_out, train_out)


def test_state_dict_keys_match_official_checkpoint():
    manifest_path = REFERENCE / "ovseg" / "manifest_swinB_vitL14.json"
    if not manifest_path.exists():
        pytest.skip("../shared/reference is not available")
    manifest = json.loads(manifest_path.read_text())
    expected = {k[len("backbone."):]: v for k, v in manifest.items() if k.startswith("backbone.")}
    with torch.device("meta"):  # names and shapes only: no 88M-parameter init
        state = swin_base().state_dict()
    assert set(state) == set(expected)
    assert {k: list(v.shape) for k, v in state.items()} == {k: v["shape"] for k, v in expected.items()}
    assert state["layers.0.blocks.0.attn.relative_position_index"].dtype == torch.long
