"""Sharing vocabseg checkpoints: a folder of ``model.safetensors`` + ``config.json``, on disk or on the HF Hub.

The folder is what ``vocabseg push`` uploads and what ``Predictor.from_pretrained("hf-hub:org/name")``
downloads (through huggingface_hub's cache, so a second load is offline)::

    config.json         {"format": "vocabseg", "version": 2, "family", "config", "settings", "train_vocabulary"}
    model.safetensors   the state dict (frozen CLIP included): tensors only, nothing executable
    README.md           a short model card

``config.json`` holds exactly the header of a ``.pth`` vocabseg checkpoint, so both load through
:func:`vocabseg.checkpoints.parse_checkpoint`. This module knows the folder and the hub, not what a
checkpoint means: :mod:`vocabseg.checkpoints` reads folders through it and writes them with it
(``push_checkpoint``), never the other way round.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from vocabseg.clip.load import _hf_offline, _quiet_downloads
from vocabseg.errors import CheckpointError, ConfigError, first_line
from vocabseg.fileio import atomic_write

HUB_PREFIX = "hf-hub:"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class HubName:
    """``hf-hub:org/name[@revision]`` split into its parts."""

    repo_id: str  # "org/name"
    revision: str | None  # branch, tag or commit; None: the default branch

    def __str__(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse_hub_name(name: str) -> HubName | None:
    """The repository and revision of an ``hf-hub:`` name; None for any other string."""
    if not name.startswith(HUB_PREFIX):
        return None
    repo_id, _, revision = name[len(HUB_PREFIX):].partition("@")
    check_repo_id(repo_id, what=name)
    return HubName(repo_id, revision or None)


def check_repo_id(repo_id: str, *, what: str) -> str:
    if not _REPO_ID.match(repo_id):
        raise ConfigError(f"{what!r}: a hub repository is written org/name (e.g. hf-hub:me/fcclip-rn50-ade)")
    return repo_id


# ---- writing ----------------------------------------------------------------------------------
def save_pretrained(folder: str | os.PathLike, model: nn.Module, *, header: dict[str, Any], title: str,
                    source: str = "", repo_id: str = "ORG/NAME") -> Path:
    """Writes ``config.json`` (``header``: a vocabseg checkpoint's header, see
    :func:`vocabseg.checkpoints.checkpoint_header`), ``model.safetensors`` and ``README.md`` (its example
    loads ``repo_id``) into ``folder``; returns it."""
    folder = Path(folder)
    state = _unshared(model.state_dict())
    atomic_write(folder / WEIGHTS_NAME, lambda p: safetensors.torch.save_file(state, str(p), {"format": "pt"}))
    text = json.dumps(header, indent=1) + "\n"
    atomic_write(folder / CONFIG_NAME, lambda p: p.write_text(text, encoding="utf-8"))
    card = _model_card(title, header.get("train_vocabulary", ""), source, repo_id)
    atomic_write(folder / CARD_NAME, lambda p: p.write_text(card, encoding="utf-8"))
    return folder


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with contiguous tensors, each storage used once (safetensors refuses shared ones)."""
    seen: set[int] = set()
    out = {}
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[key] = tensor.contiguous() if pointer not in seen or tensor.numel() == 0 else tensor.clone()
        seen.add(pointer)
    return out


def _model_card(title: str, train_vocabulary: str, source: str, repo_id: str) -> str:
    return (f"---\nlibrary_name: vocabseg\ntags:\n- image-segmentation\n- open-vocabulary\n---\n\n"
            f"# {title} checkpoint for vocabseg\n\nTrained vocabulary: `{train_vocabulary}`."
            + (f" Converted from `{Path(source).name}`." if source else "")
            + "\n\n```python\nfrom vocabseg import Predictor\n\n"
              f"predictor = Predictor.from_pretrained(\"{HUB_PREFIX}{repo_id}\")\n"
              "predictor.set_vocabulary(\"cat; dog; grass [stuff]\")\n```\n")


