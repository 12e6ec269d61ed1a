"""Training presets: one YAML file per recipe, plus ``key.sub=value`` overrides.

A preset is a built-in name (``src/vocabseg/presets/<name>.yaml``) or a YAML
path. There is no inheritance: a preset spells out its recipe. Every key is a
field below; an unknown key is an error that lists the valid ones. Override
values are parsed as YAML (``solver.steps=[100,200]``, ``model.clip_weights=null``).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vocabseg.errors import ConfigError
from vocabseg.fileio import atomic_write
from vocabseg.models import ModelFamily, get_family


@dataclass
class ModelSection:
    family: str = "fcclip"  # model family (vocabseg.models.FAMILIES); a variant's own family wins
    variant: str | None = None  # zoo name (vocabseg models): architecture + inference defaults
    tiny: bool = False  # start from the family's tiny test architecture (smoke runs; no variant)
    arch: dict = field(default_factory=dict)  # the family's config fields overriding the variant's (or the defaults)
    clip_weights: str | None = None  # open_clip state-dict file; None: download the config's open_clip tag
    load_clip: bool = True  # False keeps the frozen CLIP random (smoke tests only)
    init: str | None = None  # starting weights as --init (which wins): a transductive run's inductive checkpoint
    backbone_init: str | None = None  # ImageNet weights of the backbone alone (OVSeg: Swin-B 22k .pth, R-103.pkl)


@dataclass
class DataSection:
    format: str = "registered"  # registered | panoptic_json | semantic | synthetic
    name: str = "coco_panoptic_train"  # registered: split name (vocabseg.data.list_datasets())
    root: str = "datasets"  # registered: the datasets root
    images: str | None = None  # panoptic_json, semantic: image folder
    panoptic_dir: str | None = None  # panoptic_json: PNG folder
    panoptic_json: str | None = None  # panoptic_json: annotation file
    labels: str | None = None  # semantic: label-map folder (<image stem>.png, value = class index)
    # semantic: class file or built-in name; panoptic_json: optional (default: json categories)
    vocabulary: str | None = None
    ignore_label: int = 255  # semantic: label value of unlabelled pixels
    num_images: int = 8  # synthetic: dataset size
    num_workers: int = 4  # data-loading processes per GPU


@dataclass
class InputSection:
    image_size: int = 1024  # LSJ target and crop size
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip: bool = True  # random horizontal flip
    # lsj: FC-CLIP's large-scale jitter (min/max_scale of image_size). mmseg: the mmsegmentation train
    # pipeline (Cascade-CLIP): resize to fit resize_scale x U(min_scale, max_scale), image_size crop
    # with cat_max_ratio, flip, photometric distortion; semantic targets and a zero_shot split.
    augment: str = "lsj"
    resize_scale: list = field(default_factory=lambda: [2048, 512])  # mmseg: Resize img_scale (long, short)
    cat_max_ratio: float = 1.0  # mmseg: redraw crops where one class has this share of the labels (1: never)
    photometric: bool = False  # mmseg: PhotoMetricDistortion (brightness, contrast, saturation, hue)
    # mmseg: instead of the ratio, detectron2's ResizeShortestEdge "choice" (MaskFormer/OVSeg): the short
    # side one of these, the long side capped at resize_scale[0]; empty: the ratio range
    short_side_choices: list = field(default_factory=list)


@dataclass
class LossSection:
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544  # points per mask (112 x 112)
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75


@dataclass
class SolverSection:
    lr: float = 1e-4
    weight_decay: float = 0.05
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0
    backbone_multiplier: float = 1.0  # lr factor of parameters under a module named "backbone" (OVSeg R101c: 0.1)
    no_decay_names: list = field(default_factory=list)  # parameter names (substrings) without weight decay
    max_iter: int = 368750
    steps: list = field(default_factory=lambda: [327778, 355092])  # iterations where lr *= gamma
    gamma: float = 0.1
    warmup_iters: int = 10
    warmup_factor: float = 1.0
    schedule: str = "step"  # step: x gamma at each of steps | poly: (lr - min_lr)(1 - t/max_iter)^poly_power + min_lr
    poly_power: float = 0.9
    min_lr: float = 0.0  # poly: the floor (absolute)
    schedule_scale: float = 1.0  # multiplies max_iter and steps (short runs keep the recipe's shape)
    batch_size: int = 16  # effective batch: images per optimizer step, all GPUs together
    batch_per_gpu: int = 2  # images per forward pass
    accum_steps: int | None = None  # None: batch_size / (batch_per_gpu x world size)
    amp: str = "fp16"  # off | fp16 (with loss scaling) | bf16
    clip_grad: float = 0.01  # full-model gradient L2 norm; 0 disables
    checkpoint_period: int = 5000
    eval_period: int = 5000  # 0 disables; needs an evaluation hook
    best_metric: str = "panoptic/PQ"  # metric of the evaluation hook that picks best.pth (higher is better)
    log_period: int = 20
    seed: int = 0


@dataclass
class EvalSection:
    dataset: str | None = None  # split of vocabseg.data (e.g. ade20k_panoptic_val); None: no periodic evaluation
    root: str = "datasets"  # the datasets root of that split
    tasks: list | None = None  # subset of panoptic / semantic / instance; None: all the split has
    limit: int | None = None  # evaluate the first N images only (quick checks during training)


@dataclass
class ZeroShotSection:
    """Zero-shot training on part of the data vocabulary (Cascade-CLIP's inductive/transductive recipes)."""

    seen_classes: list | None = None  # classes trained with their labels: indices or names of the data vocabulary
    unseen_classes: list | None = None  # or the held-out ones (the others are seen); both None: all seen
    transductive: bool = False  # unseen-class pixels are trained on the model's own pseudo-labels


@dataclass
class TrainConfig:
    output: str = "output"  # run folder: checkpoints, TensorBoard logs, config.yaml
    device: str = "auto"  # auto | cpu | cuda
    text_cache: str | None = None  # text-embedding cache folder (default: ~/.cache/vocabseg/text)
    # a .npy [classes, width] of the data vocabulary's class embeddings used as stored instead of the text
    # tower (the official Cascade-CLIP files, e.g. voc12_single.npy: one template, not the family's 15)
    text_embeddings: str | None = None
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    input: InputSection = field(default_factory=InputSection)
    loss: LossSection = field(default_factory=LossSection)
    solver: SolverSection = field(default_factory=SolverSection)
    eval: EvalSection = field(default_factory=EvalSection)
    zero_shot: ZeroShotSection = field(default_factory=ZeroShotSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_presets() -> list[str]:
    folder = resources.files("vocabseg").joinpath("presets")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_preset(name_or_path: str) -> dict:
    """The raw mapping of a built-in preset name or a YAML file."""
    if name_or_path in list_presets():
        preset = resources.files("vocabseg").joinpath("presets").joinpath(f"{name_or_path}.yaml")
        text = preset.read_text(encoding="utf-8")
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text(encoding="utf-8")
    else:
        raise ConfigError(f"unknown preset {name_or_path!r}; use a YAML file or one of: {', '.join(list_presets())}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"preset {name_or_path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name_or_path} must be a mapping of sections (model, data, solver, ...)")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Returns a copy of ``data`` with each ``a.b.c=value`` set (value parsed as YAML)."""
    data = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value, e.g. solver.lr=0.0002")
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()  # YAML 1.1 reads off/on/yes/no as booleans; keep words as words (amp=off)
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node[leaf] = value
    return data


def load_config(preset: str, overrides: list[str] | None = None) -> TrainConfig:
    """Preset + overrides -> validated TrainConfig."""
    return config_from_dict(apply_overrides(read_preset(preset), overrides or []))


def config_from_dict(data: dict) -> TrainConfig:
    """Validates keys and value types against the schema."""
    sections = {f.name for f in fields(TrainConfig) if dataclasses.is_dataclass(f.default_factory)}
    unknown = [k for k in _flatten(data)
               if k not in valid_keys() and k not in sections and not _is_arch_key(k, data.get("model", {}))]
    if unknown and unknown[0].startswith("model.arch."):
        family = _family_of(data.get("model", {}))
        raise ConfigError(f"unknown key {unknown[0]!r}; model.arch takes {family.title} config fields: "
                          f"{', '.join(_arch_fields(family))}")
    if unknown:
        hint = difflib.get_close_matches(unknown[0], valid_keys(), n=1)
        raise ConfigError(f"unknown key {unknown[0]!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                          f"valid keys: {', '.join(valid_keys())}")
    return _build(TrainConfig, data, prefix="")


def valid_keys() -> list[str]:
    """Every dotted key a preset may set (model.arch.* takes the family's config fields)."""
    return dotted_keys(TrainConfig)


def dotted_keys(schema: type) -> list[str]:
    """``section.field`` of each field of the dataclass ``schema``'s sections, and its top-level fields."""
    keys = []
    for f in fields(schema):
        if dataclasses.is_dataclass(f.default_factory):
            keys += [f"{f.name}.{sub.name}" for sub in fields(f.default_factory)]
        else:
            keys.append(f.name)
    return keys


def _family_of(model: dict) -> ModelFamily:
    """The family a preset's model section builds: its variant's, else ``model.family``."""
    if model.get("variant"):
        from vocabseg.zoo import get_variant

        return get_family(get_variant(model["variant"]).family)
    return get_family(model.get("family") or "fcclip")


def _arch_fields(family: ModelFamily) -> list[str]:
    return [f.name for f in fields(family.config_from_dict({}))]


def _is_arch_key(key: str, model: dict) -> bool:
    parts = key.split(".")
    return len(parts) >= 3 and parts[:2] == ["model", "arch"] and parts[2] in _arch_fields(_family_of(model))


def _flatten(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted != "model.arch" and not dotted.startswith("model.arch."):
            keys += _flatten(value, dotted + ".")
        elif dotted == "model.arch" and isinstance(value, dict):
            keys += [f"model.arch.{k}" for k in value] or [dotted]
        else:
            keys.append(dotted)
    return keys


def _build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        key, value = f"{prefix}{f.name}", data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a section (a mapping), got {value!r}")
            values[f.name] = _build(hints[f.name], value, prefix=key + ".")
        else:
            values[f.name] = _coerce(value, hints[f.name], key)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Checks one value against its field type; ints are accepted for floats, '1e-4' strings too."""
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{key} cannot be null")
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    base = typing.get_origin(base) or base
    if base is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif base in (str, bool, dict, list) and isinstance(value, base):
        return value
    raise ConfigError(f"{key} must be {getattr(base, '__name__', base)}, got {value!r}")


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def save_config(config: TrainConfig, path: Path) -> None:
    """Writes the run's resolved recipe as YAML (atomically), a preset that reproduces it."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
