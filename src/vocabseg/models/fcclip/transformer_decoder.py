"""Masked-attention transformer decoder (Mask2Former) with the FC-CLIP class head."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.layers.mlp import MLP
from vocabseg.layers.pooling import mask_pool
from vocabseg.layers.position_encoding import sine_position_encoding
from vocabseg.layers.transformer import AttentionBlock, FeedForwardBlock
from vocabseg.precision import fast_inference
from vocabseg.text.classifier import TextClassifier


@dataclass
class DecoderOutput:
    """Raw predictions of every decoder stage; the last stage is the final answer."""

    pred_logits: torch.Tensor  # [B, Q, K + 1] in-vocabulary class logits, void last
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits
    aux_outputs: list[dict[str, torch.Tensor]]  # earlier stages, for deep supervision


class DecoderLayer(nn.Module):
    """Masked cross-attention to one feature level, then self-attention, then FFN."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.cross_attn = AttentionBlock(dim, heads)
        self.self_attn = AttentionBlock(dim, heads)
        self.ffn = FeedForwardBlock(dim, ffn_dim)

    def forward(self, queries, query_pos, memory, memory_pos, attn_mask):
        # Fast mode (vocabseg.precision) takes the fused attention kernel; exact mode and
        # training the reference's attention inside AttentionBlock.
        attend = fused_attention if fast_inference() and not self.training else _block_attention
        queries = attend(self.cross_attn, queries, query_pos, memory, memory_pos, attn_mask)
        queries = attend(self.self_attn, queries, query_pos, queries, query_pos, None)
        return self.ffn(queries)


def _block_attention(block: AttentionBlock, x, query_pos, memory, memory_pos, blocked):
    return block(x, query_pos, memory, memory_pos, blocked)


def fused_attention(block: AttentionBlock, x: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                    memory_pos: torch.Tensor, blocked: torch.Tensor | None) -> torch.Tensor:
    """``block``'s output computed by ``F.scaled_dot_product_attention`` (fused kernels).

    Args:
        x, query_pos: [B, Q, C]; memory, memory_pos: [B, S, C].
        blocked: [B * heads, Q, S] True where a query may not attend (nn.MultiheadAttention's
            convention), or None. A row blocked everywhere attends everywhere instead: a softmax
            over no key is NaN (the decoder's own masks never do this; the guard makes it local).
    """
    attn = block.attn
    batch, num_queries, dim = x.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split(t: torch.Tensor) -> torch.Tensor:  # [B, L, C] -> [B, heads, L, C / heads]
        return t.view(batch, t.shape[1], heads, dim // heads).transpose(1, 2)

    q = split(F.linear(x + query_pos, w_q, b_q))
    k = split(F.linear(memory + memory_pos, w_k, b_k))
    v = split(F.linear(memory, w_v, b_v))
    allowed = None
    if blocked is not None:
        allowed = ~blocked.view(batch, heads, num_queries, -1)  # SDPA's boolean mask: True = may attend
        allowed = allowed | ~allowed.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B, heads, Q, C / heads]
    out = attn.out_proj(out.transpose(1, 2).reshape(batch, num_queries, dim))
    return block.norm(x + out)


