"""Official OVSeg (detectron2) checkpoints <-> vocabseg module names, by an explicit table."""
from __future__ import annotations

import torch

from vocabseg.errors import CheckpointError
from vocabseg.models.protocol import ModelVariant
from vocabseg.state_dict import KeyTable

_DECODER = "sem_seg_head.predictor.transformer.decoder."
# (official prefix, vocabseg prefix); {i} stands for a layer index. First match wins.
KEY_TABLE = KeyTable([
    ("backbone.", "backbone."),
    ("sem_seg_head.pixel_decoder.", "pixel_decoder."),
    (_DECODER + "layers.{i}.self_attn.", "predictor.layers.{i}.self_attn.attn."),
    (_DECODER + "layers.{i}.norm1.", "predictor.layers.{i}.self_attn.norm."),
    (_DECODER + "layers.{i}.multihead_attn.", "predictor.layers.{i}.cross_attn.attn."),
    (_DECODER + "layers.{i}.norm2.", "predictor.layers.{i}.cross_attn.norm."),
    (_DECODER + "layers.{i}.linear1.", "predictor.layers.{i}.ffn.linear1."),
    (_DECODER + "layers.{i}.linear2.", "predictor.layers.{i}.ffn.linear2."),
    (_DECODER + "layers.{i}.norm3.", "predictor.layers.{i}.ffn.norm."),
    (_DECODER + "norm.", "predictor.decoder_norm."),
    ("sem_seg_head.predictor.", "predictor."),
    ("clip_adapter.clip_model.", "clip."),
    ("clip_adapter.non_object_embedding", "void_embedding"),
], family="OVSeg", dropped=(  # no model state: a loss buffer, and CLIP's normalisation constants
    "criterion.empty_weight", "clip_adapter.pixel_mean", "clip_adapter.pixel_std"))
OFFICIAL_TELLTALE = "clip_adapter.non_object_embedding"
CLIP_PREFIX_OURS = "clip."


def is_official_state_dict(state_dict: dict) -> bool:
    return OFFICIAL_TELLTALE in state_dict


def official_to_vocabseg(state_dict: dict, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Renames an official OVSeg state dict (the checkpoint's "model") to our modules."""
    return KEY_TABLE.forward(state_dict, source=source)


def vocabseg_to_official(state_dict: dict) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_vocabseg` (dropped constants excepted)."""
    return KEY_TABLE.backward(state_dict)


def guess_variant(state: dict, variants: list[ModelVariant], *, source: str) -> ModelVariant:
    """The variant whose backbone and CLIP widths fit a converted official state dict."""
    swin = "backbone.patch_embed.proj.weight" in state
    embed = int(state["void_embedding"].shape[-1])
    matches = [v for v in variants if v.config.backbone == ("swin_base" if swin else "resnet101_deeplab")
               and v.config.embed_dim == embed]
    if not matches:
        raise CheckpointError(f"{source}: no OVSeg variant has this backbone and CLIP width ({embed}); pass --model")
    return matches[0]  # variants sharing an architecture differ only in weights: the first is the full model
