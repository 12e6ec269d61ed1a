"""Tests for vocabseg.models.fcclip.config: the architecture config and FC-CLIP's own settings."""
from __future__ import annotations

import json

import pytest

from vocabseg.errors import ConfigError
from vocabseg.models import InferenceConfig, get_family
from vocabseg.models.fcclip.config import FCCLIPConfig, FCCLIPSettings
from vocabseg.testing import tiny_config


def test_architecture_config_round_trips_through_json():
    config = tiny_config("convnext")
    restored = FCCLIPConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config  # JSON lists become the tuples again
    assert isinstance(restored.pixel_mean, tuple) and isinstance(restored.pixel_std, tuple)


def test_settings_round_trip_through_the_family():
    family = get_family("fcclip")
    settings = family.default_settings(tiny_config()).override({"ensemble_alpha": 0.1, "min_size": 640})
    data = json.loads(json.dumps(settings.to_dict()))
    assert InferenceConfig.from_dict(data["inference"]) == settings.inference
    assert family.settings_from_dict(data["family"]) == settings.family == FCCLIPSettings(ensemble_alpha=0.1)


def test_official_defaults():
    family = get_family("fcclip")
    settings = family.default_settings(FCCLIPConfig())
    ensemble = settings.family
    assert isinstance(ensemble, FCCLIPSettings)
    assert (ensemble.ensemble_alpha, ensemble.ensemble_beta, ensemble.ensemble_on_valid_mask) == (0.4, 0.8, False)
    generic = settings.inference
    assert (generic.object_mask_threshold, generic.overlap_threshold) == (0.0, 0.8)
    assert (generic.min_size, generic.max_size, generic.instances_per_image) == (800, 1333, 100)


@pytest.mark.parametrize("cls", [FCCLIPConfig, FCCLIPSettings, InferenceConfig])
def test_unknown_fields_are_named_in_the_error(cls):
    with pytest.raises(ConfigError, match=r"\['not_a_field'\]"):
        cls.from_dict({"not_a_field": 1})


def test_configs_are_immutable():
    with pytest.raises(AttributeError):
        FCCLIPConfig().num_queries = 5
    with pytest.raises(AttributeError):
        FCCLIPSettings().ensemble_alpha = 0.5


def test_the_tiny_training_preset_builds_the_tiny_test_architecture():
    """presets/fcclip_tiny_cpu.yaml names the family's tiny config (model.tiny) instead of copying it."""
    from vocabseg.train.build import resolve_architecture
    from vocabseg.train.config import load_config

    assert resolve_architecture(load_config("fcclip_tiny_cpu", [])).config == tiny_config("convnext")
    overridden = resolve_architecture(load_config("fcclip_tiny_cpu", ["model.arch.num_queries=7"])).config
    assert overridden.num_queries == 7 and overridden.hidden_dim == tiny_config("convnext").hidden_dim
