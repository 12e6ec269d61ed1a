"""DeepLab-style ResNet ("R101c") backbone of OVSeg's MaskFormer (detectron2 layout).

Deep stem (three 3x3 convs, then a 3x3/2 max pool), bottleneck stages with the stride on the
3x3 conv, frozen batch norm everywhere, and a stride-2 ``res5`` whose three blocks use the
multi-grid dilations (1, 2, 4). Parameter names equal the official checkpoint's ``backbone.*``
keys without the prefix (``stem.conv1.weight``, ``res2.0.shortcut.norm.running_mean``, ...).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.conv import Conv2dNorm


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms (buffers, never trained).

    ``y = x * (w / sqrt(var + eps)) + (b - mean * w / sqrt(var + eps))`` per channel.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight: torch.Tensor
        self.bias: torch.Tensor
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)  # identity with eps added

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            # F.batch_norm's backward would also compute gradients for the frozen terms.
            scale = self.weight * (self.running_var + self.eps).rsqrt()  # [C]
            shift = self.bias - self.running_mean * scale
            return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)
        # Without gradients the fused kernel is faster (and is what the official code runs).
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


def conv_frozen_bn(in_channels: int, out_channels: int, *, kernel_size: int, stride: int = 1,
                   dilation: int = 1) -> Conv2dNorm:
    """Bias-free convolution and its frozen batch norm (``<name>.weight``, ``<name>.norm.*``).

    A 3x3 is padded by ``dilation``, so stride 1 keeps the size.
    """
    return Conv2dNorm(in_channels, out_channels, kernel_size, stride=stride, padding=dilation * (kernel_size - 1) // 2,
                      dilation=dilation, bias=False, norm=FrozenBatchNorm2d(out_channels))


class DeepLabStem(nn.Module):
    """3x3/2 conv (C/2), 3x3 conv (C/2), 3x3 conv (C), each with norm and ReLU, then a 3x3/2 max pool."""

    def __init__(self, *, in_channels: int = 3, out_channels: int = 128):
        super().__init__()
        self.conv1 = conv_frozen_bn(in_channels, out_channels // 2, kernel_size=3, stride=2)
        self.conv2 = conv_frozen_bn(out_channels // 2, out_channels // 2, kernel_size=3)
        self.conv3 = conv_frozen_bn(out_channels // 2, out_channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, C, ceil(H/4), ceil(W/4)]`` (for H, W multiples of 4: exactly H/4, W/4)."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 residual block; projection shortcut when channels change."""

    def __init__(
        self, *, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int = 1, dilation: int = 1
    ):
        """Init.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            bottleneck_channels: Channels of the 3x3 conv.
            stride: Stride of the 3x3 conv and of the shortcut.
            dilation: Dilation (and padding) of the 3x3 conv.
        """
        super().__init__()
        projection = in_channels != out_channels  # the first block of each stage
        self.shortcut = conv_frozen_bn(in_channels, out_channels, kernel_size=1, stride=stride) if projection else None
        self.conv1 = conv_frozen_bn(in_channels, bottleneck_channels, kernel_size=1)
        self.conv2 = conv_frozen_bn(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride,
                                    dilation=dilation)
        self.conv3 = conv_frozen_bn(bottleneck_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        y = self.conv3(y)
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class DeepLabResNet(nn.Module):
    """ResNet with a deep stem returning ``res2..res5`` (strides 4, 8, 16, 32).

    Attributes:
        out_channels: Channels per output name.
        strides: Stride per output name.
    """

    def __init__(
        self,
        *,
        blocks: Sequence[int] = (3, 4, 23, 3),
        stem_channels: int = 128,
        res2_channels: int = 256,
        bottleneck_channels: int = 64,
        res5_multi_grid: Sequence[int] = (1, 2, 4),
        in_channels: int = 3,
    ):
        """Init.

        Args:
            blocks: Bottleneck blocks per stage (res2..res5).
            stem_channels: Output channels of the stem.
            res2_channels: Output channels of res2; each later stage doubles them.
            bottleneck_channels: 3x3 width of res2; each later stage doubles it.
            res5_multi_grid: Dilation of each res5 block (one per block).
            in_channels: Image channels.
        """
        super().__init__()
        if len(blocks) != 4 or len(res5_multi_grid) != blocks[3]:
            raise ValueError(f"need 4 stages and one res5 dilation per res5 block, got {blocks=} {res5_multi_grid=}")
        self.stem = DeepLabStem(in_channels=in_channels, out_channels=stem_channels)
        channels_in, channels_out, width = stem_channels, res2_channels, bottleneck_channels
        self.out_channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        for i, num_blocks in enumerate(blocks):
            name = f"res{i + 2}"
            dilations = list(res5_multi_grid) if i == 3 else [1] * num_blocks
            self.add_module(name, nn.Sequential(*(
                Bottleneck(
                    in_channels=channels_in if j == 0 else channels_out,
                    out_channels=channels_out,
                    bottleneck_channels=width,
                    stride=2 if (j == 0 and i > 0) else 1,  # res2 keeps the stem's stride 4
                    dilation=dilations[j],
                )
                for j in range(num_blocks)
            )))
            self.out_channels[name] = channels_out
            self.strides[name] = 4 * 2**i
            channels_in, channels_out, width = channels_out, 2 * channels_out, 2 * width

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale features.

        Args:
            images: Normalised images ``[B, 3, H, W]`` (32-divisible in OVSeg).

        Returns:
            ``{"res2": [B, 256, H/4, W/4], ..., "res5": [B, 2048, H/32, W/32]}`` for the R101c widths.
        """
        x = self.stem(images)
        features = {}
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            features[name] = x
        return features


def resnet101_deeplab(*, res5_multi_grid: Sequence[int] = (1, 2, 4)) -> DeepLabResNet:
    """R101c as configured in OVSeg (``ovseg_R101c_vitB_bs32_120k.yaml``: deeplab stem, FrozenBN, res5 stride 2).

    Args:
        res5_multi_grid: Dilations of the three res5 blocks.
    """
    return DeepLabResNet(
        blocks=(3, 4, 23, 3),
        stem_channels=128,
        res2_channels=256,
        bottleneck_channels=64,
        res5_multi_grid=res5_multi_grid,
    )