def push(folder: Path, repo_id: str, *, revision: str | None = None, private: bool = False,
         message: str = "Upload vocabseg checkpoint") -> str:
    """Uploads a folder written by :func:`save_pretrained` to a hub model repository; returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(check_repo_id(repo_id, what=repo_id), private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, commit_message=message)
    except (HfHubHTTPError, OSError) as error:
        raise CheckpointError(f"could not push to {repo_id} ({type(error).__name__}: {first_line(error)}); "
                              "log in with `hf auth login` (or set HF_TOKEN) and check the network, or write "
                              "the folder with --local-dir and upload it yourself") from None
    return f"https://huggingface.co/{repo_id}"


# ---- reading ----------------------------------------------------------------------------------
def is_pretrained(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a shared checkpoint: a folder holding ``config.json``, or a ``.safetensors`` file."""
    path = Path(path)
    return (path.is_dir() and (path / CONFIG_NAME).is_file()) or path.suffix == ".safetensors"


def read_pretrained(path: str | os.PathLike) -> dict:
    """Reads a folder (or its ``.safetensors`` file with ``config.json`` beside it) into a checkpoint dict."""
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    config = weights.parent / CONFIG_NAME
    if not weights.is_file():  # checked first: a mistyped .safetensors path has no config.json beside it either
        raise CheckpointError(f"{weights} does not exist; check the path (a shared folder holds {WEIGHTS_NAME} "
                              f"beside {CONFIG_NAME})")
    if not config.is_file():
        raise CheckpointError(f"{weights}: no {CONFIG_NAME} beside the weights; a vocabseg safetensors checkpoint "
                              "needs the config.json that `vocabseg push` writes with it")
    try:
        header = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config} is not valid JSON ({error}); write it again with `vocabseg push`") from None
    if not isinstance(header, dict) or "family" not in header:
        raise CheckpointError(f"{config}: not a vocabseg config (no 'family' field); was it written by vocabseg?")
    try:
        state = safetensors.torch.load_file(str(weights))
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{weights} cannot be read ({type(error).__name__}); the file is truncated or not "
                              "safetensors: download it again") from None
    return {**header, "model": state}


def download_pretrained(name: str | HubName) -> Path:
    """The local folder of an ``hf-hub:`` checkpoint: huggingface_hub's cached snapshot, downloaded if needed.

    Honours ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` as set when this is called. Offline or on a
    download failure, the one-line error names the file that is missing and how to supply it.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    hub = name if isinstance(name, HubName) else parse_hub_name(name)
    if hub is None:
        raise ConfigError(f"{name!r} is not a hub name; write hf-hub:org/name[@revision]")
    cache_dir, offline = os.environ.get("HF_HUB_CACHE") or None, _hf_offline()
    folder = None
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            with _quiet_downloads():
                local = hf_hub_download(hub.repo_id, filename, revision=hub.revision, cache_dir=cache_dir,
                                        local_files_only=offline)
        except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError) as error:
            raise CheckpointError(_missing_message(hub, filename, error, offline)) from None
        folder = Path(str(local)).parent
    assert folder is not None
    return folder


def _missing_message(hub: HubName, filename: str, error: Exception, offline: bool) -> str:
    where = f"{hub.repo_id}/{filename}" + (f" at revision {hub.revision}" if hub.revision else "")
    if offline or type(error).__name__ == "LocalEntryNotFoundError":
        return (f"{hub}: {where} is not in the Hugging Face cache and the hub cannot be reached (offline); "
                f"run `vocabseg download {hub}` with network access, or pass the folder holding "
                f"{CONFIG_NAME} and {WEIGHTS_NAME} instead")
    return (f"{hub}: could not download {where} ({type(error).__name__}: {first_line(error)}); check the "
            "repository name, revision and token (HF_TOKEN), or pass a local folder")


