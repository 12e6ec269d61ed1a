"""Reading checkpoints into a training run: starting weights (``--init``) and full resumption (``--resume``).

Training checkpoints are ordinary vocabseg checkpoints (``checkpoints.save_checkpoint``,
so ``Predictor.from_pretrained`` reads them) without the frozen CLIP, whose
``"trainer"`` entry holds what a resumed run needs: optimizer, scheduler and
loss-scaler states, the iteration, the sample-stream position, the random states
of every rank and the best evaluation so far.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vocabseg import distributed as dist
from vocabseg.checkpoints import FORMAT, FORMAT_V1, load_weights, parse_checkpoint, read_checkpoint
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.models import ModelFamily, ModelVariant

TRAINER_KEY = "trainer"
logger = logging.getLogger(__name__)


def load_init_weights(model: torch.nn.Module, path: str | Path, *, variant: ModelVariant | None) -> None:
    """Starting weights from a vocabseg or official checkpoint of the model's family; the CLIP part is optional.

    Raises:
        CheckpointError: the checkpoint is unreadable or belongs to another architecture.
    """
    load_weights(model, parse_checkpoint(read_checkpoint(path), source=str(path), variant=variant))


# Keys a classification release has and a segmentation backbone lacks (its classifier and final norm;
# Swin's shifted-window masks, buffers of its training size), and those only the segmentation backbone
# has (detectron2's per-level output norms of Swin, buffers).
_CLASSIFIER_ONLY = re.compile(r"^(head|norm|fc)\.|\.attn_mask$")
_BACKBONE_ONLY = re.compile(r"^norm\d+\.|relative_position_index$|num_batches_tracked$")


def load_backbone_weights(model: torch.nn.Module, path: str | Path) -> int:
    """ImageNet weights of the model's backbone (OVSeg's Swin-B 22k ``.pth`` or detectron2 ``.pkl``, e.g.
    R-103.pkl), as the official recipes start; returns the number of tensors loaded.

    Raises:
        CheckpointError: no backbone, or a file whose names or shapes do not fit it (listed).
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        raise CheckpointError(f"{type(model).__name__} has no separate backbone to initialise from {path}; "
                              "drop model.backbone_init")
    data = read_checkpoint(path)
    raw = data.get("model", data.get("state_dict", data))
    state = {k.removeprefix("module.").removeprefix("backbone."): torch.as_tensor(v) for k, v in raw.items()
             if not _CLASSIFIER_ONLY.search(k.removeprefix("module.").removeprefix("backbone."))}
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state and not _BACKBONE_ONLY.search(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = "; ".join(f"{len(keys)} {label} (e.g. {', '.join(keys[:2])})" for label, keys in
                             (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        raise CheckpointError(f"{path} does not fit the {type(backbone).__name__} backbone: {problems}; give the "
                              "ImageNet release of this exact architecture (e.g. Swin-B window 12, 384 px, 22k)")
    backbone.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return len(state)


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


def resume_path(resume: str | None, output: Path) -> Path | None:
    """``resume``: None (new run), "auto" (OUTPUT/last.pth if any) or a checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        last = output / "last.pth"
        if not last.is_file() and dist.is_main_process():
            logger.info("--resume: no %s yet, starting a new run", last)
        return last if last.is_file() else None
    if not Path(resume).is_file():
        raise CheckpointError(f"--resume-from {resume}: no such file; give a last.pth or model_*.pth of the run")
    return Path(resume)


# Settings that may differ between a run and its --resume: where things are (output, data and eval
# locations, the text cache, the device), how often the loop reports (log, checkpoint and eval
# periods), how data is loaded (worker processes), what is evaluated (eval.*), and a longer
# solver.max_iter (see RESUME_SCHEDULE_RULE). Any other change makes another run, so resume refuses it.
RESUME_MAY_CHANGE = ("output", "text_cache", "device", "data.root", "data.num_workers", "eval.*",
                     "solver.log_period", "solver.checkpoint_period", "solver.eval_period", "solver.max_iter")
RESUME_SCHEDULE_RULE = ("a longer solver.max_iter continues the schedule: a step schedule keeps its solver.steps, "
                        "a poly schedule is recomputed over the new max_iter from the resumed iteration")


def flat_settings(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"solver.lr": 0.001, ...}`` of a nested run config (model.arch kept whole: one architecture)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted != "model.arch":
            flat.update(flat_settings(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


@dataclass(frozen=True)
class ResumeRule:
    """Which settings of a run may differ on its resume (each command that resumes states its own)."""

    may_change: tuple[str, ...]  # dotted keys; "section.*" for a whole section
    only_longer: tuple[str, ...]  # of those, integer keys that may only grow (a longer run)
    summary: str  # the list as the refusal states it

    def allows(self, change: dict[str, Any]) -> bool:
        key = str(change["key"])
        listed = any(key == allowed or (allowed.endswith(".*") and key.startswith(allowed[:-1]))
                     for allowed in self.may_change)
        return listed and (key not in self.only_longer or _longer(change["old"], change["new"]))


TRAIN_RESUME = ResumeRule(RESUME_MAY_CHANGE, ("solver.max_iter",),
                          "periods, worker counts, locations, eval.* and a longer solver.max_iter")


def _longer(old: Any, new: Any) -> bool:
    return isinstance(old, int) and isinstance(new, int) and new > old


def resume_changes(saved: dict, current: dict, *, source: str | Path,
                   rule: ResumeRule = TRAIN_RESUME) -> list[dict[str, Any]]:
    """The settings ``current`` changes from the run that wrote a checkpoint, if ``rule`` lets all change on resume.

    Returns:
        ``[{"key", "old", "new"}, ...]`` (empty: the same settings; no saved config: nothing to compare).

    Raises:
        ConfigError: one line naming the changed keys with their old and new values.
    """
    if not saved:
        return []
    old, new = flat_settings(saved), flat_settings(current)
    changes = [{"key": k, "old": old.get(k), "new": new.get(k)} for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)]
    refused = [c for c in changes if not rule.allows(c)]
    if refused:
        listed = "; ".join(f"{c['key']}: {c['old']!r} -> {c['new']!r}" for c in refused[:3])
        raise ConfigError(f"--resume: {source} was made with other settings ({listed}); resume with the run's "
                          f"settings (only {rule.summary} may change), or start a new run with --overwrite or "
                          "another --output")
    return changes
