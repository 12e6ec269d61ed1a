"""Fast mode's ConvNeXt block (vocabseg.clip.convnext_fast) against timm's own forward."""
from __future__ import annotations

import pytest
import torch
from timm.models.convnext import ConvNeXtBlock

from vocabseg.clip.convnext_fast import fast_block, supports
from vocabseg.layers import int8_linear as int8
from vocabseg.layers.int8_linear import int8_available

pytestmark = pytest.mark.skipif(not int8_available(torch.device("cpu"))[0], reason="no fbgemm int8 kernels on this CPU")


def _block(channels: int, *, conv_mlp: bool, seed: int = 0) -> ConvNeXtBlock:
    torch.manual_seed(seed)
    return ConvNeXtBlock(channels, conv_mlp=conv_mlp, ls_init_value=0.5).eval()  # a layer scale that counts


def _branch_error(block: ConvNeXtBlock, x: torch.Tensor, **kwargs) -> float:
    """Relative error of the block's residual branch (what int8 changes), fast against timm."""
    with torch.no_grad():
        reference = block(x)
        fast = fast_block(block, x, **kwargs)
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    return float((fast - reference).norm() / (reference - x).norm())


@pytest.mark.parametrize("conv_mlp", [False, True])  # nn.Linear MLP (ConvNeXt-L), 1x1 convolutions (ConvNeXt-atto)
@pytest.mark.parametrize("channels_last", [True, False])
def test_close_to_timm_and_int8_used(conv_mlp: bool, channels_last: bool):
    block = _block(32, conv_mlp=conv_mlp)
    x = torch.randn(2, 32, 9, 11)
    if channels_last:  # timm's trunk hands its blocks channels-last strides
        x = x.contiguous(memory_format=torch.channels_last)
    assert supports(block)
    error = _branch_error(block, x)
    assert 0 < error < 0.06  # two int8 products of about 2% each; 0 would mean float32 ran
    assert block.mlp.fc1 in int8._PACKED and block.mlp.fc2 in int8._PACKED


def test_rows_in_blocks_with_a_remainder_agree_with_one_block():
    block = _block(16, conv_mlp=False, seed=1)
    x = torch.randn(1, 16, 7, 9).contiguous(memory_format=torch.channels_last)  # 63 rows: 8 blocks of 8, then 7
    with torch.no_grad():
        whole = fast_block(block, x, rows_per_block=10_000)
        parts = fast_block(block, x, rows_per_block=8)
    assert not torch.equal(whole, parts)  # each block of rows has its own activation scale
    torch.testing.assert_close(parts, whole, atol=0.05, rtol=0)
    assert _branch_error(block, x, rows_per_block=8) < 0.06


def test_other_blocks_are_left_to_their_own_forward():
    assert not supports(ConvNeXtBlock(16, use_grn=True).eval())  # ConvNeXt-V2's GRN MLP
    assert not supports(ConvNeXtBlock(16, out_chs=32).eval())  # a projecting shortcut
    assert not supports(ConvNeXtBlock(16, act_layer="gelu_tanh").eval())
    assert not supports(ConvNeXtBlock(16).train())
