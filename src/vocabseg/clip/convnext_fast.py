"""Fast mode's forward of timm's ConvNeXt blocks on x86 CPUs: int8 MLP linears, fewer memory passes.

A ConvNeXt block is dwconv 7x7 -> LayerNorm over channels -> Linear(C, 4C) -> GELU -> Linear(4C, C)
-> layer scale ``gamma`` -> residual add. In ConvNeXt-L at 800x1200 with AVX2 kernels (torch.profiler,
one pass) the two linears took 72% of the backbone's time and their bias copies 7% (float32 ``addmm``
first copies the bias into its output), GELU 7.5%, the dwconvs 5%, layer scale and residual add 3%,
LayerNorm 2%. Float32 products already run at the CPU's peak, so fast mode runs the linears in int8
(``layers/int8_linear.py``, the bias added inside the product) and merges the element-wise passes:
the GELU runs in place (3x faster than into a fresh 4x-wide buffer), layer scale and residual add are
one ``addcmul``, and the rows stay channels-last from the dwconv's output to the block's (timm's trunk
keeps channels-last strides, so the permutes are views).

The MLP runs over blocks of 4096 rows, so a stage-1 image's 4x-wide hidden (60,800 x 768 floats,
190 MB) is never whole in memory; on a shared 2-core machine this was as fast as one call. Each
block of rows gets its own activation scale (int8_linear quantises per call).

Exact mode never comes here (``ConvNeXtAdapter.features`` calls timm's own modules).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.int8_linear import int8_linear

ROWS_PER_BLOCK = 4096  # MLP rows per int8 call: a 4096 x 3072 hidden is 50 MB (ConvNeXt-L stage 3)


def fast_stage(stage: Any, x: torch.Tensor) -> torch.Tensor:
    """``stage(x)`` for a timm ``ConvNeXtStage``; blocks of another shape run their own forward."""
    x = stage.downsample(x)
    for block in stage.blocks:
        x = fast_block(block, x) if supports(block) else block(x)
    return x


def supports(block: nn.Module) -> bool:
    """Whether ``block`` is a plain timm ConvNeXt block (no GRN, no strided shortcut, exact GELU) in eval."""
    mlp = getattr(block, "mlp", None)
    needed = ("conv_dw", "norm", "gamma", "shortcut", "drop_path")
    if mlp is None or not all(hasattr(block, name) for name in needed) or block.training:
        return False
    linears = [getattr(mlp, name, None) for name in ("fc1", "fc2")]
    plain = all(_is_linear(layer) for layer in linears) and isinstance(getattr(mlp, "norm", None), nn.Identity)
    gelu = _is_exact_gelu(getattr(mlp, "act", None))
    norm = isinstance(block.norm, nn.LayerNorm) and len(block.norm.normalized_shape) == 1
    return plain and gelu and norm and isinstance(block.shortcut, nn.Identity)


def _is_exact_gelu(act: Any) -> bool:
    """torch's erf GELU, or timm's ``layers.activations.GELU`` (which calls it)."""
    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    return type(act).__name__ == "GELU" and type(act).__module__ == "timm.layers.activations"


def _is_linear(layer: Any) -> bool:
    """An nn.Linear, or a 1x1 convolution without groups (timm's ``conv_mlp`` blocks)."""
    if isinstance(layer, nn.Linear):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            and layer.groups == 1 and layer.padding in ((0, 0), "valid"))


@torch.no_grad()
def fast_block(block: Any, x: torch.Tensor, rows_per_block: int = ROWS_PER_BLOCK) -> torch.Tensor:
    """One ConvNeXt block; x [B, C, H, W] -> [B, C, H, W] channels-last strided."""
    y = block.conv_dw(x).permute(0, 2, 3, 1)  # [B, H, W, C]: a view when the dwconv output is channels-last
    rows = y.reshape(-1, y.shape[-1])  # [N, C]; a copy only for an NCHW-contiguous dwconv output
    shortcut = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # [N, C]
    # [N, C] float32 even from bf16 inputs (autocast): timm's float32 layer scale promotes its residual sums too
    out = torch.empty(rows.shape, dtype=torch.promote_types(shortcut.dtype, torch.float32), device=x.device)
    mlp, norm = block.mlp, block.norm
    for start in range(0, rows.shape[0], rows_per_block):
        part = slice(start, start + rows_per_block)
        hidden = F.layer_norm(rows[part], norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        hidden = int8_linear(mlp.fc1, hidden)  # [n, 4C] float32, bias included
        torch.ops.aten.gelu_(hidden)
        branch = int8_linear(mlp.fc2, hidden)  # [n, C]
        if block.gamma is None:
            torch.add(shortcut[part], branch, out=out[part])
        else:
            torch.addcmul(shortcut[part], branch, block.gamma, out=out[part])
    batch, channels, height, width = x.shape
    return out.view(batch, height, width, channels).permute(0, 3, 1, 2)
