"""The frozen CLIP text tower: prompts -> embeddings, and the identity of its weights.

Shared by every family, at inference and in training, so a vocabulary is embedded one way
and hits the same :class:`~vocabseg.text.cache.TextEmbeddingCache` entries.
"""
from __future__ import annotations

import copy
import hashlib
from types import SimpleNamespace
from typing import Any, NamedTuple

import open_clip
import torch
from torch import nn

from vocabseg.clip.prefix_tree import build_prefix_tree, encode_prefix_tree, supports_prefix_sharing, token_sequences
from vocabseg.text.cache import EncodeFn
from vocabseg.text.templates import DEFAULT_TEMPLATES


class TextEncoder(NamedTuple):
    """What ``TextEmbeddingCache.get_or_build`` needs."""

    encode: EncodeFn  # N prompts -> [N, D] unnormalised float32 features
    encoder_id: str  # CLIP name + fingerprint of the text-tower weights (cache key part)
    join_synonyms: bool = False  # prompt each class with all its names joined (OVSeg) instead of one per synonym
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # the family's prompt templates, averaged per name
    # Fast mode's encoder: a bf16 copy of the tower (about twice as fast on CPU, ~1e-3 cosine off);
    # None where the tower has no bf16 path. Its cache entries are keyed ``encoder_id + BF16_SUFFIX``.
    encode_bf16: EncodeFn | None = None

    def for_precision(self, fast: bool) -> tuple[EncodeFn, str]:
        """(encode, cache id) of exact or fast mode."""
        if fast and self.encode_bf16 is not None:
            return self.encode_bf16, self.encoder_id + BF16_SUFFIX
        return self.encode, self.encoder_id


BF16_SUFFIX = ":bf16"


@torch.no_grad()
def encode_tokens(clip: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Unnormalised text embeddings [N, D] of token ids [N, 77] through an open_clip ``CLIP``.

    Only the first ``max_len`` positions are run, where ``max_len`` covers the longest
    prompt's end-of-text token: attention is causal, so the end-of-text output does not
    depend on the padding after it (the same numbers, a fraction of the work).
    """
    eot_positions = tokens.argmax(dim=-1)  # end-of-text has the largest token id
    max_len = int(eot_positions.max()) + 1  # note: one device sync per batch of prompts
    tokens = tokens[:, :max_len]
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:max_len].to(cast_dtype)
    causal = clip.attn_mask[:max_len, :max_len] if clip.attn_mask is not None else None
    x = clip.transformer(x, attn_mask=causal)  # [N, L, C], batch-first in open_clip >= 2.22
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_positions]  # [N, C]
    return x @ clip.text_projection


def clip_text_encoder(clip: nn.Module, *, clip_model_name: str, custom_clip: bool) -> TextEncoder:
    """Tokenizer + frozen text tower of an open_clip ``CLIP``.

    Args:
        clip: the CLIP module, on any device.
        clip_model_name: open_clip architecture name (selects the tokenizer).
        custom_clip: True for CLIPs built from an explicit config (tests, custom CLIPs):
            they use open_clip's default tokenizer.
    """
    tokenizer = open_clip.tokenize if custom_clip else open_clip.get_tokenizer(clip_model_name)
    encoder_id = f"{clip_model_name}:{text_tower_fingerprint(clip)}"
    if not supports_prefix_sharing(clip):
        @torch.inference_mode()
        def encode_padded(prompts: list[str]) -> torch.Tensor:
            return encode_tokens(clip, tokenizer(prompts).to(next(clip.parameters()).device)).float()

        return TextEncoder(encode_padded, encoder_id)
    towers: dict[torch.dtype, Any] = {torch.float32: clip}  # the bf16 copy: made on first fast-mode use, then kept

    def encoder_in(dtype: torch.dtype) -> EncodeFn:
        @torch.inference_mode()
        def encode(prompts: list[str]) -> torch.Tensor:
            if dtype not in towers:
                towers[dtype] = text_tower_copy(clip, dtype)
            return encode_prefix_tree(towers[dtype], build_prefix_tree(token_sequences(tokenizer(prompts)))).float()
        return encode

    return TextEncoder(encoder_in(torch.float32), encoder_id, encode_bf16=encoder_in(torch.bfloat16))


def text_tower_copy(clip: Any, dtype: torch.dtype) -> SimpleNamespace:
    """The text-tower parts of an open_clip ``CLIP`` that :func:`encode_prefix_tree` reads, cast to ``dtype``
    (for ConvNeXt-L's text tower in bf16: ~300 MB)."""
    return SimpleNamespace(
        token_embedding=copy.deepcopy(clip.token_embedding).to(dtype),
        positional_embedding=clip.positional_embedding.detach().to(dtype),
        transformer=copy.deepcopy(clip.transformer).to(dtype),
        ln_final=copy.deepcopy(clip.ln_final).to(dtype),
        text_projection=clip.text_projection.detach().to(dtype),
    )


def text_tower_fingerprint(clip: Any) -> str:
    """Short hash of a few text-tower tensors: cheap, and changes with the weights."""
    digest = hashlib.sha256()
    tensors = (clip.text_projection, clip.ln_final.weight, clip.positional_embedding, clip.token_embedding.weight[:512])
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
