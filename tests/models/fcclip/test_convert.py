"""Tests for vocabseg.models.fcclip.convert against the official FC-CLIP key manifests.

The manifests (every key and shape of the official ResNet-50 and ConvNeXt-Large models)
live in ../shared/reference (next to the repository); the tests that need them skip when it is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from vocabseg.errors import CheckpointError
from vocabseg.models import get_family
from vocabseg.models.fcclip.build import build_fcclip
from vocabseg.models.fcclip.config import FCCLIPConfig
from vocabseg.models.fcclip.convert import (
    guess_variant,
    is_official_state_dict,
    official_to_vocabseg,
    vocabseg_to_official,
)
from vocabseg.models.fcclip.variants import VARIANTS
from vocabseg.testing import tiny_config

EMPTY_WEIGHT = "criterion.empty_weight"


def _manifest(path: Path) -> dict[str, list[int]]:
    return {key: entry["shape"] for key, entry in json.loads(path.read_text()).items()}


def _our_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def rn50_shapes() -> dict[str, list[int]]:
    """State-dict shapes of build_fcclip for RN50, built through open_clip's model name (~2 s)."""
    config = FCCLIPConfig(clip_model_name="RN50", clip_pretrained="openai", quick_gelu=True, embed_dim=1024)
    return _our_shapes(build_fcclip(config))


@pytest.fixture(scope="module")
def convnext_large_shapes() -> dict[str, list[int]]:
    """State-dict shapes of the default (ConvNeXt-Large) FC-CLIP.

    Built on the meta device from open_clip's own config for the name: shapes without
    allocating or initialising 200M parameters (open_clip's create_model cannot build on meta).
    """
    config = FCCLIPConfig()
    clip_config = open_clip.get_model_config(config.clip_model_name)
    with torch.device("meta"):
        model = build_fcclip(FCCLIPConfig(clip_config=clip_config))
    return _our_shapes(model)


@pytest.mark.parametrize(
    "manifest, shapes_fixture",
    [("manifest_rn50.json", "rn50_shapes"), ("manifest_convnext_large.json", "convnext_large_shapes")],
)
def test_official_manifest_converts_to_exactly_our_state_dict(manifest, shapes_fixture, request, reference_file):
    official = _manifest(reference_file(manifest))
    ours = request.getfixturevalue(shapes_fixture)
    converted = official_to_vocabseg({key: torch.zeros(0) for key in official})
    assert set(converted) == set(ours)  # no missing, no unexpected key
    official_name = vocabseg_to_official({key: key for key in ours})  # official key -> our key
    mismatched = [key for official_key, key in official_name.items() if official[official_key] != ours[key]]
    assert mismatched == []


@pytest.mark.parametrize("manifest", ["manifest_rn50.json", "manifest_convnext_large.json"])
def test_round_trip_keeps_every_key_and_value(manifest, reference_file):
    official = {key: torch.tensor(float(i)) for i, key in enumerate(_manifest(reference_file(manifest)))}
    assert EMPTY_WEIGHT in official and is_official_state_dict(official)
    converted = official_to_vocabseg(official)
    assert EMPTY_WEIGHT not in converted and len(converted) == len(official) - 1
    back = vocabseg_to_official(converted)
    assert back.keys() == official.keys() - {EMPTY_WEIGHT}
    assert all(back[key] is official[key] for key in back)  # values pass through untouched


def test_checkpoint_without_clip_weights_converts(reference_file):
    keys = _manifest(reference_file("manifest_rn50.json"))
    official = {key: torch.zeros(1) for key in keys if not key.startswith("backbone.")}
    converted = official_to_vocabseg(official)
    assert converted and not any(key.startswith("backbone.") for key in converted)


