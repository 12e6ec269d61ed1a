"""Reading checkpoints into a training run: starting weights (``--init``) and full resumption (``--resume``).

Training checkpoints are ordinary vocabseg checkpoints (``checkpoints.save_checkpoint``,
so ``Predictor.from_pretrained`` reads them) without the frozen CLIP, whose
``"trainer"`` entry holds what a resumed run needs: optimizer, scheduler and
loss-scaler states, the iteration, the sample-stream position, the random states
of every rank and the best evaluation so far.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vocabseg.checkpoints import FORMAT, FORMAT_V1, load_weights, parse_checkpoint, read_checkpoint
from vocabseg.errors import CheckpointError
from vocabseg.models import ModelFamily, ModelVariant

TRAINER_KEY = "trainer"


def load_init_weights(model: torch.nn.Module, path: str | Path, *, variant: ModelVariant | None) -> None:
    """Starting weights from a vocabseg or official checkpoint of the model's family; the CLIP part is optional.

    Raises:
        CheckpointError: the checkpoint is unreadable or belongs to another architecture.
    """
    load_weights(model, parse_checkpoint(read_checkpoint(path), source=str(path), variant=variant))


def config_differences(ours: Any, theirs: Any) -> list[str]:
    """``field: theirs -> ours`` for each architecture field that differs."""
    a, b = ours.to_dict(), theirs.to_dict()
    return [f"{k}: {b[k]!r} -> {a[k]!r}" for k in a if a[k] != b[k]]


def read_training_checkpoint(path: str | Path, *, model: torch.nn.Module, family: ModelFamily, config: Any) -> dict:
    """Loads a training checkpoint's weights into ``model`` and returns its trainer state.

    Raises:
        CheckpointError: not a training checkpoint, or one of another architecture.
    """
    data = read_checkpoint(path)
    if data.get("format") not in (FORMAT, FORMAT_V1) or TRAINER_KEY not in data:
        raise CheckpointError(f"{path} is not a vocabseg training checkpoint (no trainer state); "
                              "to start from its weights use --init instead of --resume")
    loaded = parse_checkpoint(data, source=str(path))
    if loaded.family.name != family.name:
        raise CheckpointError(f"{path} is a {loaded.family.title} training checkpoint, not {family.title}; "
                              "resume with the preset that wrote it")
    theirs = loaded.config
    changed = config_differences(config, theirs)
    if changed:
        raise CheckpointError(f"{path} was trained with another architecture ({'; '.join(changed[:3])}); "
                              "resume with the preset and overrides that wrote it, or use --init")
    load_weights(model, loaded)
    return data[TRAINER_KEY]
