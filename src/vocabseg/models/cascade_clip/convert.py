"""Official Cascade-CLIP (mmseg) checkpoints <-> vocabseg module names, by an explicit table.

Released files are mmcv runner checkpoints: the state dict sits under ``"state_dict"`` (the
generic checkpoint reader unwraps it).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from vocabseg.errors import CheckpointError
from vocabseg.models.protocol import ModelVariant
from vocabseg.state_dict import KeyTable

_LAYER = "decode_head.cascade_decoders.{i}.layers.{j}."
_OURS = "decoder.stages.{i}.layers.{j}."
# (official prefix, vocabseg prefix); first match wins, so the specific rows come first.
KEY_TABLE = KeyTable([
    ("backbone.prompt_embeddings", "prompts.shallow"),
    ("backbone.deep_prompt_embeddings", "prompts.deep"),
    ("backbone.prompt_proj.", "prompts.proj."),
    ("backbone.prompt_norm.", "prompts.norm."),
    ("backbone.ln_layers.{i}.", "levels.norms.{i}."),
    ("backbone.proj_layers", "levels.proj"),
    ("backbone.", "clip.visual."),
    ("decode_head.weights_s1", "decoder.fusion_weights.0"),
    ("decode_head.weights_s2", "decoder.fusion_weights.1"),
    ("decode_head.q_projs.", "decoder.query_projs."),
    (_LAYER + "multihead_attn.", _OURS + "cross_attn."),
    (_LAYER + "norm2.", _OURS + "attn_norm."),
    (_LAYER + "norm3.", _OURS + "ffn_norm."),
    (_LAYER + "linear1.", _OURS + "linear1."),
    (_LAYER + "linear2.", _OURS + "linear2."),
    ("text_encoder.", "clip."),
], family="Cascade-CLIP", dropped=(
    "decode_head.loss_decode.criterion.empty_weight",  # a loss buffer
    _LAYER + "self_attn.", _LAYER + "norm1.",  # built by torch's decoder layer, never used by the official forward
))
OFFICIAL_TELLTALE = "backbone.deep_prompt_embeddings"


def official_to_vocabseg(state: Mapping, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Renames an official Cascade-CLIP state dict (the checkpoint's ``state_dict``) to our modules."""
    return KEY_TABLE.forward(state, source=source)


def vocabseg_to_official(state: Mapping) -> dict:
    """Inverse of :func:`official_to_vocabseg` (the unused and loss-only official keys excepted)."""
    return KEY_TABLE.backward(dict(state))


def guess_variant(state: Mapping[str, torch.Tensor], variants: list[ModelVariant], *, source: str) -> ModelVariant:
    """The variant whose prompt length and training split fit a converted official state dict.

    Inductive and transductive models of one dataset share every shape; the transductive one is
    told apart only by name, so the inductive model (seen-class offset on) is the guess.
    """
    tokens = int(state["prompts.shallow"].shape[1])
    matches = [v for v in variants if v.config.prompt_tokens == tokens]
    if not matches:
        raise CheckpointError(f"{source}: no Cascade-CLIP variant has {tokens} prompt tokens; pass --model NAME")
    return matches[0]
