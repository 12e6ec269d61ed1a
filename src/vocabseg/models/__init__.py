"""Model families and their registry: the one place in vocabseg that names the families.

Everything generic (predictor, zoo, checkpoints, evaluation, training, CLI) goes through
:func:`get_family` and the :class:`~vocabseg.models.protocol.ModelFamily` protocol.
"""
from __future__ import annotations

from vocabseg.errors import ConfigError
from vocabseg.models import cascade_clip, fcclip, ovseg
from vocabseg.models.protocol import (
    TASKS,
    InferenceConfig,
    InputBatch,
    ModelFamily,
    ModelVariant,
    QueryOutput,
    ResizeAndPad,
    SegmentationModel,
    Settings,
    WeightsSpec,
)

FAMILIES: dict[str, ModelFamily] = {
    fcclip.FAMILY.name: fcclip.FAMILY,
    ovseg.FAMILY.name: ovseg.FAMILY,
    cascade_clip.FAMILY.name: cascade_clip.FAMILY,
}


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "TASKS", "InferenceConfig", "InputBatch", "ModelFamily", "ModelVariant", "QueryOutput",
           "ResizeAndPad",
           "SegmentationModel", "Settings", "WeightsSpec", "get_family"]
