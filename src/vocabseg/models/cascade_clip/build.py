"""Builds a Cascade-CLIP from its config: the one place that reads CascadeCLIPConfig."""
from __future__ import annotations

from typing import Any, cast

from vocabseg.clip.load import build_clip
from vocabseg.errors import ConfigError
from vocabseg.models.cascade_clip.cascade_decoder import CascadeDecoder, StageDecoder
from vocabseg.models.cascade_clip.config import CascadeCLIPConfig
from vocabseg.models.cascade_clip.model import CascadeCLIP
from vocabseg.models.cascade_clip.vpt_vit import LevelProjections, VisualPrompts


def build_cascade_clip(config: CascadeCLIPConfig) -> CascadeCLIP:
    """Random-initialised Cascade-CLIP with the official training's frozen parts frozen.

    Trainable, as in the official recipe: the visual prompts and the decoder (but for the parts of
    its last layers that never reach the output). Frozen: the whole CLIP (image and text tower) and
    the level projections (left at their initialisation).
    """
    clip: Any = build_clip(config.clip_model_name, quick_gelu=True, clip_config=config.clip_config,
                           image_size=config.image_size)
    del clip.logit_scale  # unused here, and absent from the official checkpoints
    visual = clip.visual
    width, blocks = int(visual.conv1.weight.shape[0]), len(visual.transformer.resblocks)
    patch = int(visual.conv1.kernel_size[0])
    _check(config, clip, blocks, patch)
    for param in clip.parameters():
        param.requires_grad_(False)
    prompts = VisualPrompts(tokens=config.prompt_tokens, width=width, blocks=blocks, patch_size=patch,
                            norm_eps=config.prompt_norm_eps, dropout=config.dropout)
    levels = LevelProjections(levels=len(config.level_blocks), width=width, embed_dim=config.embed_dim)
    decoder = CascadeDecoder(dim=config.embed_dim, stage_levels=config.stage_levels, fusion_init=config.fusion_init,
                             layers=config.decoder_layers, heads=config.decoder_heads, ffn_dim=config.decoder_ffn,
                             dropout=config.dropout)
    _freeze_unused_last_layers(decoder)
    return CascadeCLIP(config=config, clip=clip, prompts=prompts, levels=levels, decoder=decoder)


def _freeze_unused_last_layers(decoder: CascadeDecoder) -> None:
    """Masks are read from the last layer's attention logits (q . k), so that layer's value path,
    output projection, norms and feed-forward block never reach the output. The official code
    keeps them trainable but they get no gradient; frozen here, they keep their (checkpoint) values."""
    for stage in decoder.stages:
        last: Any = cast(StageDecoder, stage).layers[-1]
        for module in (last.cross_attn.v, last.cross_attn.proj, last.attn_norm, last.linear1, last.linear2,
                       last.ffn_norm):
            for param in module.parameters():
                param.requires_grad_(False)


def _check(config: CascadeCLIPConfig, clip: Any, blocks: int, patch: int) -> None:
    if not hasattr(clip.visual, "class_embedding"):
        raise ConfigError(f"Cascade-CLIP needs an OpenAI-style ViT CLIP, not {config.clip_model_name!r}")
    clip_dim = int(clip.text_projection.shape[-1])
    if clip_dim != config.embed_dim:
        raise ConfigError(f"config embed_dim={config.embed_dim} but CLIP {config.clip_model_name!r} "
                          f"embeds to {clip_dim}")
    if max(config.level_blocks) >= blocks - 1:
        raise ConfigError(f"level_blocks {config.level_blocks} must read blocks before the last of {blocks}")
    if config.image_size % patch:
        raise ConfigError(f"image_size {config.image_size} is not a multiple of the patch size {patch}")
    fused = [level for levels in config.stage_levels for level in levels]
    if sorted(fused) != list(range(len(config.level_blocks))):
        raise ConfigError(f"stage_levels {config.stage_levels} must use each of the {len(config.level_blocks)} "
                          "levels once")
