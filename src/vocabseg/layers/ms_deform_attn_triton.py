"""Multi-scale deformable attention as one fused Triton kernel (inference on GPU).

The ``grid_sample`` path materialises every sample, [N*M, D, Lq, L*P], before the weighted
sum; this kernel gathers the four corners of each sampling point and accumulates in
registers, in the official CUDA op's order (per level, per point: bilinear sum of the corners,
times the attention weight), in float32 whatever the input dtype. Forward only.

Tested on CPU with ``TRITON_INTERPRET=1`` (set before this module is imported) against the
``grid_sample`` path.
"""
from __future__ import annotations

import itertools

import torch
import triton
import triton.language as tl

BLOCK_Q = 32  # queries per program; each program handles one (image, head) pair


@triton.jit
def _msda_forward(value_ptr, shapes_ptr, starts_ptr, loc_ptr, weight_ptr, out_ptr,
                  num_queries, total_len, heads,
                  HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, LEVELS: tl.constexpr, POINTS: tl.constexpr,
                  BLOCK: tl.constexpr):
    pid_q = tl.program_id(0)
    pid_nm = tl.program_id(1)
    n = pid_nm // heads
    m = pid_nm % heads
    q = pid_q * BLOCK + tl.arange(0, BLOCK)
    q_ok = q < num_queries
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    row = ((n * num_queries + q) * heads + m).to(tl.int64)  # [BLOCK] index into [N, Lq, M]
    acc = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
    for level in tl.static_range(LEVELS):
        height = tl.load(shapes_ptr + 2 * level)
        width = tl.load(shapes_ptr + 2 * level + 1)
        start = tl.load(starts_ptr + level)
        for point in tl.static_range(POINTS):
            sample = row * (LEVELS * POINTS) + level * POINTS + point  # [BLOCK] index into [N, Lq, M, L, P]
            x = tl.load(loc_ptr + 2 * sample, mask=q_ok, other=0.0).to(tl.float32)
            y = tl.load(loc_ptr + 2 * sample + 1, mask=q_ok, other=0.0).to(tl.float32)
            weight = tl.load(weight_ptr + sample, mask=q_ok, other=0.0).to(tl.float32)
            px = x * width - 0.5  # pixel centres at integer coordinates (align_corners=False)
            py = y * height - 0.5
            x0f = tl.floor(px)
            y0f = tl.floor(py)
            fx = px - x0f
            fy = py - y0f
            # clamp before the int cast: far-away points (masked anyway) must not overflow
            x0 = tl.minimum(tl.maximum(x0f, -2.0), width + 1.0).to(tl.int32)
            y0 = tl.minimum(tl.maximum(y0f, -2.0), height + 1.0).to(tl.int32)
            bilinear = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
            for corner in tl.static_range(4):
                dy = corner // 2
                dx = corner % 2
                xx = x0 + dx
                yy = y0 + dy
                inside = q_ok & (xx >= 0) & (xx < width) & (yy >= 0) & (yy < height)
                pixel = (start + yy * width + xx).to(tl.int64)
                offsets = ((n * total_len + pixel) * heads + m) * HEAD_DIM  # [BLOCK] into [N, S, M, D]
                values = tl.load(value_ptr + offsets[:, None] + d[None, :],
                                 mask=inside[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
                corner_weight = (fx if dx == 1 else 1.0 - fx) * (fy if dy == 1 else 1.0 - fy)
                bilinear += corner_weight[:, None] * values
            acc += weight[:, None] * bilinear
    tl.store(out_ptr + row[:, None] * HEAD_DIM + d[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=q_ok[:, None] & d_ok[None, :])


def multi_scale_deformable_attention_triton(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """:func:`vocabseg.layers.ms_deform_attn.grid_sample_deformable_attention` (same shapes) by the
    fused kernel; the result is in ``value``'s dtype, accumulated in float32."""
    batch, total_len, heads, head_dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    shapes = torch.tensor(spatial_shapes, dtype=torch.int32, device=value.device)  # [L, 2]
    first_pixel = itertools.accumulate([h * w for h, w in spatial_shapes][:-1], initial=0)
    starts = torch.tensor(list(first_pixel), dtype=torch.int32, device=value.device)  # [L]
    out = torch.empty(batch, num_queries, heads, head_dim, dtype=value.dtype, device=value.device)
    grid = (triton.cdiv(num_queries, BLOCK_Q), batch * heads)
    _msda_forward[grid](
        value.contiguous(), shapes, starts, sampling_locations.contiguous(), attention_weights.contiguous(), out,
        num_queries, total_len, heads,
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), LEVELS=levels, POINTS=points, BLOCK=BLOCK_Q,
    )
    return out.view(batch, num_queries, heads * head_dim)
