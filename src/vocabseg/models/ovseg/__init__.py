"""OVSeg (Liang et al., CVPR 2023, "Open-Vocabulary Semantic Segmentation with Mask-adapted CLIP"), top-down:

config (architecture + ensemble settings) -> build -> model (MaskFormer proposals, CLIP region
classification, ensemble) with its parts: swin / resnet backbones, pixel_decoder (FPN),
transformer_predictor (DETR + CLIP-space class head), regions (masked crops) and the
mask-prompted ViT in vocabseg.clip.vit -> convert (official checkpoints) -> variants.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vocabseg.clip.load import load_clip_state
from vocabseg.losses.maskformer import build_maskformer_criterion
from vocabseg.models.ovseg.build import build_ovseg
from vocabseg.models.ovseg.config import OVSegConfig, OVSegSettings
from vocabseg.models.ovseg.convert import KEY_TABLE, OFFICIAL_TELLTALE, guess_variant
from vocabseg.models.ovseg.model import OVSeg, OVSegOutput
from vocabseg.models.ovseg.variants import BENCHMARK_ENSEMBLE_WEIGHTS, VARIANTS, tiny_config
from vocabseg.models.protocol import FamilyBase, InferenceConfig, ModelVariant, Settings
from vocabseg.state_dict import check_state_dict
from vocabseg.text.builtin import list_vocabularies

__all__ = ["FAMILY", "OVSeg", "OVSegConfig", "OVSegFamily", "OVSegOutput", "OVSegSettings", "build_ovseg"]


class OVSegFamily(FamilyBase):
    """OVSeg behind the :class:`~vocabseg.models.protocol.ModelFamily` protocol."""

    config_type = OVSegConfig
    settings_type = OVSegSettings
    variant_table = VARIANTS
    key_table = KEY_TABLE
    official_telltale = OFFICIAL_TELLTALE

    name: str = "ovseg"
    title: str = "OVSeg"
    # The paper's output is semantic; panoptic and instance merges of its proposals are offered
    # through the shared Mask2Former merging, beyond the paper.
    tasks: tuple[str, ...] = ("semantic", "panoptic", "instance")
    optional_prefixes: tuple[str, ...] = ()  # released checkpoints hold the (adapted) CLIP

    def default_settings(self, config: OVSegConfig) -> Settings:
        return Settings(InferenceConfig(min_size=640, max_size=2560), OVSegSettings())

    def build(self, config: OVSegConfig) -> OVSeg:
        return build_ovseg(config)

    def guess_variant(self, state: Mapping[str, torch.Tensor], *, source: str) -> ModelVariant:
        return guess_variant(dict(state), [factory() for factory in VARIANTS.values()], source=source)

    def load_clip_weights(self, model: Any, config: OVSegConfig, clip_weights: str | None) -> str:
        """Replaces the CLIP (OpenAI weights, e.g. before adaptation); the mask prompt is kept."""
        state, origin = load_clip_state(config.clip_model_name, config.clip_pretrained, clip_weights)
        if config.mask_prompt_depth > 0 and "visual.mask_embedding" not in state:
            state = {**state, "visual.mask_embedding": model.clip.visual.mask_embedding.detach()}
        check_state_dict(model.clip, state, source=origin,
                         fix=f"it is not an open_clip state dict of {config.clip_model_name}")
        model.clip.load_state_dict(state)
        return origin

    def build_criterion(self, config: OVSegConfig, loss: Any) -> nn.Module:
        """MaskFormer's set criterion over the proposals (focal + dice on whole masks), the preset's weights.

        ``loss.num_points`` and the sampling ratios do not apply: MaskFormer uses every pixel.
        """
        return build_maskformer_criterion(class_weight=loss.class_weight, mask_weight=loss.mask_weight,
                                          dice_weight=loss.dice_weight, no_object_weight=loss.no_object_weight,
                                          dec_layers=config.dec_layers)

    def benchmark_overrides(self, vocabulary: str, train_vocabulary: str | None = None
                            ) -> tuple[str | None, dict[str, Any]]:
        """The official class strings and ensemble weight for a benchmark's vocabulary."""
        official = f"ovseg_{vocabulary}"
        weight = BENCHMARK_ENSEMBLE_WEIGHTS.get(vocabulary)
        return (official if official in list_vocabularies() else None,
                {} if weight is None else {"ensemble_weight": weight})

    def tiny_config(self, kind: str | None = None) -> OVSegConfig:
        """A tiny config for tests and smoke runs (``kind``: swin or resnet)."""
        return tiny_config(kind or "swin")

    def describe(self, config: OVSegConfig) -> dict[str, str]:
        """Columns of ``vocabseg models``."""
        return {"backbone": f"{config.backbone} + {config.clip_model_name} (mask prompt {config.mask_prompt_depth})",
                "queries": str(config.num_queries)}


FAMILY = OVSegFamily()
