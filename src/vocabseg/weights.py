"""Finding, downloading, reading and loading FC-CLIP checkpoints.

Formats read:
- official detectron2 checkpoints: ``{"model": state_dict}`` as ``.pth`` (torch) or
  ``.pkl`` (pickled numpy arrays), with or without the frozen CLIP weights;
- our own checkpoints: self-describing (architecture config inside).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .model.config import FCCLIPConfig, InferenceConfig
from .model.convert import (CLIP_PREFIX_OURS, CheckpointError, is_official_state_dict, official_to_vocabseg)
from .zoo import MODELS, ModelVariant, WeightsSpec, get_variant

VOCABSEG_FORMAT = "vocabseg.fcclip"


def cache_dir() -> Path:
    """Where downloaded checkpoints live: $VOCABSEG_HOME/checkpoints or ~/.cache/vocabseg/checkpoints."""
    root = os.environ.get("VOCABSEG_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "vocabseg")
    return Path(root) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Downloads ``url`` to ``target`` atomically (a partial file is never left under the final name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _fetch(url, partial, target, progress)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if sha256 and sha256_of(partial) != sha256:
        partial.unlink()
        raise CheckpointError(f"{url}: checksum mismatch (expected sha256 {sha256}); download it again")
    os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, target: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        if response.headers.get_content_type() == "text/html":
            # A sign-in or quota page instead of the file: never store it as a checkpoint.
            raise CheckpointError(f"{url} returned a web page, not the checkpoint (quota or sign-in); "
                                  f"download it in a browser and pass --weights PATH or save it as {target}")
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def fetch_official_weights(variant: ModelVariant, *, progress: bool = True) -> Path:
    """Path of the variant's official checkpoint, downloading it into the cache if needed."""
    spec: WeightsSpec | None = variant.weights
    if spec is None:
        raise CheckpointError(f"model {variant.name} has no official weights; pass --weights PATH")
    target = cache_dir() / spec.filename
    if target.exists():
        return target
    try:
        return download(spec.url, target, spec.sha256, progress=progress)
    except (OSError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"could not download the {variant.name} checkpoint ({type(error).__name__}: {error}); "
            f"download {spec.url} yourself and pass --weights PATH, or save it as {target}"
        ) from None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles detectron2 .pkl checkpoints: dicts of numpy arrays, nothing executable."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a checkpoint file into a dict, with a one-line error for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/pickle raise many types for corrupt files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}); the file is truncated or not a "
            "PyTorch/detectron2 checkpoint: download it again"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict with a 'model' entry")
    return data


@dataclass
class LoadedCheckpoint:
    """A checkpoint resolved to our key names."""

    state_dict: dict[str, torch.Tensor]
    config: FCCLIPConfig
    inference: InferenceConfig
    train_vocabulary: str
    has_clip: bool
    source: str


def parse_checkpoint(data: dict, *, source: str, variant: ModelVariant | None) -> LoadedCheckpoint:
    """Turns raw checkpoint contents into our state dict + architecture.

    Our checkpoints carry their config. Official ones do not: the architecture comes
    from ``variant`` when given, otherwise from the zoo entry whose shapes fit.
    """
    if data.get("format") == VOCABSEG_FORMAT:
        config = FCCLIPConfig.from_dict(data["config"])
        inference = InferenceConfig.from_dict(data.get("inference", {}))
        state = data["model"]
        train_vocab = data.get("train_vocabulary", "coco_panoptic")
    else:
        state = data.get("model", data)
        if not isinstance(state, dict) or not is_official_state_dict(state):
            raise CheckpointError(
                f"{source}: neither a vocabseg checkpoint nor an official FC-CLIP checkpoint "
                "(no 'sem_seg_head.predictor.query_feat.weight' in its 'model')"
            )
        state = official_to_vocabseg(state, source=source)
        variant = variant or _guess_variant(state, source)
        config, inference, train_vocab = variant.config, variant.inference, variant.train_vocabulary
    has_clip = any(k.startswith(CLIP_PREFIX_OURS) for k in state)
    return LoadedCheckpoint(state, config, inference, train_vocab, has_clip, source)


def _signature(state: dict) -> tuple:
    """Shapes that tell FC-CLIP variants apart without the CLIP weights."""
    return (
        tuple(state["pixel_decoder.input_proj.0.conv.weight"].shape[:2]),  # res5 channels
        tuple(state["transformer_decoder.class_embed.layers.2.weight"].shape),  # CLIP embed dim
        tuple(state["transformer_decoder.query_feat.weight"].shape),
    )


