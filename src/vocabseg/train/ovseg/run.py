"""Runs one OVSeg stage preset (``vocabseg train --preset ovseg_adapt_coco ...``)."""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from vocabseg import distributed as dist
from vocabseg.fileio import atomic_write
from vocabseg.train.checkpoint import resume_path
from vocabseg.train.ovseg.config import StageConfig

logger = logging.getLogger(__name__)


def run_stage(config: StageConfig, *, resume: str | None = None, keep_history: bool = False,
              stop_at: int | None = None):
    """Runs ``config.stage``; returns its trainer (adapt, prompt), mining summary (mine) or checkpoint path (assemble).

    Args:
        resume: None, "auto" (OUTPUT/last.pth when it exists) or a ``last.pth`` (CLIP stages; mining
            always resumes from its output folder).
        stop_at: stop after this iteration, as a killed run would (tests).
    """
    if config.stage == "mine":
        from vocabseg.train.ovseg.mining.miner import mine_from_config

        return mine_from_config(config)
    if config.stage == "assemble":
        from vocabseg.train.ovseg.assemble import assemble_from_config

        return assemble_from_config(config)
    from vocabseg.train.ovseg.adapt import ClipTrainer

    device = dist.init_from_env(device=config.device)
    try:
        trainer = ClipTrainer(config, device=device, keep_history=keep_history)
        checkpoint = resume_path(resume, Path(config.output))
        if checkpoint is not None:
            trainer.resume(checkpoint)
        if dist.is_main_process():
            text = yaml.safe_dump(config.to_dict(), sort_keys=False)
            atomic_write(Path(config.output) / "config.yaml", lambda p: p.write_text(text, encoding="utf-8"))
        trainer.train(stop_at=stop_at)
        return trainer
    finally:
        dist.cleanup()
