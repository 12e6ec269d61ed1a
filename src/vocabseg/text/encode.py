"""Prompt encoding with the frozen CLIP text tower of an FC-CLIP.

Shared by inference and training so both embed a vocabulary the same way and
hit the same :class:`~vocabseg.text.cache.TextEmbeddingCache` entries.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import open_clip
import torch

from vocabseg.text.cache import EncodeFn


class TextEncoder(NamedTuple):
    """What ``TextEmbeddingCache.get_or_build`` needs."""

    encode: EncodeFn  # N prompts -> [N, D] unnormalised float32 features
    encoder_id: str  # CLIP name + fingerprint of the text-tower weights (cache key part)


def clip_text_encoder(backbone, *, clip_model_name: str, custom_clip: bool) -> TextEncoder:
    """Tokenizer + frozen text tower of a ``CLIPBackbone``.

    Args:
        backbone: ``FCCLIP.backbone`` (a ``CLIPBackbone``), on any device.
        clip_model_name: open_clip architecture name (selects the tokenizer).
        custom_clip: True for configs with an explicit ``clip_config`` (tests,
            custom CLIPs): they use open_clip's default tokenizer.
    """
    tokenizer = open_clip.tokenize if custom_clip else open_clip.get_tokenizer(clip_model_name)

    @torch.inference_mode()
    def encode(prompts: list[str]) -> torch.Tensor:
        device = next(backbone.clip.parameters()).device
        return backbone.encode_text(tokenizer(prompts).to(device)).float()

    return TextEncoder(encode, f"{clip_model_name}:{text_tower_fingerprint(backbone.clip)}")


def text_tower_fingerprint(clip) -> str:
    """Short hash of a few text-tower tensors: cheap, and changes with the weights."""
    digest = hashlib.sha256()
    for tensor in (clip.text_projection, clip.ln_final.weight, clip.positional_embedding, clip.token_embedding.weight[:512]):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
