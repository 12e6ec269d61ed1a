"""Tests for vocabseg.models.protocol: settings, configs from dicts, and the family registry."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from vocabseg.errors import ConfigError
from vocabseg.models import FAMILIES, TASKS, InferenceConfig, Settings, get_family
from vocabseg.models.protocol import config_from_dict


@dataclass(frozen=True)
class ToySettings:
    temperature: float = 1.0
    use_crf: bool = False


def _settings() -> Settings:
    return Settings(InferenceConfig(), ToySettings())


def test_override_routes_generic_and_family_keys():
    settings = _settings().override({"min_size": 512, "overlap_threshold": 0.5, "temperature": 0.1})
    assert settings.inference == InferenceConfig(min_size=512, overlap_threshold=0.5)
    assert settings.family == ToySettings(temperature=0.1)


def test_override_with_nothing_changes_nothing_and_never_edits_in_place():
    settings = _settings()
    assert settings.override(None) == settings.override({}) == settings
    values = {"max_size": 640, "use_crf": True}
    changed = settings.override(values)
    assert settings == _settings() and values == {"max_size": 640, "use_crf": True}
    assert (changed.inference.max_size, changed.family.use_crf) == (640, True)


def test_unknown_setting_is_a_config_error_naming_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        _settings().override({"min_size": 512, "ensemble_alpha": 0.5})  # another family's setting
    message = str(info.value)
    assert "['ensemble_alpha']" in message and "\n" not in message
    for name in ("min_size", "max_size", "object_mask_threshold", "overlap_threshold", "instances_per_image",
                 "temperature", "use_crf"):
        assert name in message


def test_fcclip_settings_route_to_the_ensemble():
    family = get_family("fcclip")
    settings = family.default_settings(None).override({"ensemble_alpha": 0.5, "instances_per_image": 10})
    assert settings.family.ensemble_alpha == 0.5 and settings.inference.instances_per_image == 10
    with pytest.raises(ConfigError, match="valid settings: .*ensemble_beta.*min_size"):
        settings.override({"alpha": 0.5})


def test_to_dict_separates_the_two_parts():
    assert _settings().to_dict() == {
        "inference": {"min_size": 800, "max_size": 1333, "object_mask_threshold": 0.0, "overlap_threshold": 0.8,
                      "instances_per_image": 100, "max_pixels": 100_000_000,
                      "precision": "auto"},
        "family": {"temperature": 1.0, "use_crf": False},
    }


def test_config_from_dict_turns_lists_into_tuples_and_refuses_unknown_fields():
    @dataclass(frozen=True)
    class Arch:
        widths: tuple[int, ...] = (1, 2)
        name: str = "x"

    assert config_from_dict(Arch, {"widths": [3, 4]}, "toy config") == Arch(widths=(3, 4))
    expected = r"unknown toy config field\(s\) \['depth'\]; valid fields: \['name', 'widths'\]"
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(Arch, {"depth": 3}, "toy config")


def test_registry_lookup():
    assert set(FAMILIES) >= {"fcclip"}
    for name, family in FAMILIES.items():
        assert get_family(name) is family and family.name == name
        assert set(family.tasks) <= set(TASKS)
    with pytest.raises(ConfigError, match="unknown model family 'nope'; known families: .*fcclip"):
        get_family("nope")


@pytest.mark.parametrize("key, value", [("min_size", "800"), ("min_size", 1.5), ("temperature", "hot"),
                                        ("use_crf", 1), ("temperature", True)])
def test_override_refuses_values_of_the_wrong_type(key, value):
    with pytest.raises(ConfigError, match=key):
        _settings().override({key: value})


def test_override_takes_an_int_for_a_float_setting():
    assert _settings().override({"temperature": 2}).family.temperature == 2.0
