"""Tests for vocabseg.models.fcclip.build."""
from __future__ import annotations

import dataclasses

import pytest

from vocabseg.clip.visual import ConvNeXtAdapter, ModifiedResNetAdapter
from vocabseg.errors import ConfigError
from vocabseg.models.fcclip.build import build_fcclip
from vocabseg.models.fcclip.config import FCCLIPConfig
from vocabseg.testing import tiny_config

ADAPTERS = {"convnext": ConvNeXtAdapter, "resnet": ModifiedResNetAdapter}


def test_builds_the_configured_shapes(backbone_kind):
    config = tiny_config(backbone_kind)
    model = build_fcclip(config)
    assert type(model.backbone.adapter) is ADAPTERS[backbone_kind]
    assert model.config == config
    assert model.transformer_decoder.query_feat.weight.shape == (config.num_queries, config.hidden_dim)
    assert len(model.transformer_decoder.layers) == config.dec_layers
    assert len(model.pixel_decoder.encoder.layers) == config.enc_layers
    assert model.pixel_decoder.mask_features.out_channels == config.mask_dim
    assert model.void_embedding.weight.shape == (1, config.embed_dim)
    assert model.transformer_decoder.class_embed.layers[-1].out_features == config.embed_dim
    # the pixel decoder reads the backbone's channel contract
    assert model.pixel_decoder.lateral_conv.conv.in_channels == model.backbone.channels["res2"]
    assert model.pixel_decoder.input_proj[0].conv.in_channels == model.backbone.channels["res5"]


def test_embed_dim_mismatch_is_rejected():
    config = dataclasses.replace(tiny_config("resnet"), embed_dim=64)
    with pytest.raises(ConfigError, match="embed_dim=64"):
        build_fcclip(config)


def test_unknown_open_clip_name_is_rejected():
    with pytest.raises(ConfigError, match="unknown open_clip model 'no-such-clip'"):
        build_fcclip(FCCLIPConfig(clip_model_name="no-such-clip"))


def test_mismatched_decoder_widths_are_refused():
    with pytest.raises(ConfigError, match="must be equal"):
        build_fcclip(dataclasses.replace(tiny_config(), mask_dim=16))
