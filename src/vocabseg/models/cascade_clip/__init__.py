"""Cascade-CLIP (Li et al., ICML 2024, "Cascade-CLIP: Cascaded Vision-Language Embeddings Alignment
for Zero-Shot Semantic Segmentation"), top-down:

config (architecture + test-time settings) -> build -> model (prompted CLIP ViT, cascaded decoders,
sliding-window inference) with its parts: vpt_vit (visual prompts, level projections) and
cascade_decoder -> convert (official mmseg checkpoints) -> variants (the six released models).
Its training (data, mmseg augmentation, loss, transductive pseudo-labels) lives in
``vocabseg.train.cascade_clip``, imported only when a criterion is built.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vocabseg.clip.load import load_clip_state
from vocabseg.models.cascade_clip.build import build_cascade_clip
from vocabseg.models.cascade_clip.config import CascadeCLIPConfig, CascadeCLIPSettings
from vocabseg.models.cascade_clip.convert import KEY_TABLE, OFFICIAL_TELLTALE, guess_variant
from vocabseg.models.cascade_clip.model import CascadeCLIP, CascadeOutput
from vocabseg.models.cascade_clip.variants import VARIANTS, tiny_config
from vocabseg.models.protocol import FamilyBase, InferenceConfig, ModelVariant, Settings
from vocabseg.state_dict import check_state_dict
from vocabseg.text.builtin import list_vocabularies
from vocabseg.text.zero_shot import SEEN_SUFFIX

__all__ = ["FAMILY", "CascadeCLIP", "CascadeCLIPConfig", "CascadeCLIPFamily", "CascadeCLIPSettings", "CascadeOutput",
           "build_cascade_clip"]

# Official stride 426 for 512 windows: windows overlap by 86 pixels (1/6 of the window)
_STRIDE_RATIO = 426 / 512
# a benchmark's generic vocabulary -> the official class strings of the Cascade-CLIP embeddings
_OFFICIAL_VOCABULARIES = {"pascal_voc_20": "cascade_voc_20", "pascal_context_59": "cascade_context_59",
                          "coco_stuff": "cascade_coco_stuff_171"}


class CascadeCLIPFamily(FamilyBase):
    """Cascade-CLIP behind the :class:`~vocabseg.models.protocol.ModelFamily` protocol."""

    config_type = CascadeCLIPConfig
    settings_type = CascadeCLIPSettings
    variant_table = VARIANTS
    key_table = KEY_TABLE
    official_telltale = OFFICIAL_TELLTALE

    name: str = "cascade_clip"
    title: str = "Cascade-CLIP"
    tasks: tuple[str, ...] = ("semantic",)  # a per-pixel classifier: no segments to merge
    optional_prefixes: tuple[str, ...] = ()  # released checkpoints hold the whole CLIP

    def default_settings(self, config: CascadeCLIPConfig) -> Settings:
        window = config.image_size
        return Settings(InferenceConfig(min_size=window, max_size=1_000_000),
                        CascadeCLIPSettings(window=window, stride=round(window * _STRIDE_RATIO)))

    def build(self, config: CascadeCLIPConfig) -> CascadeCLIP:
        return build_cascade_clip(config)

    def guess_variant(self, state: Mapping[str, torch.Tensor], *, source: str) -> ModelVariant:
        return guess_variant(state, [factory() for factory in VARIANTS.values()], source=source)

    def load_clip_weights(self, model: Any, config: CascadeCLIPConfig, clip_weights: str | None) -> str:
        """Loads CLIP weights (OpenAI ViT-B/16 when training starts), the positional grid resized to the window."""
        state, origin = load_clip_state(config.clip_model_name, config.clip_pretrained, clip_weights)
        state = {k: v for k, v in state.items() if k != "logit_scale"}
        key = "visual.positional_embedding"
        if key in state:
            state[key] = resize_positional_embedding(state[key], model.clip.visual.positional_embedding.shape[0])
        check_state_dict(model.clip, state, source=origin,
                         fix=f"it is not an open_clip state dict of {config.clip_model_name}")
        model.clip.load_state_dict(state)
        return origin

    def build_criterion(self, config: CascadeCLIPConfig, loss: Any) -> nn.Module:
        """Sigmoid focal (x100) + dice on the summed mask logits, as the official recipe."""
        from vocabseg.train.cascade_clip.loss import build_cascade_criterion  # training code: not for inference

        return build_cascade_criterion(config, loss)

    def benchmark_overrides(self, vocabulary: str, train_vocabulary: str | None = None
                            ) -> tuple[str | None, dict[str, Any]]:
        """The official class strings of a benchmark's classes, where Cascade-CLIP has them; and for a
        model trained on another dataset (the cross-dataset protocol, e.g. COCO -> VOC) no seen-class
        offset: the official cross-dataset configs count every class seen, and an offset on all
        classes changes no label."""
        name = _OFFICIAL_VOCABULARIES.get(vocabulary, vocabulary)
        official = name if name in list_vocabularies() else None
        native = train_vocabulary is None or train_vocabulary == f"{official or vocabulary}{SEEN_SUFFIX}"
        return official if official != vocabulary else None, ({} if native else {"seen_offset": 0.0})

    def tiny_config(self, kind: str | None = None) -> CascadeCLIPConfig:
        """A tiny config for tests and smoke runs (one kind)."""
        return tiny_config()

    def describe(self, config: CascadeCLIPConfig) -> dict[str, str]:
        """Columns of ``vocabseg models``."""
        return {"backbone": f"{config.clip_model_name} + {config.prompt_tokens} prompt tokens",
                "queries": "one per class"}


def resize_positional_embedding(positional: torch.Tensor, length: int) -> torch.Tensor:
    """[1 + g*g, C] -> [length, C]: the class position kept, the grid resized bilinearly (as the official)."""
    if positional.shape[0] == length:
        return positional
    old, new = round((positional.shape[0] - 1) ** 0.5), round((length - 1) ** 0.5)
    grid = positional[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)  # [1, C, g, g]
    grid = F.interpolate(grid, size=(new, new), mode="bilinear", align_corners=False)
    return torch.cat([positional[:1], grid.flatten(2)[0].T])


FAMILY = CascadeCLIPFamily()