class MaskedTransformerDecoder(nn.Module):
    """Learnable queries refined over a round-robin of three feature levels.

    Each stage predicts masks (dot product with the mask features) and in-vocabulary
    class logits: the query is mask-pooled over the mask features, projected into
    CLIP space and compared with the text classifier by cosine similarity.
    """

    def __init__(
        self,
        *,
        hidden_dim: int = 256,
        num_queries: int = 250,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        mask_dim: int = 256,
        clip_embed_dim: int = 768,
        num_levels: int = 3,
    ):
        super().__init__()
        self.num_heads, self.num_levels = nheads, num_levels
        self.layers = nn.ModuleList(DecoderLayer(hidden_dim, nheads, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.mask_pooling_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.class_embed = MLP(hidden_dim, hidden_dim, clip_embed_dim, 3)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(
        self,
        multi_scale: list[torch.Tensor],
        mask_features: torch.Tensor,
        classifier: TextClassifier,
        void: torch.Tensor,
    ) -> DecoderOutput:
        """
        Args:
            multi_scale: three levels [B, C, h_l, w_l], coarse to fine.
            mask_features: [B, mask_dim, H/4, W/4].
            classifier: the vocabulary's text embeddings (K classes).
            void: [1, D] unit-norm "no object" embedding (the last logit column).
        """
        # The two per-layer products read the features in two layouts: the mask product as [C, h*w]
        # rows, the mask pooling as [h*w, C]. Each is made once here instead of copied in every layer.
        features = (mask_features.contiguous(), mask_features.contiguous(memory_format=torch.channels_last))
        memories, memory_pos, sizes = [], [], []
        for level, x in enumerate(multi_scale):
            sizes.append(x.shape[-2:])
            memory_pos.append(sine_position_encoding(x, x.shape[1] // 2).flatten(2).transpose(1, 2))
            memories.append(x.flatten(2).transpose(1, 2) + self.level_embed.weight[level][None, None, :])
        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        queries = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)

        if fast_inference() and not self.training:
            return self._fast_forward(queries, query_pos, memories, memory_pos, sizes, features, classifier, void)
        head = lambda q, size: self._predict(q, features, classifier, void, size)
        logits, masks, attn_mask = head(queries, sizes[0])
        all_logits, all_masks = [logits], [masks]
        for i, layer in enumerate(self.layers):
            level = i % self.num_levels
            queries = layer(queries, query_pos, memories[level], memory_pos[level], attn_mask)
            logits, masks, attn_mask = head(queries, sizes[(i + 1) % self.num_levels])
            all_logits.append(logits)
            all_masks.append(masks)
        aux = [{"pred_logits": c, "pred_masks": m} for c, m in zip(all_logits[:-1], all_masks[:-1])]
        return DecoderOutput(all_logits[-1], all_masks[-1], aux)

    def _fast_forward(self, queries, query_pos, memories, memory_pos, sizes, features, classifier,
                      void) -> DecoderOutput:
        """Fast inference: only the last layer's classes and masks are read, so the layers before
        it make just their next attention mask, from the mask features resized to that level
        (resizing is linear: the same logits as resizing the full-size masks, up to rounding,
        at a sixteenth of the product and without the unused mask pooling and class head)."""
        level_features = {tuple(size): F.interpolate(features[0], size=tuple(size), mode="bilinear",
                                                     align_corners=False) for size in sizes}
        attn_mask = self._level_attention_mask(queries, level_features[tuple(sizes[0])])
        for i, layer in enumerate(self.layers):
            level = i % self.num_levels
            queries = layer(queries, query_pos, memories[level], memory_pos[level], attn_mask)
            if i < len(self.layers) - 1:
                attn_mask = self._level_attention_mask(queries, level_features[tuple(sizes[(i + 1) % self.num_levels])])
        logits, masks, _ = self._predict(queries, features, classifier, void, sizes[0])
        return DecoderOutput(logits, masks, [])

    def _level_attention_mask(self, queries: torch.Tensor, level_features: torch.Tensor) -> torch.Tensor:
        """:meth:`_attention_mask` from mask features already at the attention level [B, C, h, w]."""
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(self.decoder_norm(queries)), level_features)
        return self._attention_mask(masks, masks.shape[-2:])

    def _predict(self, queries, features, classifier, void, attn_size):
        """Class logits, mask logits and the next cross-attention mask from the current queries;
        ``features``: the mask features [B, C, h, w] contiguous and channels-last."""
        decoded = self.decoder_norm(queries)  # [B, Q, C]
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), features[0])
        pooled = self.mask_pooling_proj(mask_pool(features[1], masks))  # [B, Q, C]
        class_embed = self.class_embed(pooled + decoded)  # [B, Q, D]
        logits = classifier.logits(class_embed, self.logit_scale, void=void)
        return logits, masks, self._attention_mask(masks, attn_size)

    def _attention_mask(self, masks: torch.Tensor, size) -> torch.Tensor:
        """Boolean [B * heads, Q, h*w]: True where a query may NOT attend (mask prob < 0.5).

        A query whose mask is empty at this level attends everywhere instead, which
        keeps the softmax defined (a fully masked row would give NaN).
        """
        same = tuple(masks.shape[-2:]) == tuple(size)  # fast mode's level masks (a same-size resize is a copy)
        resized = masks if same else F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        blocked = resized.sigmoid().flatten(2) < 0.5  # [B, Q, h*w]
        blocked = blocked & ~blocked.all(-1, keepdim=True)
        return blocked.repeat_interleave(self.num_heads, dim=0).detach()
