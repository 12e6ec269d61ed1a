"""Runs one OVSeg stage preset (``vocabseg train --preset ovseg_adapt_coco ...``) under the run-folder rule.

The stages writing a folder (mine: a pair folder; adapt, prompt: a CLIP training run) take it as
``vocabseg train`` does (vocabseg.run_folder): one process per folder (a torchrun job's rank 0
holds the lock for all ranks, taken once the process group is up), a folder holding a run is
refused unless ``--resume`` or ``--overwrite``, and the inputs are read before the folder is
taken. Assemble writes one file, refused when it exists unless ``--overwrite``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml

from vocabseg import distributed as dist
from vocabseg.errors import ConfigError
from vocabseg.fileio import atomic_write
from vocabseg.run_folder import check_train_folder, clear, owned_folder, record_resume
from vocabseg.train.checkpoint import resume_path
from vocabseg.train.ovseg.config import StageConfig

logger = logging.getLogger(__name__)


def run_stage(config: StageConfig, *, resume: str | None = None, overwrite: bool = False, keep_history: bool = False,
              stop_at: int | None = None):
    """Runs ``config.stage``; returns its trainer (adapt, prompt), mining summary (mine) or checkpoint path (assemble).

    Args:
        resume: None, "auto" (continue the run in OUTPUT: its last.pth, a pair folder's done list) or a
            ``last.pth`` (CLIP stages only). A folder holding a run needs ``resume`` or ``overwrite``.
        overwrite: delete the run in OUTPUT (or the assembled file) before writing the new one.
        stop_at: stop after this iteration, as a killed run would (tests).
    """
    if config.stage == "assemble":
        from vocabseg.train.ovseg.assemble import assemble_from_config

        if resume is not None:
            raise ConfigError("--resume does not apply to the assemble stage (one step); add --overwrite to write "
                              "its checkpoint again")
        return assemble_from_config(config, overwrite=overwrite)
    if config.stage == "mine":
        return _mine(config, resume=resume, overwrite=overwrite)
    return _train_clip(config, resume=resume, overwrite=overwrite, keep_history=keep_history, stop_at=stop_at)


def _mine(config: StageConfig, *, resume: str | None, overwrite: bool):
    from vocabseg.train.ovseg.mining.miner import mine_in_folder, read_mining_inputs

    if resume not in (None, "auto"):
        raise ConfigError("--resume-from does not apply to the mine stage; --resume continues the pair folder "
                          "in --output from its done list")
    inputs = read_mining_inputs(config)  # captions and images checked before the folder is taken
    output = Path(config.output)
    device = dist.init_from_env(device=config.device)
    try:
        with owned_folder(output, "vocabseg train (mine)"):
            held = dist.on_main_first(lambda: check_train_folder(output, resume=resume is not None,
                                                                 overwrite=overwrite, kind="mine"))
            return mine_in_folder(config, inputs, device, resumed=bool(held) and not overwrite, overwrite=overwrite)
    finally:
        dist.cleanup()


def _train_clip(config: StageConfig, *, resume: str | None, overwrite: bool, keep_history: bool,
                stop_at: int | None):
    output = Path(config.output)
    device = dist.init_from_env(device=config.device)
    try:
        with owned_folder(output, f"vocabseg train ({config.stage})"):
            dist.on_main_first(lambda: check_train_folder(output, resume=resume is not None, overwrite=overwrite))
            return _train_clip_in_folder(config, output, device, resume=resume, overwrite=overwrite,
                                         keep_history=keep_history, stop_at=stop_at)
    finally:
        dist.cleanup()


def _train_clip_in_folder(config: StageConfig, output: Path, device: torch.device, *, resume: str | None,
                          overwrite: bool, keep_history: bool, stop_at: int | None):
    """Builds, resumes or starts the CLIP run in its (locked, checked) folder and trains it."""
    from vocabseg.train.ovseg.adapt import ClipTrainer

    trainer = ClipTrainer(config, device=device, keep_history=keep_history)
    checkpoint = resume_path(resume, output)
    if checkpoint is not None:
        trainer.resume(checkpoint)  # refuses changed settings before anything is written
    if dist.is_main_process():
        if overwrite:
            clear(output, "train")
        if checkpoint is None or not (output / "config.yaml").exists():  # the run as started; kept by resumes
            text = yaml.safe_dump(config.to_dict(), sort_keys=False)
            atomic_write(output / "config.yaml", lambda p: p.write_text(text, encoding="utf-8"))
        if checkpoint is not None:
            record_resume(output, trainer.resume_changes, checkpoint=str(checkpoint), iteration=trainer.iteration)
    trainer.train(stop_at=stop_at)
    return trainer
