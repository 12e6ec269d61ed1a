"""Post-norm transformer blocks of the DETR/Mask2Former decoders."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class AttentionBlock(nn.Module):
    """Post-norm multi-head attention with residual connection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x, query_pos, memory, memory_pos, attn_mask=None):
        # At inference use PyTorch's explicit attention math (the need_weights path), as the
        # reference implementation does: the fused kernel differs by ~1e-7 per layer, and masked
        # attention turns such differences into flipped mask pixels (1e-3 in the final logits).
        # Training keeps the faster fused kernel.
        out = self.attn(x + query_pos, memory + memory_pos, memory, attn_mask=attn_mask,
                        need_weights=not self.training)[0]
        return self.norm(x + out)


class FeedForwardBlock(nn.Module):
    """Post-norm ReLU MLP with residual connection."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.norm = nn.LayerNorm(dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x):
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))
