"""Reading, recognising and writing checkpoints of every model family.

Formats read:
- vocabseg checkpoints v2: ``{"format": "vocabseg", "version": 2, "family", "config",
  "settings": {"inference", "family"}, "train_vocabulary", "model"}`` (self-describing);
- vocabseg checkpoints v1 (FC-CLIP only): ``{"format": "vocabseg.fcclip", "config",
  "inference", "train_vocabulary", "model"}``;
- each family's official checkpoints (e.g. detectron2 ``{"model": state_dict}`` as ``.pth`` or
  ``.pkl``), recognised by the family and converted by its explicit key table;
- shared folders (``config.json`` + ``model.safetensors``) and ``hf-hub:`` names, read (and written by
  :func:`push_checkpoint`) through :mod:`vocabseg.hub`.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vocabseg import hub
from vocabseg.downloads import fetch_official_weights
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.fileio import read_checkpoint, save_torch
from vocabseg.models import FAMILIES, ModelFamily, ModelVariant, Settings, get_family
from vocabseg.state_dict import check_state_dict
from vocabseg.zoo import get_variant, list_models

__all__ = ["FORMAT", "FORMAT_V1", "LoadedCheckpoint", "LoadedModel", "checkpoint_header", "load_model",
           "parse_checkpoint", "push_checkpoint", "read_checkpoint", "resolve_checkpoint", "save_checkpoint"]

FORMAT, VERSION = "vocabseg", 2
FORMAT_V1 = "vocabseg.fcclip"  # version 1: FC-CLIP only, generic and ensemble settings in one "inference" dict
logger = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    """A checkpoint resolved to a family, our key names and its settings."""

    family: ModelFamily
    state_dict: dict[str, torch.Tensor]
    config: Any  # the family's config dataclass
    settings: Settings
    train_vocabulary: str
    source: str
    data: dict  # the whole file (training checkpoints keep their trainer state here)

    @property
    def has_frozen_parts(self) -> bool:
        """Whether the frozen parts a family may omit (the CLIP weights) are in the file."""
        prefixes = self.family.optional_prefixes
        return not prefixes or any(k.startswith(prefixes) for k in self.state_dict)


def parse_checkpoint(data: dict, *, source: str, variant: ModelVariant | None = None) -> LoadedCheckpoint:
    """Turns raw checkpoint contents into our state dict, family, architecture and settings.

    Our checkpoints carry their config. Official ones do not: the architecture comes from
    ``variant`` when given, otherwise from the family's variant whose shapes fit.
    """
    if data.get("format") in (FORMAT, FORMAT_V1):
        loaded = _parse_v2(data, source) if data["format"] == FORMAT else _parse_v1(data, source)
        if variant is not None and variant.family != loaded.family.name:
            raise CheckpointError(f"{source} is a vocabseg {loaded.family.title} checkpoint, not one of "
                                  f"{variant.name}; pass it as --model PATH (without --weights) or give the "
                                  "matching --model")
        return loaded
    state = data.get("model", data.get("state_dict", data))
    family = _official_family(state) if isinstance(state, dict) else None
    if family is None:
        titles = ", ".join(f.title for f in FAMILIES.values())
        raise CheckpointError(f"{source}: neither a vocabseg checkpoint nor an official checkpoint of {titles}")
    if variant is not None and variant.family != family.name:
        raise CheckpointError(f"{source} is an official {family.title} checkpoint, not one of {variant.name}; "
                              "pass the matching --model")
    state = family.convert_official(state, source=source)
    variant = variant or family.guess_variant(state, source=source)
    return LoadedCheckpoint(family, state, variant.config, variant.settings, variant.train_vocabulary, source, data)


def _official_family(state: dict) -> ModelFamily | None:
    return next((f for f in FAMILIES.values() if f.is_official(state)), None)


def _parse_v2(data: dict, source: str) -> LoadedCheckpoint:
    try:
        family = get_family(data["family"])
        config = family.config_from_dict(data["config"])
        defaults = family.default_settings(config)
        settings = Settings(defaults.inference.from_dict(data["settings"]["inference"]),
                            family.settings_from_dict(data["settings"]["family"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: unreadable vocabseg checkpoint header ({type(error).__name__}: {error}); "
                              "was it written by a newer vocabseg?") from None
    return LoadedCheckpoint(family, data["model"], config, settings, data.get("train_vocabulary", "coco_panoptic"),
                            source, data)


def _parse_v1(data: dict, source: str) -> LoadedCheckpoint:
    family = get_family("fcclip")
    try:
        config = family.config_from_dict(data["config"])
        settings = family.default_settings(config).override(data.get("inference", {}))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: unreadable vocabseg v1 checkpoint header ({error})") from None
    return LoadedCheckpoint(family, data["model"], config, settings, data.get("train_vocabulary", "coco_panoptic"),
                            source, data)


def resolve_checkpoint(name_or_path: str, *, weights: str | None = None, progress: bool = True) -> LoadedCheckpoint:
    """``name_or_path``: a zoo name (weights from ``weights`` or the cache/download), a checkpoint path,
    a shared folder (``config.json`` + ``model.safetensors``) or ``hf-hub:org/name[@revision]``."""
    if name_or_path in list_models():
        variant = get_variant(name_or_path)
        path = Path(weights) if weights else fetch_official_weights(variant, progress=progress)
    elif weights is None and name_or_path.startswith(hub.HUB_PREFIX):
        variant, path = None, hub.download_pretrained(name_or_path)
    else:
        variant, path = None, Path(weights or name_or_path)
        if not path.exists() and weights is None:
            raise CheckpointError(f"{name_or_path!r} is neither a model name ({', '.join(list_models())}), "
                                  "a file nor hf-hub:org/name")
    data = hub.read_pretrained(path) if hub.is_pretrained(path) else read_checkpoint(path)
    return parse_checkpoint(data, source=str(path), variant=variant)


@dataclass
class LoadedModel:
    """A built model with its weights, and everything that describes it."""

    family: ModelFamily
    model: nn.Module
    config: Any
    settings: Settings
    train_vocabulary: str
    source: str


def load_model(name_or_path: str, *, weights: str | None = None, clip_weights: str | None = None,
               progress: bool = True) -> LoadedModel:
    """Resolve -> build -> load weights (strictly; frozen CLIP weights from their own file if needed)."""
    ckpt = resolve_checkpoint(name_or_path, weights=weights, progress=progress)
    model = ckpt.family.build(ckpt.config)
    load_weights(model, ckpt)
    if not ckpt.has_frozen_parts or clip_weights:
        origin = ckpt.family.load_clip_weights(model, ckpt.config, clip_weights)
        logger.info("CLIP weights not in %s: loaded from %s" if not ckpt.has_frozen_parts
                    else "CLIP weights of %s replaced by %s", ckpt.source, origin)
    return LoadedModel(ckpt.family, model, ckpt.config, ckpt.settings, ckpt.train_vocabulary, ckpt.source)


def load_weights(model: nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Strict key/shape check (the family's frozen parts may be absent), then load."""
    check_state_dict(model, ckpt.state_dict, source=ckpt.source, optional_prefixes=ckpt.family.optional_prefixes)
    model.load_state_dict(ckpt.state_dict, strict=False)


