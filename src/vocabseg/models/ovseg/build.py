"""Builds an OVSeg from its config: the one place that reads OVSegConfig."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vocabseg.clip.load import build_clip
from vocabseg.clip.vit import add_mask_prompt
from vocabseg.errors import ConfigError
from vocabseg.models.ovseg.config import OVSegConfig
from vocabseg.models.ovseg.model import OVSeg
from vocabseg.models.ovseg.pixel_decoder import FPNPixelDecoder
from vocabseg.models.ovseg.resnet import DeepLabResNet, resnet101_deeplab
from vocabseg.models.ovseg.swin import SwinTransformer, swin_base
from vocabseg.models.ovseg.transformer_predictor import TransformerPredictor

# backbone name -> builder; the *_test ones are few-thousand-parameter versions for tests and smoke runs
BACKBONES: dict[str, Callable[[], SwinTransformer | DeepLabResNet]] = {
    "swin_base": swin_base,
    "resnet101_deeplab": resnet101_deeplab,
    "swin_tiny_test": lambda: SwinTransformer(embed_dim=32, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=4),
    "resnet_tiny_test": lambda: DeepLabResNet(blocks=(1, 1, 1, 2), stem_channels=32, res2_channels=32,
                                              bottleneck_channels=8, res5_multi_grid=(1, 2)),
}


def build_ovseg(config: OVSegConfig) -> OVSeg:
    """Random-initialised OVSeg (mask-adapted CLIP included, frozen) with the shapes of ``config``."""
    if config.backbone not in BACKBONES:
        raise ConfigError(f"unknown OVSeg backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    backbone = BACKBONES[config.backbone]()
    channels = backbone.out_channels  # {"res2": C2, ..., "res5": C5}
    clip: Any = build_clip(config.clip_model_name, quick_gelu=True, clip_config=config.clip_config)
    clip_dim = int(clip.text_projection.shape[-1])
    if clip_dim != config.embed_dim:
        raise ConfigError(f"config embed_dim={config.embed_dim} but CLIP {config.clip_model_name!r} "
                          f"embeds to {clip_dim}")
    if config.mask_prompt_depth > 0:
        add_mask_prompt(clip, depth=config.mask_prompt_depth)
    for param in clip.parameters():  # the proposal stage trains with CLIP frozen; adaptation is its own recipe
        param.requires_grad_(False)
    pixel_decoder = FPNPixelDecoder(in_channels=channels, conv_dim=config.conv_dim, mask_dim=config.mask_dim)
    predictor = TransformerPredictor(
        in_channels=channels["res5"],
        hidden_dim=config.hidden_dim,
        num_queries=config.num_queries,
        nheads=config.nheads,
        dim_feedforward=config.dim_feedforward,
        dec_layers=config.dec_layers,
        mask_dim=config.mask_dim,
        embed_dim=config.embed_dim,
        embed_hidden_dim=config.embed_hidden_dim,
        embed_layers=config.embed_layers,
    )
    return OVSeg(config=config, backbone=backbone, pixel_decoder=pixel_decoder, predictor=predictor, clip=clip)
