"""Files written whole or not at all, and checkpoint files read safely.

Every writer in vocabseg goes through :func:`atomic_write`: the data is written to a hidden
temporary name in the target folder and renamed into place (atomic on one filesystem), so a
reader sees the old file or the new one, never half of one, and an interrupted run leaves no
partial file under a final name.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vocabseg.errors import CheckpointError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Calls ``write(temporary_path)`` and renames the result to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(partial)
        if partial.is_file():  # some writers (safetensors) create 0600 files: the folder may be meant for sharing
            os.chmod(partial, 0o666 & ~_umask())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _umask() -> int:
    """The process's umask: what a plain ``open(path, "w")`` would leave readable to others."""
    try:  # Linux states it without changing it (os.umask would, for a moment, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_torch(path: str | os.PathLike, payload: Any) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda p: torch.save(payload, p))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles detectron2 .pkl checkpoints: dicts of numpy arrays, nothing executable."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a ``.pth``/``.pt`` (torch, weights only) or ``.pkl`` (numpy arrays) file into a dict.

    Raises:
        CheckpointError: missing, unreadable or not a dict; the message says what to do.
    """
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
