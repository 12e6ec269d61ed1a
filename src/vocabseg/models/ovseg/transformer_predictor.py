"""MaskFormer's transformer predictor with OVSeg's open-vocabulary class head.

A DETR decoder (post-norm, no encoder layers) turns learned queries into per-query
embeddings by attending to the projected res5 map; each query gets a mask (dot product with
the pixel decoder's mask features) and a class embedding in CLIP's text space, which the
model compares with the vocabulary's text embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vocabseg.layers.conv import c2_xavier_fill
from vocabseg.layers.mlp import MLP
from vocabseg.layers.position_encoding import sine_position_encoding
from vocabseg.layers.transformer import AttentionBlock, FeedForwardBlock


@dataclass
class PredictorOutput:
    """Every decoder layer's predictions; the last layer is the final answer."""

    class_embeds: torch.Tensor  # [L, B, Q, D] query embeddings in CLIP's text space (not normalised)
    mask_logits: torch.Tensor  # [L, B, Q, H/4, W/4]


class DETRDecoderLayer(nn.Module):
    """Self-attention between queries, cross-attention to the image, FFN; each post-norm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = AttentionBlock(dim, heads)
        self.cross_attn = AttentionBlock(dim, heads)
        self.ffn = FeedForwardBlock(dim, ffn_dim)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor) -> torch.Tensor:
        queries = self.self_attn(queries, query_pos, queries, query_pos)
        queries = self.cross_attn(queries, query_pos, memory, memory_pos)
        return self.ffn(queries)


class TransformerPredictor(nn.Module):
    """DETR decoder over res5 with mask and CLIP-space class heads (OVSeg's "OpenVocab" predictor)."""

    def __init__(self, *, in_channels: int, hidden_dim: int = 256, num_queries: int = 100, nheads: int = 8,
                 dim_feedforward: int = 2048, dec_layers: int = 6, mask_dim: int = 256, embed_dim: int = 768,
                 embed_hidden_dim: int = 1024, embed_layers: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(DETRDecoderLayer(hidden_dim, nheads, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
        c2_xavier_fill(self.input_proj)
        self.class_embed = MLP(hidden_dim, embed_hidden_dim, embed_dim, embed_layers)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(self, res5: torch.Tensor, mask_features: torch.Tensor, *, last_only: bool = False) -> PredictorOutput:
        """
        Args:
            res5: [B, C5, h, w] backbone features at stride 32 (padding included, as the reference).
            mask_features: [B, mask_dim, H/4, W/4].
            last_only: heads on the last layer only (L = 1): fast inference, where the earlier
                layers' predictions (deep supervision) are not read; their masks were 5/6 of the heads' work.
        """
        batch = res5.shape[0]
        hidden = self.input_proj.out_channels
        memory_pos = sine_position_encoding(res5, hidden // 2).flatten(2).transpose(1, 2)  # [B, hw, C]
        memory = self.input_proj(res5).flatten(2).transpose(1, 2)  # [B, hw, C]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)  # [B, Q, C]
        queries = torch.zeros_like(query_pos)
        stages = []
        for layer in self.layers:
            queries = layer(queries, query_pos, memory, memory_pos)
            stages.append(self.decoder_norm(queries))  # every stage through the shared final norm
        decoded = torch.stack(stages[-1:] if last_only else stages)  # [L, B, Q, C]
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(decoded), mask_features)
        return PredictorOutput(self.class_embed(decoded), masks)
