"""The one rule for every command that writes a run folder (train and OVSeg's stages, predict, eval).

- A folder is owned by one process at a time (:mod:`vocabseg.locks`); a torchrun job's rank 0
  takes the lock for the whole job and the other ranks learn the outcome from it.
- A folder holding a run of another command is refused, ``--overwrite`` included: one command
  never deletes what another wrote.
- A folder holding a run of the same command continues it only where the command says so
  (``train --resume``, OVSeg's mine stage included; ``predict`` and ``eval`` when their recorded
  identity matches; what a resume may change is each command's ``train.checkpoint.ResumeRule``), is
  cleared by ``--overwrite`` (everything that run wrote, so no files of two runs mix) or is
  refused in one line naming what is there.
- Nothing is written before the arguments are checked: the lock (which creates the folder) is
  taken after the command's own checks, and a folder this process created is removed again if
  the command fails before writing anything into it.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vocabseg import distributed as dist
from vocabseg.errors import ConfigError
from vocabseg.locks import LOCK_FILE, RunLock


@dataclass(frozen=True)
class RunKind:
    """What one command leaves in its folder."""

    title: str  # "a training run"
    markers: tuple[str, ...]  # top-level names (globs) whose presence means a run of this kind is there
    owned: tuple[str, ...]  # globs (relative to the folder) of everything the run writes; --overwrite deletes them


KINDS = {
    # vocabseg train, OVSeg's CLIP stages (adapt, prompt: clip_final.pth) included
    "train": RunKind("a training run", ("config.yaml", "last.pth", "model_final.pth", "model_*.pth", "clip_final.pth"),
                     ("config.yaml", "resumes.jsonl", "*.pth", "tensorboard", "eval")),
    # OVSeg's mine stage: a pair folder (vocabseg.train.ovseg.mining.pairs)
    "mine": RunKind("a mined pair folder", ("mining.json", "pairs*.jsonl", "done*.txt"),
                    ("mining.json", "pairs*.jsonl", "done*.txt", "skipped*.jsonl", "crops", "resumes.jsonl")),
    "predict": RunKind("a prediction run", ("run.json",),
                       ("run.json", "run.done", "run.done.rank*", "errors.json", "errors.json.rank*",
                        "*_overlay.png", "**/*_overlay.png", "panoptic", "semantic", "instance")),  # ** : --recursive
    "eval": RunKind("an evaluation", ("state", "results.json"), ("state", "results.json", "results.md")),
}


def found(folder: Path, kind: str) -> list[str]:
    """Names in ``folder`` that mark a run of ``kind`` (sorted; empty when none or no folder)."""
    if not folder.is_dir():
        return []
    names = {p.name for pattern in KINDS[kind].markers for p in folder.glob(pattern)}
    return sorted(names)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_kind(folder: Path, kind: str) -> None:
    """Refuses a folder holding another command's run.

    Raises:
        ConfigError: names what is there; --overwrite does not apply across commands.
    """
    for other in KINDS:
        names = found(folder, other) if other != kind else []
        if names:
            raise ConfigError(f"--output {folder} holds {KINDS[other].title} ({_listed(names)}), not "
                              f"{KINDS[kind].title}; choose another --output")


def check_train_folder(folder: Path, *, resume: bool, overwrite: bool, kind: str = "train") -> bool:
    """Whether ``folder`` holds a run of ``kind`` (train, mine) to continue or replace; refuses it without either flag.

    Raises:
        ConfigError: a run is there and neither --resume nor --overwrite was given (or both were).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one")
    check_kind(folder, kind)
    names = found(folder, kind)
    if names and not (resume or overwrite):
        raise ConfigError(f"--output {folder} holds {KINDS[kind].title} ({_listed(names)}); add --resume to "
                          "continue it, --overwrite to replace it, or choose another --output")
    return bool(names)


def record_resume(folder: Path, changes: list[dict], **where: Any) -> None:
    """Appends one line to ``FOLDER/resumes.jsonl``: when, where the run resumed (``where``), what changed.

    ``config.yaml`` (``mining.json``) keeps the settings the run started with; this file is the rest
    of its record.
    """
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **where, "changes": changes}
    with open(folder / "resumes.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def clear(folder: Path, kind: str) -> list[str]:
    """Deletes everything a run of ``kind`` wrote in ``folder`` (other files stay); returns the names."""
    removed = sorted({p.relative_to(folder).as_posix() for pattern in KINDS[kind].owned for p in folder.glob(pattern)})
    for name in removed:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def owned_folder(folder: Path, command: str) -> Iterator[Path]:
    """Holds ``folder``'s lock for the block (rank 0 of a torchrun job, for all its ranks).

    A folder this call created is removed at the end if nothing was written into it (a command
    that failed on its arguments leaves nothing behind).

    Raises:
        FolderLocked: another process holds the folder (on every rank of the job).
    """
    folder = Path(folder)
    created = not folder.exists()
    lock = RunLock(folder, command)
    dist.on_main_first(lock.acquire)
    ok = False
    try:
        yield folder
        ok = True
    finally:
        if ok:
            dist.barrier()  # every rank is done with the folder before it is let go
        lock.release()
        if created and dist.is_main_process() and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


__all__ = ["KINDS", "LOCK_FILE", "check_kind", "check_train_folder", "clear", "found", "owned_folder", "record_resume"]
