"""Tiny configurations and synthetic inputs for tests, smoke runs and examples (no downloads)."""
from __future__ import annotations

from typing import Any

import numpy as np

from vocabseg.models import get_family

TINY_KINDS = ("convnext", "resnet")  # CLIP kinds of the tiny FC-CLIP: ConvNeXt-atto, one-block ModifiedResNet


def tiny_config(kind: str | None = None, family: str = "fcclip") -> Any:
    """A few-million-parameter config of a family with its full architecture (random weights only)."""
    return get_family(family).tiny_config(kind)


def synthetic_photo(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with a few filled discs: HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, np.full_like(xx, 128)], -1).astype(np.float32)
    for _ in range(3):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(8, 30)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


def tiny_model(kind: str | None = None, seed: int = 0, family: str = "fcclip"):
    """A random-weight model of :func:`tiny_config` (deterministic for a seed)."""
    import torch

    torch.manual_seed(seed)
    return get_family(family).build(get_family(family).tiny_config(kind))


def save_tiny_checkpoint(path, *, kind: str | None = None, seed: int = 0, min_size: int = 64, max_size: int = 128,
                         train_vocabulary: str = "coco_panoptic", family: str = "fcclip"):
    """Writes a vocabseg checkpoint of a seeded tiny model tested at ``min_size``/``max_size``; returns the path."""
    from vocabseg.checkpoints import save_checkpoint

    model_family = get_family(family)
    config = model_family.tiny_config(kind)
    settings = model_family.default_settings(config).override({"min_size": min_size, "max_size": max_size})
    return save_checkpoint(path, tiny_model(kind, seed, family), family=model_family, config=config, settings=settings,
                           train_vocabulary=train_vocabulary)


def file_hashes(folder) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` by relative path: a folder left byte-identical compares equal."""
    import hashlib
    from pathlib import Path

    root = Path(folder)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    """The single line a refused command printed on stderr (fails when it printed more or none)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]
