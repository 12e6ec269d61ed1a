"""The frozen CLIP text tower: prompts -> embeddings, and the identity of its weights.

Shared by every family, at inference and in training, so a vocabulary is embedded one way
and hits the same :class:`~vocabseg.text.cache.TextEmbeddingCache` entries.
"""
from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import open_clip
import torch
from torch import nn

from vocabseg.text.cache import EncodeFn
from vocabseg.text.templates import DEFAULT_TEMPLATES


class TextEncoder(NamedTuple):
    """What ``TextEmbeddingCache.get_or_build`` needs."""

    encode: EncodeFn  # N prompts -> [N, D] unnormalised float32 features
    encoder_id: str  # CLIP name + fingerprint of the text-tower weights (cache key part)
    join_synonyms: bool = False  # prompt each class with all its names joined (OVSeg) instead of one per synonym
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # the family's prompt templates, averaged per name


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

    @torch.inference_mode()
    def encode(prompts: list[str]) -> torch.Tensor:
        device = next(clip.parameters()).device
        return encode_tokens(clip, tokenizer(prompts).to(device)).float()

    return TextEncoder(encode, f"{clip_model_name}:{text_tower_fingerprint(clip)}")


def text_tower_fingerprint(clip: Any) -> str:
    """Short hash of a few text-tower tensors: cheap, and changes with the weights."""
    digest = hashlib.sha256()
    tensors = (clip.text_projection, clip.ln_final.weight, clip.positional_embedding, clip.token_embedding.weight[:512])
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
