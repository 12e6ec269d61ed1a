"""Tests for vocabseg.model.config."""
from __future__ import annotations

import json

import pytest

from vocabseg.model.config import FCCLIPConfig, InferenceConfig


def test_architecture_config_round_trips_through_json(tiny_config):
    config = tiny_config("convnext")
    restored = FCCLIPConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config  # JSON lists become the tuples again
    assert isinstance(restored.pixel_mean, tuple) and isinstance(restored.pixel_std, tuple)


def test_inference_config_round_trips():
    config = InferenceConfig(ensemble_alpha=0.1, min_size=640)
    assert InferenceConfig.from_dict(config.to_dict()) == config


def test_official_inference_defaults():
    config = InferenceConfig()
    assert (config.ensemble_alpha, config.ensemble_beta) == (0.4, 0.8)
    assert (config.object_mask_threshold, config.overlap_threshold) == (0.0, 0.8)
    assert (config.min_size, config.max_size, config.instances_per_image) == (800, 1333, 100)


@pytest.mark.parametrize("cls", [FCCLIPConfig, InferenceConfig])
def test_unknown_fields_are_named_in_the_error(cls):
    with pytest.raises(ValueError, match=r"\['not_a_field'\]"):
        cls.from_dict({"not_a_field": 1})


def test_configs_are_immutable():
    with pytest.raises(AttributeError):
        FCCLIPConfig().num_queries = 5
