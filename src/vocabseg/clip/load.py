"""Building open_clip models and loading their (frozen) weights."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import open_clip
from torch import nn

from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.fileio import read_checkpoint
from vocabseg.state_dict import check_state_dict


class _DropOpenClipRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname


@contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Hides open_clip's root-logger notes (e.g. 'no pretrained weights') without touching the root level."""
    root, quiet = logging.getLogger(), _DropOpenClipRecords()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def create_clip(model_name: str, *, quick_gelu: bool = False) -> nn.Module:
    """An open_clip model of a registered architecture with random weights (loaded afterwards)."""
    if model_name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    with _quiet_open_clip():
        return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)


def build_clip(model_name: str, *, quick_gelu: bool = False, clip_config: dict | None = None) -> nn.Module:
    """An open_clip ``CLIP`` from an explicit config (custom CLIPs, tests) or a registered name."""
    if clip_config is None:
        return create_clip(model_name, quick_gelu=quick_gelu)
    cfg = dict(clip_config)
    return open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                          quick_gelu=quick_gelu)


def load_clip_state(model_name: str, pretrained: str, clip_weights: str | None) -> tuple[dict, str]:
    """CLIP weights (open_clip key names) from a local file or open_clip's pretrained tag, and their origin."""
    if clip_weights:
        data = read_checkpoint(clip_weights)
        state = data.get("state_dict", data)
        return {k.removeprefix("module."): v for k, v in state.items()}, str(clip_weights)
    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not pretrained_cfg:
        raise CheckpointError(f"open_clip has no pretrained tag {pretrained!r} for {model_name}; "
                              "pass --clip-weights PATH")
    try:
        path = open_clip.download_pretrained(pretrained_cfg)
    except Exception as error:  # network errors from urllib / huggingface_hub
        where = pretrained_cfg.get("hf_hub") or pretrained_cfg.get("url")
        raise CheckpointError(
            f"CLIP weights {model_name}/{pretrained} are not in the checkpoint and could not be "
            f"downloaded ({type(error).__name__}); get them from {where} and pass --clip-weights PATH"
        ) from None
    state = read_checkpoint(path)
    return state.get("state_dict", state), f"open_clip:{model_name}/{pretrained}"


def load_clip_weights(clip: nn.Module, model_name: str, pretrained: str, clip_weights: str | None) -> str:
    """Loads a frozen CLIP's weights (a file, or open_clip's pretrained tag); returns their origin."""
    state, origin = load_clip_state(model_name, pretrained, clip_weights)
    check_state_dict(clip, state, source=origin, fix=f"it is not an open_clip state dict of {model_name}")
    clip.load_state_dict(state)
    return origin
