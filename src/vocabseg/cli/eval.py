"""`vocabseg eval` (run a model on a dataset split) and `vocabseg score` (score saved files).

Several processes: ``torchrun --nproc_per_node 8 -m vocabseg.cli eval --device cuda ...``
(each rank takes its own GPU and every 8th image). Rerunning with the same ``--output``
resumes an interrupted evaluation.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from vocabseg.cli.common import positive_int
from vocabseg.models import TASKS as TASK_NAMES


def add_eval_parser(sub) -> None:
    """Adds the ``eval`` and ``score`` (alias ``eval-files``) commands."""
    from vocabseg.cli.common import add_model_arguments

    p = sub.add_parser("eval", help="evaluate a model on a dataset split (torchrun for several GPUs)")
    add_model_arguments(p)
    p.add_argument("--fast", action="store_true",
                   help="fast mode (--set precision=fast; the default on CUDA): bf16 where the device computes "
                        "it natively, else float32 with the fast algorithms; `vocabseg bench` prints the "
                        "choice and its deviation from exact fp32")
    p.add_argument("--dataset", required=True, help="split name, e.g. ade20k_panoptic_val (see `vocabseg data list`)")
    p.add_argument("--text-embeddings", metavar="NPY",
                   help="precomputed class embeddings [classes, width] in the split's class order, used as they are "
                        "(e.g. Cascade-CLIP's official .npy files, for exact reproduction)")
    p.add_argument("--data-root", required=True,
                   help="folder holding the dataset folders (coco/, ADEChallengeData2016/, ...)")
    p.add_argument("--tasks", type=_tasks, help="comma-separated, e.g. panoptic,semantic (default: all the split has)")
    p.add_argument("--limit", type=positive_int, help="evaluate the first N images only")
    p.add_argument("--output", required=True, help="folder for results.json, results.md and the resumable state/")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the evaluation in OUTPUT (state/, results) and start over (default: resume it)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="images between saves of the resumable state")
    p.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="seconds between saves of the resumable state (also saved on errors)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", aliases=["eval-files"], help="score saved predictions against a split's ground truth")
    p.add_argument("--dataset", required=True, help="split name, e.g. coco_panoptic_val")
    p.add_argument("--data-root", required=True, help="folder holding the dataset folders")
    p.add_argument("--panoptic-json", help="COCO panoptic predictions json (dataset category ids)")
    p.add_argument("--panoptic-dir", help="its PNG folder (default: the json path without .json)")
    p.add_argument("--semantic-dir", help="label PNGs named <image stem>.png holding class indices")
    p.add_argument("--pred-ignore", type=int, default=255, help="label PNG value of unpredicted pixels")
    p.add_argument("--instance-json", help="COCO results json (dataset category ids, RLE masks)")
    p.add_argument("--train-vocab", default="coco_panoptic", help="the model's training vocabulary (seen/unseen split)")
    p.add_argument("--output", help="also write results.json and results.md here")
    p.set_defaults(func=cmd_score)


def _tasks(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(
            f"unknown task {unknown[0] if unknown else text!r}; use {','.join(TASK_NAMES)}")
    return tasks


def cmd_eval(args) -> None:
    from vocabseg import distributed as dist
    from vocabseg.data import get_dataset
    from vocabseg.eval.run import BARRIER_TIMEOUT
    from vocabseg.run_folder import owned_folder

    # before the model and the folder: fail fast
    dataset = get_dataset(args.dataset, args.data_root, tasks=set(args.tasks) if args.tasks else None)
    args.device = dist.rank_device(args.device)
    output = Path(args.output)
    created_group = dist.join_from_env(backend="gloo", timeout=BARRIER_TIMEOUT)  # the lock's outcome is shared
    try:
        with owned_folder(output, "vocabseg eval"):
            results = _eval_in_folder(args, dataset, output)
    finally:
        if created_group:
            dist.cleanup()
    if dist.rank_and_world()[0] == 0:
        print(summary_line(results))
        print(f"wrote {Path(args.output) / 'results.json'} and results.md")


def _eval_in_folder(args, dataset, output: Path) -> dict:
    from vocabseg import distributed as dist
    from vocabseg.cli.common import load_predictor, test_size_overrides
    from vocabseg.eval.run import evaluate
    from vocabseg.run_folder import check_kind, clear

    dist.on_main_first(lambda: check_kind(output, "eval"))
    if args.fast:
        args.settings.append(("precision", "fast"))
    predictor = load_predictor(args)
    if args.overwrite:
        dist.on_main_first(lambda: clear(output, "eval"))
    size = test_size_overrides(args)  # the user's test size wins over the split's official one
    test_size = (predictor.inference.min_size, predictor.inference.max_size) if size else None
    return evaluate(predictor, dataset, output_dir=output, limit=args.limit, test_size=test_size,
                    progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                    checkpoint_seconds=args.checkpoint_seconds, text_embeddings=args.text_embeddings)


def cmd_score(args) -> None:
    from vocabseg.eval.run import write_results
    from vocabseg.eval.score import score_files

    results = score_files(args.dataset, args.data_root,
                          panoptic_json=args.panoptic_json, panoptic_dir=args.panoptic_dir,
                          semantic_dir=args.semantic_dir, instance_json=args.instance_json,
                          pred_ignore=args.pred_ignore, train_vocabulary=args.train_vocab)  # fmt: skip
    print(summary_line(results))
    if args.output:
        write_results(args.output, results)
        print(f"wrote {Path(args.output) / 'results.json'} and results.md")


def summary_line(results: dict) -> str:
    """The headline metrics, e.g. ``ade20k_panoptic_val (2000 images): PQ 34.1 | mIoU 26.8 ... | AP 16.8``."""
    keys = {"panoptic": ("PQ", "SQ", "RQ"), "semantic": ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"),
            "instance": ("AP", "AP50")}  # fmt: skip
    parts = []
    for task, names in keys.items():
        if task in results:
            parts.append(" ".join(f"{k} {_fmt(results[task][k])}" for k in names if k in results[task]))
    return f"{results['dataset']} ({results['num_images']} images): " + " | ".join(parts)


def _fmt(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
