"""Exact and fast inference: what ``InferenceConfig.precision`` switches, decided in one place.

Exact ("fp32") runs every family as its reference code does. Fast mode turns on the algorithms
that trade the last bits for speed (gather deformable attention, fused attention, semantic
scores at mask resolution, fewer region crops) and, only where the device computes bf16
natively, bf16 autocast with channels-last weights; on x86 CPUs, int8 linear layers where a
family measured its labels to hold (``fast_int8()``); the families keep the parts that decide
masks and classes in float32. Emulated bf16 (an AVX2-only CPU) is 3-10x slower than float32,
so "fast" picks by hardware (:func:`choose_recipe`); "bf16" forces bf16. ``vocabseg bench``
prints the decision and how far fast strays from exact.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from vocabseg.layers.int8_linear import int8_available

if TYPE_CHECKING:  # models import this module: no import of them at run time
    from vocabseg.models.protocol import QueryOutput

# Set while a predictor runs a model in fast mode. Models read it (fast_inference()) to relax
# what they keep in float32 under autocast: plain autocast (training AMP, a user's own) does not.
_FAST_INFERENCE = contextvars.ContextVar("vocabseg_fast_inference", default=False)
# Set in fast mode where int8 linears run natively (x86 CPUs): families read it (fast_int8()) for the
# layers where they measured their labels to hold with them.
_FAST_INT8 = contextvars.ContextVar("vocabseg_fast_int8", default=False)


def fast_inference() -> bool:
    """True inside :func:`inference_precision` in fast mode."""
    return _FAST_INFERENCE.get()


def fast_int8() -> bool:
    """True inside :func:`inference_precision` in fast mode on a device with native int8 linears, while no
    gradients are taken (int8 products have none: a user's grad-enabled call runs the float layers)."""
    return _FAST_INT8.get() and not torch.is_grad_enabled()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a predictor runs its model: what :func:`choose_recipe` decided, and why."""

    fast: bool  # the fast algorithms (they need no bf16)
    bf16: bool  # bf16 autocast and a bf16 text tower
    channels_last: bool  # channels-last weights: with bf16 only. In float32 (AVX2 kernels) it made the
    # FC-CLIP RN50 backbone 0.84x but Cascade-CLIP's ViT 1.05x, and fast must never be slower than exact
    reason: str  # one line for `vocabseg bench`
    int8: bool = False  # int8 linears (layers/int8_linear.py) where a family measured them to hold

    def describe(self) -> str:
        if not self.fast:
            return f"exact: fp32, {self.reason}"
        return f"fast: {'bf16' if self.bf16 else 'fp32'} recipe{' + int8 linears' if self.int8 else ''}, {self.reason}"


def choose_recipe(precision: str, device: torch.device) -> Recipe:
    """The one rule: "fp32" exact; "bf16" fast in bf16 (forced); "fast" fast, in bf16 only where
    the device computes it natively; "auto" as "fast" on CUDA and exact elsewhere."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return Recipe(False, False, False, "the reference's numbers" if precision == "fp32" else
                      "the default off CUDA (--fast for fast mode)")
    if precision == "bf16":
        return Recipe(True, True, True, "bf16 forced by precision=bf16")
    native, why = native_bf16(device)
    int8, _ = int8_available(device)
    return Recipe(True, native, native, why, int8=int8)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bf16 natively, a phrase saying why).

    CPU: torch's kernels must be the AVX-512 ones (``ATEN_CPU_CAPABILITY`` lowers them), the CPU
    must have AVX512_BF16 or AMX, and oneDNN must be allowed to use them (``ONEDNN_MAX_CPU_ISA``).
    """
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, "native bf16 on this GPU" if supported else "no native bf16 on this GPU"
    if device.type != "cpu":
        return False, f"bf16 not known to be native on {device.type}"
    return _cpu_native_bf16(torch.backends.cpu.get_cpu_capability(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


@functools.cache
def _cpu_native_bf16(capability: str, onednn_isa: str) -> tuple[bool, str]:
    flags = _cpu_bf16_flags()
    if not flags:
        return False, "no native bf16 on this CPU"
    if not capability.startswith("AVX512"):
        return False, f"no native bf16 on this CPU with {capability} kernels (ATEN_CPU_CAPABILITY)"
    if onednn_isa and not _onednn_bf16_allowed(onednn_isa):
        return False, f"no native bf16 on this CPU with ONEDNN_MAX_CPU_ISA={onednn_isa}"
    return True, f"native bf16 on this CPU ({', '.join(flags)})"


def _onednn_bf16_allowed(isa: str) -> bool:
    """Whether oneDNN's ISA cap (e.g. AVX2, AVX512_CORE_BF16, AVX512_CORE_AMX, ALL) includes bf16."""
    isa = isa.upper()
    return isa == "ALL" or "BF16" in isa or "AMX" in isa or "AVX10" in isa


def _cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 features (AVX512_BF16, AMX), from torch's cpuinfo or /proc/cpuinfo."""
    probes = {"AVX512_BF16": "_is_avx512_bf16_supported", "AMX": "_is_amx_tile_supported"}
    found = [name for name, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()]
    if found or all(hasattr(torch.cpu, probe) for probe in probes.values()):
        return found
    try:
        with open("/proc/cpuinfo") as info:
            words = set(info.read().split())
    except OSError:
        return []
    return [name for name, flag in (("AVX512_BF16", "avx512_bf16"), ("AMX", "amx_bf16")) if flag in words]


def is_fast(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` runs fast mode on ``device`` (see :func:`choose_recipe`)."""
    return choose_recipe(precision, device).fast


def set_memory_format(model: nn.Module, channels_last: bool) -> None:
    """Converts 4-D weights to channels-last (or back); a no-op when they already are."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if getattr(model, "_vocabseg_channels_last", False) != channels_last:
        model.to(memory_format=fmt)
        model._vocabseg_channels_last = channels_last  # type: ignore[assignment]  # a plain flag on the module


@contextmanager
def inference_precision(model: nn.Module, device: torch.device, recipe: Recipe) -> Iterator[None]:
    """Runs the block by ``recipe``: fast algorithms on or off, bf16 autocast and channels-last or not."""
    set_memory_format(model, recipe.channels_last)
    token, int8_token = _FAST_INFERENCE.set(recipe.fast), _FAST_INT8.set(recipe.fast and recipe.int8)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
            yield
    finally:
        _FAST_INT8.reset(int8_token)
        _FAST_INFERENCE.reset(token)


def to_float32(out: QueryOutput) -> QueryOutput:
    """The model's outputs in float32, whatever autocast made them (post-processing math is float32)."""
    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return dataclasses.replace(out, mask_cls=cast(out.mask_cls), mask_logits=cast(out.mask_logits),
                               details={k: cast(v) for k, v in out.details.items()},
                               class_probs=cast(out.class_probs), semantic_scores=cast(out.semantic_scores))
