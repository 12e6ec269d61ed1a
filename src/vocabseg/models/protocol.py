"""What the generic code (predictor, zoo, checkpoints, eval, train, CLI) may rely on in a model family.

A family is one paper: its config dataclass, builder, model, inference math, official-checkpoint
conversion, variants and training criterion live in ``vocabseg/models/<family>/``. The rest of
the package talks to it only through :class:`ModelFamily` and :class:`SegmentationModel`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from vocabseg.errors import ConfigError
from vocabseg.state_dict import KeyTable
from vocabseg.text.classifier import TextClassifier

TASKS = ("panoptic", "semantic", "instance")
PRECISIONS = ("auto", "fp32", "fast", "bf16")  # InferenceConfig.precision (vocabseg.precision.choose_recipe)
ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], values: Mapping[str, Any], what: str) -> ConfigT:
    """``cls(**values)`` for a config dataclass, refusing unknown fields with a one-line error.

    Lists (as YAML/JSON give them) become tuples where the field's default is a tuple.
    """
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; valid fields: {sorted(known)}")
    converted = {k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple) else v
                 for k, v in values.items()}
    return cls(**converted)


@dataclass(frozen=True)
class InferenceConfig:
    """Family-independent test-time settings: input size and the Mask2Former-style merges."""

    min_size: int = 800  # test resize: shortest edge
    max_size: int = 1333  # test resize: longest edge cap
    object_mask_threshold: float = 0.0  # minimum class score of a query kept for panoptic
    overlap_threshold: float = 0.8  # visible fraction of a mask needed to keep a segment
    instances_per_image: int = 100
    max_pixels: int = 100_000_000  # larger input images are refused (0: no limit); memory grows with pixels
    # "fp32": exact, the reference's numbers; "fast": fast mode, bf16 only where the device computes
    # it natively (vocabseg.precision.choose_recipe); "bf16": fast mode in bf16 on any device;
    # "auto": fast on CUDA, exact elsewhere. `vocabseg bench` measures fast's deviation
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"inference setting precision={self.precision!r} is not one of {list(PRECISIONS)}; "
                              "use fp32 (exact), fast (bf16 where native), bf16 (fast, bf16 forced) or auto "
                              "(fast on CUDA only)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InferenceConfig:
        return config_from_dict(cls, values, "inference setting")


@dataclass(frozen=True)
class Settings:
    """All test-time settings of a model: the generic ones and its family's own (a dataclass)."""

    inference: InferenceConfig
    family: Any  # the family's settings dataclass, e.g. FC-CLIP's ensemble weights

    def override(self, values: Mapping[str, Any] | None) -> Settings:
        """Settings with ``values`` applied; each key names a generic or a family field."""
        values = dict(values or {})
        generic = {k: values.pop(k) for k in list(values) if k in InferenceConfig.__dataclass_fields__}
        family_fields = {f.name for f in fields(self.family)}
        unknown = sorted(set(values) - family_fields)
        if unknown:
            valid = sorted(set(InferenceConfig.__dataclass_fields__) | family_fields)
            raise ConfigError(f"unknown inference setting(s) {unknown}; valid settings: {valid}")
        return Settings(_replace_typed(self.inference, generic), _replace_typed(self.family, values))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"inference": self.inference.to_dict(), "family": asdict(self.family)}


def _replace_typed(settings: Any, values: dict[str, Any]) -> Any:
    """``replace(settings, **values)`` where each value must have its field's type (an int may be a float)."""
    for key, value in values.items():
        current = getattr(settings, key)
        kind = float if isinstance(current, float) else type(current)
        matches = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if isinstance(value, bool) != isinstance(current, bool) or not matches:
            raise ConfigError(f"inference setting {key}={value!r} must be a {kind.__name__} "
                              f"(currently {current!r})")
        values[key] = kind(value)
    return replace(settings, **values)


@dataclass
class QueryOutput:
    """Per-query predictions of a padded batch: what panoptic/semantic/instance merging needs."""

    mask_cls: torch.Tensor  # [B, Q, K + 1] class log-probabilities, void last
    mask_logits: torch.Tensor  # [B, Q, H_pad / stride, W_pad / stride]
    mask_stride: int  # input pixels per mask pixel
    details: dict[str, torch.Tensor] = field(default_factory=dict)  # family tensors [B, ...] for analysis
    # [B, Q, K] class probabilities to use as they are for semantic output (None: softmax of
    # mask_cls without void). OVSeg's ensemble is such a score: it does not sum to one.
    class_probs: torch.Tensor | None = None
    # [B, K, H_pad, W_pad] per-class scores at the padded input size that replace the query merge
    # for semantic output (OVSeg's demo mode); a pixel where every score is 0 is left unassigned.
    semantic_scores: torch.Tensor | None = None
    # a pixel whose best semantic score is not above this stays unassigned (None: every pixel is labelled)
    unassigned_at_or_below: float | None = 0.0


