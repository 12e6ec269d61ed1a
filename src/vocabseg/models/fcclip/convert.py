"""Official FC-CLIP (detectron2) checkpoints <-> vocabseg module names.

The conversion is an explicit table of key prefixes, applied in both
directions; a key that no row explains is an error, never silently dropped.
"""
from __future__ import annotations

import torch

from vocabseg.errors import CheckpointError
from vocabseg.models.protocol import ModelVariant
from vocabseg.state_dict import KeyTable

# (official detectron2 prefix, vocabseg prefix); {i} stands for a layer index.
KEY_TABLE = KeyTable([
    ("backbone.clip_model.", "backbone.clip."),
    ("sem_seg_head.pixel_decoder.input_proj.{i}.0.", "pixel_decoder.input_proj.{i}.conv."),
    ("sem_seg_head.pixel_decoder.input_proj.{i}.1.", "pixel_decoder.input_proj.{i}.norm."),
    ("sem_seg_head.pixel_decoder.transformer.level_embed", "pixel_decoder.encoder.level_embed"),
    ("sem_seg_head.pixel_decoder.transformer.encoder.layers.{i}.", "pixel_decoder.encoder.layers.{i}."),
    ("sem_seg_head.pixel_decoder.adapter_1.norm.", "pixel_decoder.lateral_conv.norm."),
    ("sem_seg_head.pixel_decoder.adapter_1.", "pixel_decoder.lateral_conv.conv."),
    ("sem_seg_head.pixel_decoder.layer_1.norm.", "pixel_decoder.output_conv.norm."),
    ("sem_seg_head.pixel_decoder.layer_1.", "pixel_decoder.output_conv.conv."),
    ("sem_seg_head.pixel_decoder.mask_features.", "pixel_decoder.mask_features."),
    ("sem_seg_head.predictor.transformer_self_attention_layers.{i}.self_attn.",
     "transformer_decoder.layers.{i}.self_attn.attn."),
    ("sem_seg_head.predictor.transformer_self_attention_layers.{i}.norm.",
     "transformer_decoder.layers.{i}.self_attn.norm."),
    ("sem_seg_head.predictor.transformer_cross_attention_layers.{i}.multihead_attn.",
     "transformer_decoder.layers.{i}.cross_attn.attn."),
    ("sem_seg_head.predictor.transformer_cross_attention_layers.{i}.norm.",
     "transformer_decoder.layers.{i}.cross_attn.norm."),
    ("sem_seg_head.predictor.transformer_ffn_layers.{i}.", "transformer_decoder.layers.{i}.ffn."),
    ("sem_seg_head.predictor._mask_pooling_proj.", "transformer_decoder.mask_pooling_proj."),
    ("sem_seg_head.predictor.", "transformer_decoder."),
    ("void_embedding.", "void_embedding."),
], family="FC-CLIP", dropped=("criterion.empty_weight",))  # a loss buffer, rebuilt per vocabulary in training

OFFICIAL_TELLTALE = "sem_seg_head.predictor.query_feat.weight"
CLIP_PREFIX_OFFICIAL, CLIP_PREFIX_OURS = "backbone.clip_model.", "backbone.clip."


def is_official_state_dict(state_dict: dict) -> bool:
    return OFFICIAL_TELLTALE in state_dict


def official_to_vocabseg(state_dict: dict, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Renames an official FC-CLIP state dict (the checkpoint's "model") to our modules."""
    return KEY_TABLE.forward(state_dict, source=source)


def vocabseg_to_official(state_dict: dict) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_vocabseg` (for exporting and for tests)."""
    return KEY_TABLE.backward(state_dict)


def _signature(state: dict) -> tuple:
    """Shapes (in our key names) that tell FC-CLIP variants apart without the CLIP weights."""
    return (
        tuple(state["pixel_decoder.input_proj.0.conv.weight"].shape[:2]),  # res5 channels
        tuple(state["transformer_decoder.class_embed.layers.2.weight"].shape),  # CLIP embed dim
        tuple(state["transformer_decoder.query_feat.weight"].shape),
    )


_RES5_CHANNELS = {"convnext_large_d_320": 1536, "RN50": 2048, "RN101": 2048, "RN50x4": 2560, "RN50x16": 3072,
                  "RN50x64": 4096}


def guess_variant(state: dict, variants: list[ModelVariant], *, source: str) -> ModelVariant:
    """The one variant whose shapes fit a converted official state dict."""
    res5, embed, queries = _signature(state)
    matches = [v for v in variants if _RES5_CHANNELS.get(v.config.clip_model_name) == res5[1]
               and v.config.embed_dim == embed[0] and v.config.num_queries == queries[0]]
    if len(matches) != 1:
        names = [v.name for v in matches] or sorted(v.name for v in variants)
        raise CheckpointError(f"{source}: cannot tell which FC-CLIP variant this is; pass --model (one of {names})")
    return matches[0]
