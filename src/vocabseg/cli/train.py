"""`vocabseg train --preset NAME [--output DIR] [--resume | --resume-from PATH] [--init PATH] [key.sub=value ...]`.

Several GPUs: ``torchrun --nproc_per_node 8 -m vocabseg.cli train --preset ...``
(the effective batch stays the preset's ``solver.batch_size``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vocabseg import distributed as dist
from vocabseg.errors import ConfigError
from vocabseg.train.config import TrainConfig, list_presets, load_config, read_preset, save_config

logger = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help=f"built-in recipe ({', '.join(list_presets())}) or a YAML file")
    parser.add_argument("--output", help="run folder (default: the preset's `output`)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT from its last.pth (starts a new run if there is none)")
    parser.add_argument("--resume-from", metavar="PATH", help="continue a run from this training checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the training run in OUTPUT (checkpoints, config.yaml, logs; a mined pair "
                             "folder's pairs and crops) and start a new one")
    parser.add_argument("--init", metavar="PATH",
                        help="start from these weights (a vocabseg or official checkpoint of the preset's family), "
                             "as the preset's model.init; fresh optimizer and schedule")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="preset overrides, e.g. solver.lr=2e-4 data.root=/data solver.batch_per_gpu=4")


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``train`` command to ``vocabseg``'s sub-commands."""
    parser = subparsers.add_parser("train", help="train a segmenter (or run an OVSeg CLIP stage) from a preset recipe")
    add_train_arguments(parser)
    parser.set_defaults(func=main_from_args)
    return parser


def main_from_args(args: argparse.Namespace, *, eval_fn=None, keep_history: bool = False):
    """Runs ``vocabseg train`` and returns the Trainer.

    User errors raise one-line vocabseg errors (ConfigError, DatasetError, CheckpointError).

    Args:
        eval_fn: optional evaluation hook ``(model, iteration) -> {metric: value}``, run every
            ``solver.eval_period`` iterations; ``solver.best_metric`` picks ``best.pth``.
    """
    from vocabseg.train.ovseg.config import is_stage_preset  # OVSeg's mining / CLIP stages: their own recipes

    if is_stage_preset(read_preset(args.preset)):
        return _run_ovseg_stage(args, keep_history=keep_history)
    config = load_config(args.preset, args.overrides)
    config.output = args.output or config.output
    return run_training(config, resume=_resume_arg(args), init=args.init, eval_fn=eval_fn, keep_history=keep_history,
                        overwrite=args.overwrite)


def run_training(argv_or_config: list[str] | TrainConfig, *, resume: str | None = None, init: str | None = None,
                 eval_fn=None, keep_history: bool = False, overwrite: bool = False):
    """Trains from command-line arguments (those after ``vocabseg train``) or a TrainConfig; returns the Trainer.

    Args:
        resume: None (new run), "auto" (OUTPUT/last.pth when it exists) or a training checkpoint.
            A folder holding a run needs ``resume`` or ``overwrite`` (vocabseg.run_folder); a resume whose
            settings differ from the checkpoint's beyond train.checkpoint.RESUME_MAY_CHANGE is refused.
        overwrite: delete the run in OUTPUT first (once the new run is built, before it writes).
        init: starting weights (vocabseg or official checkpoint) for a new run.
        keep_history: keep every iteration's StepResult in ``trainer.history`` (tests).
    """
    if not isinstance(argv_or_config, TrainConfig):
        parser = argparse.ArgumentParser(prog="vocabseg train")
        add_train_arguments(parser)
        return main_from_args(parser.parse_args(argv_or_config), eval_fn=eval_fn, keep_history=keep_history)
    from vocabseg.run_folder import check_train_folder, owned_folder

    config = argv_or_config
    output = Path(config.output)
    device = dist.init_from_env(device=config.device)
    try:
        with owned_folder(output, "vocabseg train"):
            dist.on_main_first(lambda: check_train_folder(output, resume=resume is not None, overwrite=overwrite))
            return _train_in_folder(config, output, device, resume=resume, init=init, eval_fn=eval_fn,
                                    keep_history=keep_history, overwrite=overwrite)
    finally:
        dist.cleanup()


def _train_in_folder(config: TrainConfig, output: Path, device, *, resume: str | None, init: str | None, eval_fn,
                     keep_history: bool, overwrite: bool):
    """Builds, resumes or starts the run in its (locked, checked) folder and trains it."""
    from vocabseg.run_folder import clear, record_resume
    from vocabseg.train.build import build_trainer  # heavy imports only when training
    from vocabseg.train.checkpoint import resume_path

    trainer = build_trainer(config, device=device, init=init, eval_fn=eval_fn, keep_history=keep_history)
    checkpoint = resume_path(resume, output)
    if checkpoint is not None:
        trainer.resume(checkpoint)
    if dist.is_main_process():
        if overwrite:
            clear(output, "train")
        if checkpoint is None or not (output / "config.yaml").exists():
            save_config(config, output / "config.yaml")  # the run's settings as started; kept by resumes
        if checkpoint is not None:
            record_resume(output, trainer.resume_changes, checkpoint=str(checkpoint), iteration=trainer.iteration)
    trainer.train()
    return trainer


def _run_ovseg_stage(args: argparse.Namespace, *, keep_history: bool):
    """A ``stage:`` preset (mine, adapt, prompt, assemble): see vocabseg.train.ovseg."""
    from vocabseg.train.ovseg.config import load_stage_config
    from vocabseg.train.ovseg.run import run_stage

    if args.init:
        raise ConfigError("--init does not apply to the OVSeg stage presets; set clip.weights (adapt, prompt) "
                          "or mine.segmenter / assemble.segmenter instead")
    config = load_stage_config(args.preset, args.overrides)
    config.output = args.output or config.output
    return run_stage(config, resume=_resume_arg(args), overwrite=args.overwrite, keep_history=keep_history)


def _resume_arg(args: argparse.Namespace) -> str | None:
    return args.resume_from or ("auto" if args.resume else None)
