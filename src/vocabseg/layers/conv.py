"""A convolution with its norm and activation, named the way detectron2 checkpoints store it."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Conv2dNorm(nn.Conv2d):
    """``activation(norm(conv(x)))`` whose parameters are ``weight``/``bias`` and ``norm.*``.

    detectron2's ``Conv2d`` keeps the norm inside the convolution module, so official
    checkpoints name it ``<conv>.norm.weight``; subclassing keeps those names one to one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, bias: bool = True, norm: nn.Module | None = None,
                 activation: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         bias=bias)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill``: Caffe2's Xavier (kaiming uniform, a=1), zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