@dataclass
class InputBatch:
    """A batch of test images as the model sees them, and as the region branch of OVSeg crops them."""

    images: torch.Tensor  # [B, 3, H_pad, W_pad] normalised, zero-padded
    image_sizes: list[tuple[int, int]]  # (h, w) of each resized image inside the padding
    resized: list[torch.Tensor]  # [3, h, w] uint8 resized images, unnormalised and unpadded


@dataclass(frozen=True)
class ResizeAndPad:
    """Input policy: shortest-edge resize (detectron2's or mmseg's), normalisation, zero padding to a multiple."""

    min_size: int
    max_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    size_divisibility: int
    resize_backend: str = "pil"  # "pil": detectron2's resize; "cv2": mmseg's (see preprocess.resize_image)


@dataclass(frozen=True)
class WeightsSpec:
    """Where an official checkpoint comes from."""

    filename: str  # name in the cache directory
    url: str  # official download location
    sha256: str | None = None  # checked after download when known
    includes_clip: bool = True  # the released file holds the frozen CLIP's weights
    manual: str = ""  # set when no program can fetch ``url`` (a share page): how a person gets the file


@dataclass(frozen=True)
class ModelVariant:
    """A named, ready-to-use model: family, architecture, settings and official weights."""

    name: str
    family: str  # key of vocabseg.models.FAMILIES
    config: Any  # the family's config dataclass
    settings: Settings
    weights: WeightsSpec | None
    train_vocabulary: str = "coco_panoptic"  # decides which classes count as seen
    description: str = ""
    reported: dict[str, float] = field(default_factory=dict)  # the paper's figures, "<benchmark>_<metric>"


@runtime_checkable
class SegmentationModel(Protocol):
    """An ``nn.Module`` of a family, as the generic code drives it."""

    def input_policy(self, settings: Settings) -> ResizeAndPad:
        """How images become the network input."""
        ...

    def inference(self, batch: InputBatch, classifier: TextClassifier, settings: Settings) -> QueryOutput:
        """Test-time outputs of a batch of resized images."""
        ...

    def forward(self, images: torch.Tensor, classifier: TextClassifier) -> Any:
        """Training outputs, the input of the family's criterion."""
        ...

    def text_encoder(self) -> Any:
        """The frozen text tower as a :class:`vocabseg.clip.TextEncoder`."""
        ...


class ModelFamily(Protocol):
    """One paper's model behind the generic code."""

    name: str  # registry key, e.g. "fcclip"; written into checkpoints
    title: str  # human name, e.g. "FC-CLIP"
    tasks: tuple[str, ...]  # outputs it can produce, a subset of TASKS
    optional_prefixes: tuple[str, ...]  # state-dict prefixes a checkpoint may omit (frozen CLIP weights)

    def config_from_dict(self, values: Mapping[str, Any]) -> Any: ...
    def default_settings(self, config: Any) -> Settings: ...
    def settings_from_dict(self, values: Mapping[str, Any]) -> Any: ...
    def build(self, config: Any) -> nn.Module: ...
    def variants(self) -> dict[str, Callable[[], ModelVariant]]: ...
    def is_official(self, state: Mapping[str, Any]) -> bool: ...
    def convert_official(self, state: Mapping[str, Any], *, source: str) -> dict[str, torch.Tensor]: ...
    def guess_variant(self, state: Mapping[str, torch.Tensor], *, source: str) -> ModelVariant: ...
    def load_clip_weights(self, model: nn.Module, config: Any, clip_weights: str | None) -> str: ...
    def build_criterion(self, config: Any, loss: Any) -> nn.Module: ...
    def benchmark_overrides(self, vocabulary: str, train_vocabulary: str | None = None
                            ) -> tuple[str | None, dict[str, Any]]:
        """For a benchmark's vocabulary: the built-in vocabulary with the family's official class
        strings (None: the benchmark's own) and setting overrides of its official evaluation, for a
        model trained on ``train_vocabulary`` (the cross-dataset protocols differ)."""
        ...

    def tiny_config(self, kind: str | None = None) -> Any: ...
    def describe(self, config: Any) -> dict[str, str]: ...


class FamilyBase:
    """The plumbing every family shares, from a few class attributes: config and settings from
    dicts, its variants, recognising and converting its official checkpoints by a key table."""

    config_type: Any  # the config dataclass (with from_dict)
    settings_type: Any  # the family's settings dataclass (with from_dict)
    variant_table: dict[str, Callable[[], ModelVariant]]
    key_table: KeyTable  # official checkpoint names <-> ours
    official_telltale: str  # a key only the family's official checkpoints have

    def config_from_dict(self, values: Mapping[str, Any]) -> Any:
        return self.config_type.from_dict(dict(values))

    def settings_from_dict(self, values: Mapping[str, Any]) -> Any:
        return self.settings_type.from_dict(dict(values))

    def variants(self) -> dict[str, Callable[[], ModelVariant]]:
        return self.variant_table

    def is_official(self, state: Mapping[str, Any]) -> bool:
        return self.official_telltale in state

    def convert_official(self, state: Mapping[str, Any], *, source: str) -> dict[str, torch.Tensor]:
        return self.key_table.forward(state, source=source)