@pytest.mark.parametrize(
    "official, ours",
    [
        ("backbone.clip_model.visual.trunk.stem.0.weight", "backbone.clip.visual.trunk.stem.0.weight"),
        ("sem_seg_head.pixel_decoder.input_proj.2.0.weight", "pixel_decoder.input_proj.2.conv.weight"),
        ("sem_seg_head.pixel_decoder.input_proj.2.1.bias", "pixel_decoder.input_proj.2.norm.bias"),
        ("sem_seg_head.pixel_decoder.adapter_1.weight", "pixel_decoder.lateral_conv.conv.weight"),
        ("sem_seg_head.pixel_decoder.adapter_1.norm.weight", "pixel_decoder.lateral_conv.norm.weight"),
        ("sem_seg_head.pixel_decoder.layer_1.norm.bias", "pixel_decoder.output_conv.norm.bias"),
        (
            "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.bias",
            "pixel_decoder.encoder.layers.5.self_attn.sampling_offsets.bias",
        ),
        (
            "sem_seg_head.predictor.transformer_cross_attention_layers.12.multihead_attn.in_proj_weight",
            "transformer_decoder.layers.12.cross_attn.attn.in_proj_weight",
        ),
        (
            "sem_seg_head.predictor.transformer_self_attention_layers.0.norm.weight",
            "transformer_decoder.layers.0.self_attn.norm.weight",
        ),
        (
            "sem_seg_head.predictor.transformer_ffn_layers.3.linear2.bias",
            "transformer_decoder.layers.3.ffn.linear2.bias",
        ),
        ("sem_seg_head.predictor._mask_pooling_proj.1.weight", "transformer_decoder.mask_pooling_proj.1.weight"),
        ("sem_seg_head.predictor.query_feat.weight", "transformer_decoder.query_feat.weight"),
        ("void_embedding.weight", "void_embedding.weight"),
    ],
)
def test_key_table_rows(official, ours):
    assert list(official_to_vocabseg({official: torch.zeros(1)})) == [ours]
    assert list(vocabseg_to_official({ours: torch.zeros(1)})) == [official]


def test_numpy_values_become_tensors():
    converted = official_to_vocabseg({"void_embedding.weight": np.ones((1, 4), dtype=np.float32)})
    assert isinstance(converted["void_embedding.weight"], torch.Tensor)


def test_unknown_official_key_raises_a_one_line_error():
    state = {"void_embedding.weight": torch.zeros(1), "sem_seg_head.unknown.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        official_to_vocabseg(state, source="ckpt.pth")
    message = str(info.value)
    assert "\n" not in message
    assert "ckpt.pth" in message and "sem_seg_head.unknown.weight" in message and "1 key(s)" in message


def test_unknown_vocabseg_key_raises():
    with pytest.raises(CheckpointError, match="criterion.something"):
        vocabseg_to_official({"criterion.something": torch.zeros(1)})


def test_telltale_key_detects_the_official_format():
    assert is_official_state_dict({"sem_seg_head.predictor.query_feat.weight": 0})
    assert not is_official_state_dict({"transformer_decoder.query_feat.weight": 0})


def test_the_family_recognises_and_converts_through_the_same_table():
    family = get_family("fcclip")
    official = {"sem_seg_head.predictor.query_feat.weight": torch.zeros(1), "criterion.empty_weight": torch.ones(2)}
    assert family.is_official(official) and not family.is_official({"transformer_decoder.query_feat.weight": 0})
    assert list(family.convert_official(official, source="x")) == ["transformer_decoder.query_feat.weight"]
    assert family.optional_prefixes == ("backbone.clip.",)


def _official_shapes_without_clip(manifest: Path) -> dict[str, torch.Tensor]:
    """A converted official state dict as released without the frozen CLIP (shapes only, on meta)."""
    official = {key: torch.empty(shape, device="meta") for key, shape in _manifest(manifest).items()
                if not key.startswith("backbone.")}
    return official_to_vocabseg(official)


@pytest.mark.parametrize("manifest, name", [("manifest_rn50.json", "fcclip_rn50_coco"),
                                            ("manifest_convnext_large.json", "fcclip_convnext_large_coco")])
def test_guess_variant_finds_the_one_variant_with_these_shapes(manifest, name, reference_file):
    variants = [factory() for factory in VARIANTS.values()]
    state = _official_shapes_without_clip(reference_file(manifest))
    assert guess_variant(state, variants, source="ckpt.pth").name == name
    assert get_family("fcclip").guess_variant(state, source="ckpt.pth").name == name


def test_guess_variant_names_the_candidates_when_no_variant_fits():
    state = build_fcclip(tiny_config("resnet")).state_dict()
    with pytest.raises(CheckpointError) as info:
        get_family("fcclip").guess_variant(state, source="tiny.pth")
    message = str(info.value)
    assert "tiny.pth" in message and "--model" in message and "fcclip_rn50_coco" in message
    assert "\n" not in message