_RES5_CHANNELS = {"convnext_large_d_320": 1536, "RN50": 2048, "RN101": 2048, "RN50x4": 2560, "RN50x16": 3072, "RN50x64": 4096}


def _guess_variant(state: dict, source: str) -> ModelVariant:
    res5, embed, queries = _signature(state)
    matches = [
        v for v in (factory() for factory in MODELS.values())
        if _RES5_CHANNELS.get(v.config.clip_model_name) == res5[1]
        and v.config.embed_dim == embed[0] and v.config.num_queries == queries[0]
    ]
    if len(matches) != 1:
        names = [v.name for v in matches] or sorted(MODELS)
        raise CheckpointError(f"{source}: cannot tell which FC-CLIP variant this is; pass --model (one of {names})")
    return matches[0]


def check_state_dict(model: torch.nn.Module, state: dict, *, source: str, allow_missing_clip: bool,
                     fix: str = "is it a checkpoint of another model? pass the matching --model") -> None:
    """Strict key and shape check with a one-line error listing what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not (allow_missing_clip and k.startswith(CLIP_PREFIX_OURS))]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit this architecture: {'; '.join(problems)}; {fix}")


def load_clip_state(config: FCCLIPConfig, clip_weights: str | None) -> tuple[dict, str]:
    """CLIP weights (open_clip key names) from a local file or open_clip's pretrained tag."""
    if clip_weights:
        data = read_checkpoint(clip_weights)
        state = data.get("state_dict", data)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        return state, str(clip_weights)
    import open_clip

    pretrained_cfg = open_clip.get_pretrained_cfg(config.clip_model_name, config.clip_pretrained)
    if not pretrained_cfg:
        raise CheckpointError(f"open_clip has no pretrained tag {config.clip_pretrained!r} for {config.clip_model_name}; "
                              "pass --clip-weights PATH")
    try:
        path = open_clip.download_pretrained(pretrained_cfg)
    except Exception as error:  # network errors from urllib / huggingface_hub
        where = pretrained_cfg.get("hf_hub") or pretrained_cfg.get("url")
        raise CheckpointError(
            f"CLIP weights {config.clip_model_name}/{config.clip_pretrained} are not in the checkpoint and could not be "
            f"downloaded ({type(error).__name__}); get them from {where} and pass --clip-weights PATH"
        ) from None
    state = read_checkpoint(path)
    return state.get("state_dict", state), f"open_clip:{config.clip_model_name}/{config.clip_pretrained}"


def load_clip_weights(model: torch.nn.Module, config: FCCLIPConfig, clip_weights: str | None) -> str:
    """Loads the frozen CLIP's weights (a file, or open_clip's pretrained tag); returns their origin."""
    state, origin = load_clip_state(config, clip_weights)
    check_state_dict(model.backbone.clip, state, source=origin, allow_missing_clip=False,
                     fix=f"it is not an open_clip state dict of {config.clip_model_name}")
    model.backbone.clip.load_state_dict(state)
    return origin


def resolve_checkpoint(name_or_path: str, *, weights: str | None = None, progress: bool = True) -> LoadedCheckpoint:
    """``name_or_path``: a zoo name (weights from ``weights`` or the cache/download) or a checkpoint path."""
    if name_or_path in MODELS:
        variant = get_variant(name_or_path)
        path = Path(weights) if weights else fetch_official_weights(variant, progress=progress)
    else:
        variant, path = None, Path(weights or name_or_path)
        if not path.exists() and weights is None:
            raise CheckpointError(f"{name_or_path!r} is neither a model name ({', '.join(sorted(MODELS))}) nor a file")
    return parse_checkpoint(read_checkpoint(path), source=str(path), variant=variant)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: FCCLIPConfig, inference: InferenceConfig,
                    *, train_vocabulary: str = "coco_panoptic", include_clip: bool = True, extra: dict | None = None) -> None:
    """Writes a self-describing vocabseg checkpoint atomically."""
    state = {k: v for k, v in model.state_dict().items() if include_clip or not k.startswith(CLIP_PREFIX_OURS)}
    payload = {"format": VOCABSEG_FORMAT, "version": 1, "config": config.to_dict(), "inference": inference.to_dict(),
               "train_vocabulary": train_vocabulary, "model": state, **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(payload, partial)
    os.replace(partial, path)


def log(message: str) -> None:
    print(message, file=sys.stderr)
