"""Int8 linear layers for fast mode on x86 CPUs: the big float32 matrix products at a quarter of the bytes.

Float32 matrix products already run at the CPU's peak in exact mode, so on a CPU without native
bf16 only less arithmetic or narrower arithmetic can go faster. torch's fbgemm library multiplies
int8 by int8 natively on every x86 CPU with AVX2 (``vpmaddubsw``; ``vpdpbusd`` where AVX-512 VNNI
exists): a ViT-B MLP layer over 2,070 tokens took 36 ms against 60-70 ms in float32 with AVX2
kernels, and 18 ms against 28 ms in bf16 natively (2-core AMD EPYC Zen 4).

Weights are quantised once per output channel (symmetric, int8); activations per call, per
tensor (``torch.ops.quantized.linear_dynamic``, 7-bit so that AVX2's 16-bit pair sums cannot
saturate). A layer's relative error is about 2% (the activation step), so families apply it only
where they measured their labels to hold (fast mode; exact mode never). The packed weights are
kept beside each layer (a weak map, out of its state dict) and rebuilt when the weight changes.
"""
from __future__ import annotations

import functools
import platform
import warnings
import weakref
from typing import Any

import torch
from torch import nn

# layer -> (the weight's identity and version when packed, fbgemm's packed int8 weight and bias)
_PACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, int, int], Any]] = weakref.WeakKeyDictionary()


def int8_available(device: torch.device) -> tuple[bool, str]:
    """(whether int8 linears run natively on ``device``, a phrase saying why)."""
    if device.type != "cpu":
        return False, f"no int8 linears on {device.type}"
    return _cpu_int8()


@functools.cache
def _cpu_int8() -> tuple[bool, str]:
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if not x86 or "fbgemm" not in torch.backends.quantized.supported_engines:
        return False, "no fbgemm int8 kernels on this CPU"
    try:  # torch deprecates quantized tensors (the packing step): a torch without them runs float32
        with torch.inference_mode(False):  # the answer is cached: a first call under inference_mode must not decide it
            probe = nn.Linear(8, 8)
            int8_linear(probe, torch.ones(2, 8))
    except Exception as error:  # noqa: BLE001  # any failure means: no int8 here, float32 instead
        return False, f"no int8 linears in this torch ({type(error).__name__})"
    return True, "int8 linears (fbgemm)"


def int8_linear(layer: nn.Linear | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` with int8 weights and per-call int8 activations; x [..., in] float -> [..., out] float32.

    A 1x1 ``nn.Conv2d`` (weight [out, in, 1, 1]) counts as the linear layer of its 2-D weight, applied
    to channels-last rows x [..., in].
    """
    packed = _packed(layer)
    rows = x.reshape(-1, x.shape[-1]).float().contiguous()  # [N, in]: the op takes 2-D float32
    out = torch.ops.quantized.linear_dynamic(rows, packed, True)  # True: reduce_range (7-bit activations)
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _packed(layer: nn.Linear | nn.Conv2d) -> Any:
    weight = layer.weight
    key = (weight.data_ptr(), _version(weight), _version(layer.bias) if layer.bias is not None else -1)
    cached = _PACKED.get(layer)
    if cached is not None and cached[0] == key:
        return cached[1]
    packed = _pack(weight.detach().float().flatten(1), None if layer.bias is None else layer.bias.detach().float())
    _PACKED[layer] = (key, packed)
    return packed


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place update count; 0 for an inference tensor (made under inference_mode: not tracked)."""
    return 0 if tensor.is_inference() else tensor._version


def _pack(weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    """fbgemm's packed form of a float weight [out, in], quantised symmetrically per output row."""
    scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # [out]
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # torch's deprecation notice of quantized tensors, once per layer
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, axis=0, dtype=torch.qint8)
        return torch.ops.quantized.linear_prepack(qweight, bias)
