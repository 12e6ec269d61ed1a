"""nn.Linear views of weights that live elsewhere (a packed q/k/v projection, a projection matrix), built once.

:func:`vocabseg.layers.int8_linear.int8_linear` takes an ``nn.Linear`` and keeps its packed int8
weights beside that object; a weight held as a bare parameter (``in_proj_weight``, CLIP's
``proj``) needs a Linear that stays the same object from call to call, or it is packed again on
every call. The view shares the parameter's storage and version counter, so an in-place update
(``load_state_dict``) is seen and repacked; a replaced parameter gets a new view.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

# owner module -> its views by name (weakly held: they go with the owner, out of its state dict)
_VIEWS: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Linear]] = weakref.WeakKeyDictionary()


def linear_view(owner: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    """An nn.Linear over ``weight`` [out, in] and ``bias`` [out] (no copy), the same object for the same tensors."""
    views = _VIEWS.setdefault(owner, {})
    linear = views.get(name)
    if linear is None or not (_aliases(linear.weight, weight) and _aliases(linear.bias, bias)):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        linear.weight = nn.Parameter(weight.detach(), requires_grad=False)  # detach: same storage and version
        if bias is not None:  # bias=False above left it None
            linear.bias = nn.Parameter(bias.detach(), requires_grad=False)
        views[name] = linear
    return linear


def _aliases(held: torch.Tensor | None, tensor: torch.Tensor | None) -> bool:
    if held is None or tensor is None:
        return held is None and tensor is None
    return (held.data_ptr(), held.shape, held.stride()) == (tensor.data_ptr(), tensor.shape, tensor.stride())
