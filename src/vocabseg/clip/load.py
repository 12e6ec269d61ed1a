"""Building open_clip models and loading their (frozen) weights."""
from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import open_clip
import safetensors.torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
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


# Loggers of the download stack; offline, each retry of each file logs a warning.
_DOWNLOAD_LOGGERS = ("huggingface_hub", "urllib3", "httpx", "httpcore", "filelock")
_REACH_TIMEOUT_S = 3.0  # a reachable hub answers a TCP connect well within this


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """Silences the download stack's warnings and log lines; vocabseg's own error says what failed."""
    loggers = [logging.getLogger(name) for name in _DOWNLOAD_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _hf_offline() -> bool:
    """HF_HUB_OFFLINE set now, or when huggingface_hub was imported."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return flag in {"1", "ON", "YES", "TRUE"} or bool(hf_constants.HF_HUB_OFFLINE)


def _download_url(pretrained_cfg: dict) -> str:
    """Where open_clip would download these weights from (it prefers the HF hub, or its mirror)."""
    return hf_constants.ENDPOINT if pretrained_cfg.get("hf_hub") else pretrained_cfg.get("url", "")


def _reachable(url: str) -> bool:
    """A quick TCP connect to the url's host: offline fails at once instead of after minutes of retries."""
    parsed = urlparse(url)
    if parsed.hostname is None:
        return False
    try:
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        socket.create_connection((parsed.hostname, port), timeout=_REACH_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _cached_download(pretrained_cfg: dict) -> str | None:
    """The weights' file if an earlier download left it in the HF or open_clip cache (no network)."""
    hf_hub = pretrained_cfg.get("hf_hub")
    if hf_hub:
        repo_id, filename = os.path.split(hf_hub)
        # open_clip's names: a default file, and a .safetensors twin tried first
        filename = filename or "open_clip_pytorch_model.bin"
        if filename == "open_clip_pytorch_model.bin":
            names = ["open_clip_model.safetensors", filename]
        elif filename.endswith((".bin", ".pth")):
            names = [filename[:-4] + ".safetensors", filename]
        else:
            names = [filename]
        for name in names:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str):
                return found
    url = pretrained_cfg.get("url")
    target = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url)) if url else None
    return target if target and os.path.isfile(target) else None


def create_clip(model_name: str, *, quick_gelu: bool = False, image_size: int | None = None) -> nn.Module:
    """An open_clip model of a registered architecture with random weights (loaded afterwards).

    ``image_size`` overrides the ViT input size (its positional grid), e.g. 512 for Cascade-CLIP.
    """
    if model_name not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    with _quiet_open_clip():
        return open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu,
                                      force_image_size=image_size)


def build_clip(model_name: str, *, quick_gelu: bool = False, clip_config: dict | None = None,
               image_size: int | None = None) -> nn.Module:
    """An open_clip ``CLIP`` from an explicit config (custom CLIPs, tests) or a registered name."""
    if clip_config is None:
        return create_clip(model_name, quick_gelu=quick_gelu, image_size=image_size)
    cfg = dict(clip_config)
    vision_cfg = dict(cfg["vision_cfg"], **({"image_size": image_size} if image_size else {}))
    return open_clip.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=vision_cfg, text_cfg=cfg["text_cfg"],
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
    path = _cached_download(pretrained_cfg) or _download(model_name, pretrained, pretrained_cfg)
    if path.endswith(".safetensors"):  # open_clip prefers these twins on the HF hub
        state = safetensors.torch.load_file(path)
    else:
        state = read_checkpoint(path)
    return state.get("state_dict", state), f"open_clip:{model_name}/{pretrained}"


def _download(model_name: str, pretrained: str, pretrained_cfg: dict) -> str:
    """open_clip's download, refused at once (and quietly) when the host cannot be reached."""
    where = pretrained_cfg.get("hf_hub") or pretrained_cfg.get("url")
    url = _download_url(pretrained_cfg)
    offline = "HF_HUB_OFFLINE is set" if _hf_offline() and pretrained_cfg.get("hf_hub") else None
    if offline is None and not _reachable(url):
        offline = f"{urlparse(url).hostname} cannot be reached"
    try:
        if offline:
            raise ConnectionError(offline)
        with _quiet_downloads():
            return open_clip.download_pretrained(pretrained_cfg)
    except Exception as error:  # network errors from urllib / huggingface_hub
        reason = offline or type(error).__name__
        raise CheckpointError(
            f"CLIP weights {model_name}/{pretrained} are not in the checkpoint and could not be "
            f"downloaded ({reason}); get them from {where} and pass --clip-weights PATH"
        ) from None


def load_clip_weights(clip: nn.Module, model_name: str, pretrained: str, clip_weights: str | None) -> str:
    """Loads a frozen CLIP's weights (a file, or open_clip's pretrained tag); returns their origin."""
    state, origin = load_clip_state(model_name, pretrained, clip_weights)
    check_state_dict(clip, state, source=origin, fix=f"it is not an open_clip state dict of {model_name}")
    clip.load_state_dict(state)
    return origin
