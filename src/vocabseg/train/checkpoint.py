"""Reading checkpoints into a training run: starting weights (``--init``) and full resumption (``--resume``).

Training checkpoints are ordinary vocabseg checkpoints (``weights.save_checkpoint``,
so ``Predictor.from_pretrained`` reads them) without the frozen CLIP, whose
``"trainer"`` entry holds what a resumed run needs: optimizer, scheduler and
loss-scaler states, the iteration, the sample-stream position, the random states
of every rank and the best evaluation so far.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vocabseg.model.config import FCCLIPConfig
from vocabseg.model.convert import CheckpointError
from vocabseg.weights import VOCABSEG_FORMAT, check_state_dict, parse_checkpoint, read_checkpoint
from vocabseg.zoo import ModelVariant

TRAINER_KEY = "trainer"


def load_init_weights(model: torch.nn.Module, path: str | Path, *, variant: ModelVariant | None) -> None:
    """Starting weights from a vocabseg or official FC-CLIP checkpoint; the CLIP part is optional.

    Raises:
        CheckpointError: the checkpoint is unreadable or belongs to another architecture.
    """
    loaded = parse_checkpoint(read_checkpoint(path), source=str(path), variant=variant)
    check_state_dict(model, loaded.state_dict, source=str(path), allow_missing_clip=True)
    model.load_state_dict(loaded.state_dict, strict=False)


def config_differences(ours: FCCLIPConfig, theirs: FCCLIPConfig) -> list[str]:
    """``field: theirs -> ours`` for each architecture field that differs."""
    a, b = ours.to_dict(), theirs.to_dict()
    return [f"{k}: {b[k]!r} -> {a[k]!r}" for k in a if a[k] != b[k]]


def read_training_checkpoint(path: str | Path, *, model: torch.nn.Module, config: FCCLIPConfig) -> dict:
    """Loads a training checkpoint's weights into ``model`` and returns its trainer state.

    Raises:
        CheckpointError: not a training checkpoint, or one of another architecture.
    """
    data = read_checkpoint(path)
    if data.get("format") != VOCABSEG_FORMAT or TRAINER_KEY not in data:
        raise CheckpointError(f"{path} is not a vocabseg training checkpoint (no trainer state); "
                              "to start from its weights use --init instead of --resume")
    try:
        theirs = FCCLIPConfig.from_dict(data["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable architecture config ({error})") from None
    changed = config_differences(config, theirs)
    if changed:
        raise CheckpointError(f"{path} was trained with another architecture ({'; '.join(changed[:3])}); "
                              "resume with the preset and overrides that wrote it, or use --init")
    check_state_dict(model, data["model"], source=str(path), allow_missing_clip=True)
    model.load_state_dict(data["model"], strict=False)
    return data[TRAINER_KEY]
