"""FC-CLIP (Yu et al., NeurIPS 2023, "Convolutions Die Hard"), read top-down:

config (architecture + ensemble settings) -> build -> model (heads and geometric ensemble)
-> convert (official detectron2 checkpoints) -> variants (the released models).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vocabseg.clip.load import load_clip_weights
from vocabseg.losses import build_criterion
from vocabseg.models.fcclip.build import build_fcclip
from vocabseg.models.fcclip.config import FCCLIPConfig, FCCLIPSettings
from vocabseg.models.fcclip.convert import CLIP_PREFIX_OURS, KEY_TABLE, OFFICIAL_TELLTALE, guess_variant
from vocabseg.models.fcclip.model import FCCLIP, FCCLIPOutput, geometric_ensemble
from vocabseg.models.fcclip.variants import VARIANTS, tiny_config
from vocabseg.models.protocol import TASKS, FamilyBase, InferenceConfig, ModelVariant, Settings

__all__ = ["FAMILY", "FCCLIP", "FCCLIPConfig", "FCCLIPFamily", "FCCLIPOutput", "FCCLIPSettings", "build_fcclip",
           "geometric_ensemble"]


class FCCLIPFamily(FamilyBase):
    """FC-CLIP behind the :class:`~vocabseg.models.protocol.ModelFamily` protocol."""

    config_type = FCCLIPConfig
    settings_type = FCCLIPSettings
    variant_table = VARIANTS
    key_table = KEY_TABLE
    official_telltale = OFFICIAL_TELLTALE

    name: str = "fcclip"
    title: str = "FC-CLIP"
    tasks: tuple[str, ...] = TASKS
    optional_prefixes: tuple[str, ...] = (CLIP_PREFIX_OURS,)  # released checkpoints may omit the frozen CLIP

    def default_settings(self, config: FCCLIPConfig) -> Settings:
        return Settings(InferenceConfig(), FCCLIPSettings())

    def build(self, config: FCCLIPConfig) -> FCCLIP:
        return build_fcclip(config)

    def guess_variant(self, state: Mapping[str, torch.Tensor], *, source: str) -> ModelVariant:
        return guess_variant(dict(state), [factory() for factory in VARIANTS.values()], source=source)

    def load_clip_weights(self, model: Any, config: FCCLIPConfig, clip_weights: str | None) -> str:
        return load_clip_weights(model.backbone.clip, config.clip_model_name, config.clip_pretrained, clip_weights)

    def build_criterion(self, config: FCCLIPConfig, loss: Any) -> nn.Module:
        """Mask2Former's set criterion with the weights of a training preset's ``loss`` section."""
        return build_criterion(class_weight=loss.class_weight, mask_weight=loss.mask_weight,
                               dice_weight=loss.dice_weight, no_object_weight=loss.no_object_weight,
                               dec_layers=config.dec_layers + 1, num_points=loss.num_points,
                               oversample_ratio=loss.oversample_ratio,
                               importance_sample_ratio=loss.importance_sample_ratio)

    def benchmark_overrides(self, vocabulary: str, train_vocabulary: str | None = None
                            ) -> tuple[str | None, dict[str, Any]]:
        """FC-CLIP evaluates every benchmark with its own vocabulary and the default ensemble."""
        return None, {}

    def tiny_config(self, kind: str | None = None) -> FCCLIPConfig:
        """A few-million-parameter config for tests and smoke runs (``kind``: convnext or resnet)."""
        return tiny_config(kind or "convnext")

    def describe(self, config: FCCLIPConfig) -> dict[str, str]:
        """Columns of ``vocabseg models``."""
        return {"backbone": f"{config.clip_model_name} ({config.clip_pretrained})", "queries": str(config.num_queries)}


FAMILY = FCCLIPFamily()