def checkpoint_header(family: ModelFamily, config: Any, settings: Settings, train_vocabulary: str) -> dict[str, Any]:
    """What describes a model in a vocabseg checkpoint (format v2): a ``.pth``'s keys besides "model", and
    a shared folder's ``config.json``."""
    return {"format": FORMAT, "version": VERSION, "family": family.name, "config": config.to_dict(),
            "settings": settings.to_dict(), "train_vocabulary": train_vocabulary}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, family: ModelFamily, config: Any, settings: Settings,
                    train_vocabulary: str = "coco_panoptic", include_frozen: bool = True,
                    extra: dict | None = None) -> Path:
    """Writes a self-describing vocabseg checkpoint (format v2) atomically."""
    prefixes = family.optional_prefixes
    state = {k: v for k, v in model.state_dict().items() if include_frozen or not (prefixes and k.startswith(prefixes))}
    payload = {**checkpoint_header(family, config, settings, train_vocabulary), "model": state, **(extra or {})}
    return save_torch(path, payload)


def push_checkpoint(name_or_path: str, *, repo_id: str | None = None, local_dir: str | None = None,
                    weights: str | None = None, clip_weights: str | None = None, revision: str | None = None,
                    private: bool = False) -> str:
    """Loads any checkpoint vocabseg reads and shares it as a folder (``local_dir``) or a hub repo (``repo_id``)."""
    if (repo_id is None) == (local_dir is None):
        raise ConfigError("give exactly one of --repo ORG/NAME (the hub) or --local-dir DIR (a folder)")
    loaded = load_model(name_or_path, weights=weights, clip_weights=clip_weights)
    header = checkpoint_header(loaded.family, loaded.config, loaded.settings, loaded.train_vocabulary)
    if local_dir is not None:
        return str(hub.save_pretrained(local_dir, loaded.model, header=header, title=loaded.family.title,
                                       source=loaded.source))
    assert repo_id is not None
    with tempfile.TemporaryDirectory(prefix="vocabseg-push-") as folder:
        hub.save_pretrained(folder, loaded.model, header=header, title=loaded.family.title, source=loaded.source,
                            repo_id=repo_id)
        return hub.push(Path(folder), repo_id, revision=revision, private=private)
