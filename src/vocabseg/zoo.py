"""Named, ready-to-use models of every registered family.

Each family lists its variants as small functions in a plain dict
(``vocabseg/models/<family>/variants.py``), so "go to definition" lands on the hyperparameters.
"""
from __future__ import annotations

from vocabseg.errors import ConfigError
from vocabseg.models import FAMILIES, ModelVariant, WeightsSpec

__all__ = ["ModelVariant", "WeightsSpec", "get_variant", "list_models"]


def _factories() -> dict:
    return {name: factory for family in FAMILIES.values() for name, factory in family.variants().items()}


def list_models() -> list[str]:
    """Names of every variant, e.g. ``fcclip_convnext_large_coco``."""
    return sorted(_factories())


def get_variant(name: str) -> ModelVariant:
    factories = _factories()
    if name not in factories:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(factories))}")
    return factories[name]()
