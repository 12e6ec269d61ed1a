"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The official implementation needs a compiled CUDA op; here sampling is done
with ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``), which
is what that op computes, so the module runs unchanged on CPU and GPU.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.errors import ConfigError
from vocabseg.precision import fast_inference


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The fused Triton kernel on CUDA at inference, else :func:`grid_sample_deformable_attention`,
    or :func:`gather_deformable_attention` in fast mode off CUDA.

    Shapes as in :func:`grid_sample_deformable_attention`; training (autograd) and exact mode on
    the CPU take the ``grid_sample`` path (the reference's numbers bit for bit).
    """
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (value, sampling_locations, attention_weights))
    kernel = _triton_kernel() if value.is_cuda and not needs_grad else None
    if kernel is not None:
        return kernel(value, spatial_shapes, sampling_locations, attention_weights)
    if fast_inference() and not needs_grad and _fits_gather(value, spatial_shapes):
        return gather_deformable_attention(value, spatial_shapes, sampling_locations, attention_weights)
    return grid_sample_deformable_attention(value, spatial_shapes, sampling_locations, attention_weights)


@functools.cache
def _triton_kernel():
    """The Triton implementation, or None where Triton is not installed."""
    try:
        from vocabseg.layers.ms_deform_attn_triton import multi_scale_deformable_attention_triton
    except ImportError:
        return None
    return multi_scale_deformable_attention_triton


def grid_sample_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Samples every level at the given locations and takes the weighted sum.

    Args:
        value: [N, S, M, D] values of all levels flattened (S = sum H_l * W_l),
            M heads of D channels.
        spatial_shapes: (H_l, W_l) of each of the L levels, in the order of ``value``.
        sampling_locations: [N, Lq, M, L, P, 2] normalised (x, y) in [0, 1].
        attention_weights: [N, Lq, M, L, P], softmax-normalised over (L, P).

    Returns:
        [N, Lq, M * D]
    """
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    per_level_values = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for level, (height, width) in enumerate(spatial_shapes):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        level_value = per_level_values[level].flatten(2).transpose(1, 2)
        level_value = level_value.reshape(batch * heads, head_dim, height, width)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # [N*M, D, Lq, P]
        sampled.append(
            F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, num_queries, num_levels * num_points)
    # One sum over all L*P samples (not per level): the reference's summation order, so outputs
    # match it bit for bit; per-level partial sums drift by ~1e-7, which the decoder amplifies.
    samples = torch.stack(sampled, dim=-2).flatten(-2)  # [N*M, D, Lq, L*P]
    output = samples.mul_(weights).sum(-1) if not samples.requires_grad else (samples * weights).sum(-1)  # [N*M, D, Lq]
    return output.view(batch, heads * head_dim, num_queries).transpose(1, 2).contiguous()


_PAD_BEFORE, _PAD_AFTER = 1, 2  # zero border of each level in the gather table (see below)


def _fits_gather(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> bool:
    """Whether the gather table's row indices fit int32 and its pixel indices float32 exactly."""
    pad = _PAD_BEFORE + _PAD_AFTER
    pixels = sum((h + pad) * (w + pad) for h, w in spatial_shapes)
    return pixels < 2**24 and value.shape[0] * pixels * value.shape[2] < 2**31


def gather_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The same sums as :func:`grid_sample_deformable_attention`, as one weighted row gather.

    Each (query, head) output is a weighted sum of L*P*4 value rows (4 bilinear corners per
    point), which ``embedding_bag`` computes over rows of D contiguous channels; ``grid_sample``
    reads channels H*W apart instead. About 4x faster on CPU, equal to ~1e-6 (another summation
    order), so fast mode uses it. Levels get a zero border (1 pixel before, 2 after) and
    positions are clamped to it: a corner off the map reads zero, with no validity masks.
    Shapes as in :func:`grid_sample_deformable_attention`. A non-finite location (a broken
    checkpoint) has no row to read: such calls take the ``grid_sample`` path, whose output is NaN.
    """
    if not bool(torch.isfinite(sampling_locations).all()):  # note: a host sync, free on the CPU
        return grid_sample_deformable_attention(value, spatial_shapes, sampling_locations, attention_weights)
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    table, starts = _bordered_levels(value, spatial_shapes)  # [N, S', M*D]
    size = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=sampling_locations.dtype,
                        device=value.device)  # [L, 2] as (W, H)
    pixel = (sampling_locations * size[:, None] - 0.5).clamp_(min=-1.0)  # pixel centres at integers
    pixel = torch.minimum(pixel, size[:, None])  # further out: all weight on zero-border corners
    corner = pixel.floor()  # [N, Lq, M, L, P, 2] top-left corner
    frac = pixel - corner
    along_x = torch.stack([1 - frac[..., 0], frac[..., 0]], -1) * attention_weights[..., None]  # [..., P, 2]
    along_y = torch.stack([1 - frac[..., 1], frac[..., 1]], -1)
    weights = (along_y[..., :, None] * along_x[..., None, :]).flatten(-2)  # [N, Lq, M, L, P, 4]
    rows = _corner_rows(corner, size[:, 0] + _PAD_BEFORE + _PAD_AFTER, starts, table.shape[1], heads)
    out = F.embedding_bag(rows.view(-1, num_levels * num_points * 4), table.reshape(-1, head_dim),
                          per_sample_weights=weights.reshape(-1, num_levels * num_points * 4).to(table.dtype),
                          mode="sum")  # [N*Lq*M, D]
    return out.view(batch, num_queries, heads * head_dim)


def _bordered_levels(value: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, list[int]]:
    """Values [N, S, M, D] as zero-bordered levels [N, S', M*D] and each level's first row."""
    batch, _, heads, head_dim = value.shape
    levels = value.split([h * w for h, w in spatial_shapes], dim=1)
    border = (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER)  # channels, width, height
    bordered = [F.pad(level.reshape(batch, h, w, heads * head_dim), border).flatten(1, 2)
                for level, (h, w) in zip(levels, spatial_shapes)]
    starts = [0]
    for part in bordered[:-1]:
        starts.append(starts[-1] + part.shape[1])
    return torch.cat(bordered, dim=1), starts


def _corner_rows(corner: torch.Tensor, widths: torch.Tensor, starts: list[int], rows_per_image: int,
                 heads: int) -> torch.Tensor:
    """int32 table rows [N, Lq, M, L, P, 4] of the 4 corners; the table's rows are (image, pixel, head)."""
    batch, device = corner.shape[0], corner.device
    start = torch.tensor(starts, dtype=corner.dtype, device=device)  # [L]
    pixel = (corner[..., 1] + _PAD_BEFORE) * widths[:, None] + (corner[..., 0] + _PAD_BEFORE) + start[:, None]
    image = torch.arange(batch, dtype=torch.int32, device=device).view(batch, 1, 1, 1, 1) * rows_per_image
    head = torch.arange(heads, dtype=torch.int32, device=device).view(1, 1, heads, 1, 1)
    rows = (pixel.int() + image) * heads + head  # [N, Lq, M, L, P] top-left corner's row
    steps = torch.stack([torch.zeros_like(widths), torch.ones_like(widths), widths, widths + 1], -1)  # [L, 4]
    return rows[..., None] + (steps * heads).int()[:, None, :]


class MSDeformAttn(nn.Module):
    """Deformable attention over several feature levels with reference points."""

    def __init__(self, *, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Offsets start on a ring of directions, one per head, growing with the point index.
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """
        Args:
            query: [N, Lq, C] queries (with positional embedding added).
            reference_points: [N, Lq, L, 2] normalised (x, y) per level.
            input_flatten: [N, S, C] all levels flattened.
            spatial_shapes: (H_l, W_l) per level.

        Returns:
            [N, Lq, C]
        """
        batch, num_queries, _ = query.shape
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten).view(batch, -1, heads, self.d_model // heads)
        # Where to sample and with which weights stays float32 under autocast (fast mode): a bf16
        # offset of 30 pixels is off by a tenth of one. Exact mode runs float32 throughout.
        with torch.autocast(query.device.type, enabled=False):
            query = query.float()
            offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
            weights = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
            weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
            # offsets are in pixels of each level: normalise by (W_l, H_l)
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
            # CPU: float32 sampling (neither grid_sample nor the gather has a fast bf16 path); CUDA: the
            # kernel reads bf16
            value = value if value.is_cuda else value.float()
            output = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)
        return self.output_proj(output)
