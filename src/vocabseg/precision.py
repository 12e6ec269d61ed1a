"""Exact and fast inference: what ``InferenceConfig.precision`` switches.

Exact (fp32) runs every family as its reference code does. Fast (bf16) runs the model under
bf16 autocast with channels-last weights: convolutions and matrix products in bf16, while the
families keep the parts that decide masks and classes in float32 (FC-CLIP: deformable
attention sampling, the ensemble). ``vocabseg bench`` prints how far fast strays from exact.
"""
from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # models import this module: no import of them at run time
    from vocabseg.models.protocol import QueryOutput

# Set while a predictor runs a model in fast mode. Models read it (fast_inference()) to relax
# what they keep in float32 under autocast: plain autocast (training AMP, a user's own) does not.
_FAST_INFERENCE = contextvars.ContextVar("vocabseg_fast_inference", default=False)


def fast_inference() -> bool:
    """True inside :func:`inference_precision` in fast mode."""
    return _FAST_INFERENCE.get()


def is_fast(precision: str, device: torch.device) -> bool:
    """bf16 for "bf16", and for "auto" on CUDA (where it roughly halves time and memory)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def set_memory_format(model: nn.Module, channels_last: bool) -> None:
    """Converts 4-D weights to channels-last (or back); a no-op when they already are."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if getattr(model, "_vocabseg_channels_last", False) != channels_last:
        model.to(memory_format=fmt)
        model._vocabseg_channels_last = channels_last  # type: ignore[assignment]  # a plain flag on the module


@contextmanager
def inference_precision(model: nn.Module, device: torch.device, fast: bool) -> Iterator[None]:
    """Runs the block in fast mode (channels-last weights, bf16 autocast) or exactly (fp32)."""
    set_memory_format(model, fast)
    token = _FAST_INFERENCE.set(fast)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            yield
    finally:
        _FAST_INFERENCE.reset(token)


def to_float32(out: QueryOutput) -> QueryOutput:
    """The model's outputs in float32, whatever autocast made them (post-processing math is float32)."""
    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return dataclasses.replace(out, mask_cls=cast(out.mask_cls), mask_logits=cast(out.mask_logits),
                               details={k: cast(v) for k, v in out.details.items()},
                               class_probs=cast(out.class_probs), semantic_scores=cast(out.semantic_scores))
