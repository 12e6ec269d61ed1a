"""AdamW with the official FC-CLIP parameter groups, and its learning-rate schedule.

Official rules (detectron2 ``train_net.py``): every trainable parameter gets the
base weight decay, except parameters of normalisation layers (``weight_decay_norm``)
and of ``nn.Embedding`` layers (``weight_decay_embed``), both 0 in the COCO recipe.
Biases are not special-cased. The official backbone LR multiplier (0.1) has nothing
to act on: the CLIP is frozen, so its parameters are not given to the optimizer.

Schedule: linear warmup over ``warmup_iters`` from ``warmup_factor``, then the
rate is multiplied by ``gamma`` at each of ``steps``. The mmseg recipes (Cascade-CLIP) use
mmcv's "poly" policy instead: ``(lr - min_lr)(1 - t / max_iter) ** power + min_lr``, its
linear warmup multiplying that rate the same way (mmcv ``warmup_ratio`` = ``warmup_factor``).

Cascade-CLIP's official groups come out of this module unchanged: mmcv matches its
``custom_keys`` by the first hit in a sorted order, so every trainable parameter (all under
``backbone.`` or ``decode_head.``) gets lr 2e-5 x 10 and weight decay 0.01, norms included;
its presets say so with ``lr 2e-4`` and all three weight decays 0.01.
"""
from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence

import torch
from torch import nn

from vocabseg.errors import ConfigError

NORM_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm,
)  # fmt: skip


def param_groups(model: nn.Module, *, weight_decay: float, weight_decay_norm: float, weight_decay_embed: float,
                 lr: float | None = None, backbone_multiplier: float = 1.0,
                 no_decay_names: Sequence[str] = ()) -> list[dict]:
    """Trainable parameters split into "decay", "norm", "embedding" and "no_decay" groups, each
    also split by whether it sits under a module named "backbone" (lr x ``backbone_multiplier``,
    as detectron2's OVSeg/MaskFormer optimizers; the group's ``lr`` is set when ``lr`` is given).

    Frozen parameters (``requires_grad=False``: the CLIP) are left out. ``no_decay_names``:
    parameters whose name contains one of these get no weight decay (OVSeg: Swin's
    relative_position_bias_table and absolute_pos_embed).
    """
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            kind = _decay_kind(module, param_name, no_decay_names)
            groups.setdefault((kind, "backbone" in module_name and backbone_multiplier != 1.0), []).append(param)
    decays = {"decay": weight_decay, "norm": weight_decay_norm, "embedding": weight_decay_embed, "no_decay": 0.0}
    result = []
    order = ("decay", "norm", "embedding", "no_decay")  # fixed: optimizer states of resumed runs line up
    for (kind, in_backbone), params in sorted(groups.items(), key=lambda item: (item[0][1], order.index(item[0][0]))):
        group: dict = {"name": f"backbone_{kind}" if in_backbone else kind, "params": params,
                       "weight_decay": decays[kind]}
        if lr is not None:
            group["lr"] = lr * (backbone_multiplier if in_backbone else 1.0)
        result.append(group)
    return result


def _decay_kind(module: nn.Module, param_name: str, no_decay_names: Sequence[str]) -> str:
    if any(name in param_name for name in no_decay_names):
        return "no_decay"
    if isinstance(module, NORM_TYPES):
        return "norm"
    return "embedding" if isinstance(module, nn.Embedding) else "decay"


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, weight_decay_norm: float = 0.0,
                    weight_decay_embed: float = 0.0, backbone_multiplier: float = 1.0,
                    no_decay_names: Sequence[str] = ()) -> torch.optim.AdamW:
    """AdamW (torch defaults: betas (0.9, 0.999), eps 1e-8) over the trainable parameters."""
    groups = param_groups(model, weight_decay=weight_decay, weight_decay_norm=weight_decay_norm,
                          weight_decay_embed=weight_decay_embed, lr=lr, backbone_multiplier=backbone_multiplier,
                          no_decay_names=no_decay_names)
    if not groups:
        raise ConfigError("the model has no trainable parameter; check the model section of the preset")
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(iteration: int, *, steps: Sequence[int], gamma: float, warmup_iters: int, warmup_factor: float) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based).

    ``gamma ** (number of steps <= iteration)``, times the linear warmup
    ``warmup_factor * (1 - a) + a`` with ``a = iteration / warmup_iters`` while
    ``iteration < warmup_iters``.
    """
    factor = gamma ** bisect.bisect_right(list(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def poly_lr_factor(iteration: int, *, max_iter: int, power: float, min_factor: float, warmup_iters: int,
                   warmup_factor: float) -> float:
    """mmcv's poly policy with linear warmup, as a multiplier of the base rate at ``iteration``.

    ``min_factor`` is ``min_lr / lr``. Example: ``poly_lr_factor(0, max_iter=10, power=1,
    min_factor=0, warmup_iters=0, warmup_factor=1) == 1.0``; at ``max_iter`` it is ``min_factor``.
    """
    factor = (1 - min_factor) * (1 - min(iteration, max_iter) / max_iter) ** power + min_factor
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, *, steps: Sequence[int], gamma: float, warmup_iters: int,
                    warmup_factor: float, schedule: str = "step", max_iter: int = 0, poly_power: float = 0.9,
                    min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per iteration: iteration ``t`` trains with ``lr * factor(t)``.

    ``schedule``: "step" (:func:`lr_factor`) or "poly" (:func:`poly_lr_factor`; needs ``max_iter``).
    """
    if schedule == "step":
        factor = functools.partial(lr_factor, steps=tuple(steps), gamma=gamma, warmup_iters=warmup_iters,
                                   warmup_factor=warmup_factor)
    elif schedule == "poly":
        base = optimizer.param_groups[0]["lr"]
        factor = functools.partial(poly_lr_factor, max_iter=max(max_iter, 1), power=poly_power,
                                   min_factor=min_lr / base if base else 0.0, warmup_iters=warmup_iters,
                                   warmup_factor=warmup_factor)
    else:
        raise ConfigError(f"solver.schedule={schedule!r}; use step or poly")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def scale_schedule(iters: int, steps: Sequence[int], factor: float) -> tuple[int, tuple[int, ...]]:
    """Shrinks (or stretches) a schedule by ``factor``, keeping where the decays fall.

    Example: ``scale_schedule(368750, (327778, 355092), 0.01) == (3688, (3278, 3551))``.
    """
    if factor <= 0:
        raise ConfigError(f"solver.schedule_scale must be positive, got {factor}")
    return max(1, round(iters * factor)), tuple(max(1, round(s * factor)) for s in steps)
