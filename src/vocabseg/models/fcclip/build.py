"""Builds an FC-CLIP from its config: the one place that reads FCCLIPConfig."""
from __future__ import annotations

from vocabseg.clip.load import build_clip
from vocabseg.clip.visual import CLIPBackbone
from vocabseg.errors import ConfigError
from vocabseg.models.fcclip.config import FCCLIPConfig
from vocabseg.models.fcclip.model import FCCLIP
from vocabseg.models.fcclip.pixel_decoder import MSDeformAttnPixelDecoder
from vocabseg.models.fcclip.transformer_decoder import MaskedTransformerDecoder


def build_fcclip(config: FCCLIPConfig) -> FCCLIP:
    """Random-initialised FC-CLIP (CLIP included) with the shapes of ``config``."""
    if not config.conv_dim == config.mask_dim == config.hidden_dim:
        # The decoder attends to pixel-decoder features and mask-pools mask features without
        # an input projection, as the released models do: all three widths must agree.
        raise ConfigError(f"conv_dim ({config.conv_dim}), mask_dim ({config.mask_dim}) and hidden_dim "
                          f"({config.hidden_dim}) must be equal")
    clip = build_clip(config.clip_model_name, quick_gelu=config.quick_gelu, clip_config=config.clip_config)
    backbone = CLIPBackbone(clip)
    if backbone.embed_dim != config.embed_dim:
        raise ConfigError(
            f"config embed_dim={config.embed_dim} but CLIP {config.clip_model_name!r} embeds to {backbone.embed_dim}"
        )
    pixel_decoder = MSDeformAttnPixelDecoder(
        in_channels=backbone.channels,
        conv_dim=config.conv_dim,
        mask_dim=config.mask_dim,
        num_encoder_layers=config.enc_layers,
        encoder_ffn_dim=config.enc_ffn_dim,
        n_heads=config.enc_heads,
        n_points=config.enc_points,
    )
    transformer_decoder = MaskedTransformerDecoder(
        hidden_dim=config.hidden_dim,
        num_queries=config.num_queries,
        nheads=config.nheads,
        dim_feedforward=config.dim_feedforward,
        dec_layers=config.dec_layers,
        mask_dim=config.mask_dim,
        clip_embed_dim=config.embed_dim,
    )
    return FCCLIP(config=config, backbone=backbone, pixel_decoder=pixel_decoder,
                  transformer_decoder=transformer_decoder)
