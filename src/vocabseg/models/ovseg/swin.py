"""Swin Transformer backbone of OVSeg's MaskFormer (the detectron2 ``D2SwinTransformer`` layout).

The network keeps the official padding rules, which change the numbers and so must be exact:

- the image is padded right/bottom with zeros to a multiple of the patch size before the patch conv;
- inside every block the tokens are padded to a multiple of the window size *after* ``norm1``;
  the padded (zero) tokens are not masked out, so they take part in the attention of the
  windows that contain them, and are cropped away after attention;
- the shifted-window mask is built per stage on the padded grid and uses -100 (not -inf);
- patch merging pads odd sizes by one row/column.

Features are kept channels-last (``[B, H, W, C]``) between layers; parameter names equal the
official checkpoint's ``backbone.*`` keys without the prefix.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Value added to attention logits between tokens of different regions of a shifted window.
# The official code uses -100, not -inf; softmax then gives those pairs ~e-100 weight, not 0.
SHIFT_MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a padded grid into non-overlapping windows.

    Args:
        x: Features ``[B, H, W, C]`` with H and W multiples of ``window_size``.
        window_size: Window side length.

    Returns:
        Windows ``[B * nW, window_size * window_size, C]``, row-major over windows and tokens.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, ws * ws, C]`` -> ``[B, H, W, C]``."""
    c = windows.shape[-1]
    nh, nw = height // window_size, width // window_size
    x = windows.view(-1, nh, nw, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def shifted_window_mask(
    height: int, width: int, *, window_size: int, shift_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Attention mask of the shifted windows on a padded ``height x width`` grid.

    After rolling the grid by ``-shift_size``, the last row and column of windows mix tokens
    from up to 3x3 regions that were not neighbours in the image. Tokens of different regions
    get :data:`SHIFT_MASK_VALUE`; padding tokens are *not* a region of their own.

    Args:
        height: Padded grid height (a multiple of ``window_size``).
        width: Padded grid width (a multiple of ``window_size``).
        window_size: Window side length.
        shift_size: Cyclic shift of the shifted blocks.
        device: Where to build the mask.

    Returns:
        Mask ``[nW, ws * ws, ws * ws]`` holding 0 or -100.
    """

    def region(size: int) -> torch.Tensor:  # [size]: 0 before the last window, 1, then 2 in the shifted tail
        pos = torch.arange(size, device=device)
        return (pos >= size - window_size).long() + (pos >= size - shift_size).long()

    ids = 3 * region(height)[:, None] + region(width)[None, :]  # [H, W]
    ids = window_partition(ids[None, :, :, None], window_size).squeeze(-1)  # [nW, N]
    different = ids[:, None, :] != ids[:, :, None]  # [nW, N, N]
    zeros = torch.zeros(different.shape, device=device)
    return zeros.masked_fill(different, SHIFT_MASK_VALUE)


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the ``(2 ws - 1)^2`` bias table for every (query, key) pair of a window: ``[N, N]``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # [2, N]: (row, col) of every token
    delta = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)  # [N, N, 2] in [0, 2ws-2]
    return delta[..., 0] * (2 * window_size - 1) + delta[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, *, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True):
        """Init.

        Args:
            dim: Token channels.
            num_heads: Attention heads (``dim`` must be divisible by it).
            window_size: Window side length.
            qkv_bias: Whether the q/k/v projection has a bias.
        """
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # A fixed function of window_size, but stored in the official checkpoints: keep it persistent.
        self.relative_position_index: torch.Tensor
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """The bias added to the attention logits: ``[heads, N, N]``."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # [N * N, heads]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within each window.

        Args:
            x: Windows ``[B * nW, N, C]`` (window index fastest within each image).
            mask: Additive mask ``[nW, N, N]`` or None.

        Returns:
            ``[B * nW, N, C]``.
        """
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B * nW, heads, N, head_dim]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B * nW, heads, N, N]
        attn = attn + self.position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one draw per sample
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class Mlp(nn.Module):
    """Two linear layers with GELU between them."""

    def __init__(self, *, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted) window attention, then an MLP, each with a residual."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ):
        """Init.

        Args:
            dim: Token channels.
            num_heads: Attention heads.
            window_size: Window side length.
            shift_size: Cyclic shift before partitioning (0: regular windows).
            mlp_ratio: MLP hidden width over ``dim``.
            qkv_bias: Whether the q/k/v projection has a bias.
            drop_path: Stochastic-depth probability of both residual branches (training only).
        """
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, num_heads=num_heads, window_size=window_size, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Tokens ``[B, H, W, C]``.
            shift_mask: The stage's mask ``[nW, N, N]`` on the padded grid (used only when shifted).

        Returns:
            ``[B, H, W, C]``.
        """
        _, h, w, c = x.shape
        ws, s = self.window_size, self.shift_size
        y = self.norm1(x)
        # Zero padding after the norm; the padded tokens are attended to, then cropped.
        y = F.pad(y, (0, 0, 0, -w % ws, 0, -h % ws))  # [B, Hp, Wp, C]
        hp, wp = y.shape[1:3]
        if s > 0:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(window_partition(y, ws), shift_mask if s > 0 else None)  # [B * nW, N, C]
        y = window_reverse(y, ws, hp, wp)
        if s > 0:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat + LayerNorm + linear: halves the grid, doubles the channels."""

    def __init__(self, *, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]`` (odd sizes padded by one zero row/column)."""
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the official checkpoints: (row, col) offsets (0,0), (1,0), (0,1), (1,1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating regular and shifted windows, then an optional patch merging."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: Sequence[float] = (),
        downsample: bool = True,
    ):
        """Init.

        Args:
            dim: Token channels of the stage.
            depth: Number of blocks; odd-indexed blocks are shifted by ``window_size // 2``.
            num_heads: Attention heads.
            window_size: Window side length.
            mlp_ratio: MLP hidden width over ``dim``.
            qkv_bias: Whether the q/k/v projections have a bias.
            drop_path: Per-block stochastic-depth probabilities (empty: all 0).
            downsample: Whether a :class:`PatchMerging` ends the stage.
        """
        super().__init__()
        rates = list(drop_path) or [0.0] * depth
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=rates[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim=dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, H, W, C]`` -> (stage output ``[B, H, W, C]``, merged ``[B, H', W', 2C]`` or None)."""
        h, w = x.shape[1:3]
        ws = self.window_size
        mask = None
        if self.shift_size > 0 and len(self.blocks) > 1:
            mask = shifted_window_mask(
                h + -h % ws, w + -w % ws, window_size=ws, shift_size=self.shift_size, device=x.device
            ).to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return x, self.downsample(x) if self.downsample is not None else None


class PatchEmbed(nn.Module):
    """Non-overlapping patch convolution followed by LayerNorm."""

    def __init__(self, *, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, ceil(H/p), ceil(W/p), C]`` (image zero-padded right/bottom)."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.patch_size, 0, -h % self.patch_size))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinTransformer(nn.Module):
    """Hierarchical Swin backbone returning ``res2..res5`` (strides 4, 8, 16, 32), each LayerNorm-ed.

    Attributes:
        out_channels: Channels per output name.
        strides: Stride per output name.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        patch_size: int = 4,
        in_channels: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ):
        """Init.

        Args:
            embed_dim: Channels of the first stage; each later stage doubles them.
            depths: Blocks per stage.
            num_heads: Attention heads per stage.
            window_size: Window side length (all stages).
            patch_size: Patch side length of the embedding (the stride of ``res2``).
            in_channels: Image channels.
            mlp_ratio: MLP hidden width over the stage's channels.
            qkv_bias: Whether the q/k/v projections have a bias.
            drop_path_rate: Stochastic depth of the last block, rising linearly from 0 over all blocks.
        """
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_channels=in_channels, embed_dim=embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # cpu: works under a meta device
        dims = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList()
        for i, (dim, depth, heads) in enumerate(zip(dims, depths, num_heads)):
            first = sum(depths[:i])
            self.layers.append(SwinStage(
                dim=dim,
                depth=depth,
                num_heads=heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=rates[first:first + depth],
                downsample=i < len(depths) - 1,
            ))
        for i, dim in enumerate(dims):  # named norm0..norm3 as in the checkpoints
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.out_channels = {f"res{i + 2}": dim for i, dim in enumerate(dims)}
        self.strides = {f"res{i + 2}": patch_size * 2**i for i in range(len(dims))}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale features.

        Args:
            images: Normalised images ``[B, 3, H, W]`` (any size; 32-divisible in OVSeg).

        Returns:
            ``{"res2": [B, C, ceil(H/4), ceil(W/4)], "res3": ..., "res5": [B, 8C, ., .]}``; each level
            is ``ceil`` of the previous over 2.
        """
        x: torch.Tensor | None = self.patch_embed(images)  # [B, H/4, W/4, C]
        features = {}
        for i, stage in enumerate(self.layers):
            assert x is not None  # only the last stage returns no merged grid
            out, x = stage(x)
            out = getattr(self, f"norm{i}")(out)
            features[f"res{i + 2}"] = out.permute(0, 3, 1, 2).contiguous()
        return features


def swin_base(*, window_size: int = 12, drop_path_rate: float = 0.0) -> SwinTransformer:
    """Swin-B as configured in OVSeg (``ovseg_swinB_vitL_bs32_120k.yaml``, 384 pretraining, window 12).

    Args:
        window_size: Window side length.
        drop_path_rate: Stochastic depth (the official training uses 0.3; inactive in eval).
    """
    return SwinTransformer(
        embed_dim=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32),
        window_size=window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_path_rate=drop_path_rate,
    )
