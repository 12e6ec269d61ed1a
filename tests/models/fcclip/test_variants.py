"""Tests for vocabseg.models.fcclip.variants: the released models, as the zoo lists them."""
from __future__ import annotations

import pytest

from vocabseg import zoo
from vocabseg.errors import ConfigError
from vocabseg.models import FAMILIES, ModelVariant
from vocabseg.models.fcclip.variants import REPORTED_COLUMNS, VARIANTS


def test_every_variant_has_official_weights_and_consistent_config():
    assert zoo.list_models() == sorted(name for f in FAMILIES.values() for name in f.variants())
    for name, factory in VARIANTS.items():
        variant = factory()
        assert isinstance(variant, ModelVariant) and variant.name == name and variant.family == "fcclip"
        assert zoo.get_variant(name) == variant
        assert variant.weights.url.startswith("https://")
        assert variant.config.num_queries == 250
        # ResNet CLIPs score empty masks badly: their official configs ensemble on valid masks only
        assert variant.settings.family.ensemble_on_valid_mask == name.startswith("fcclip_rn")
        assert (variant.settings.inference.min_size, variant.settings.inference.max_size) == (800, 1333)
        assert set(variant.reported) == set(REPORTED_COLUMNS)
    with pytest.raises(ConfigError, match="choose one of"):
        zoo.get_variant("nope")


def test_official_urls_skip_the_google_drive_warning_page():
    for name in VARIANTS:
        assert "confirm=t" in zoo.get_variant(name).weights.url
