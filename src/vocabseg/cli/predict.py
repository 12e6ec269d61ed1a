"""`vocabseg predict | models | download`."""
from __future__ import annotations

import argparse
import logging

from vocabseg.cli.common import add_model_arguments, load_predictor, positive_int
from vocabseg.errors import ConfigError
from vocabseg.zoo import get_variant, list_models

logger = logging.getLogger(__name__)


def cmd_predict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from tqdm import tqdm

    from vocabseg.images import check_readable, expand_inputs, load_image
    from vocabseg.outputs import write_prediction

    paths = expand_inputs(args.inputs)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; give a directory for the results")
    todo = [p for p in paths if args.overwrite or not (output / f"{p.stem}_overlay.png").exists()]
    if len(todo) < len(paths):
        logger.info("skipping %d image(s) already done in %s (--overwrite to redo)", len(paths) - len(todo), output)
    check_readable(todo)
    predictor = load_predictor(args)
    vocab = predictor.set_vocabulary(args.vocab)
    # Default: the family's first task, its paper's own output (FC-CLIP panoptic, OVSeg semantic).
    tasks = predictor.family.tasks if args.task == "all" else (args.task or predictor.family.tasks[0],)
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not todo) as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            images = [load_image(path) for path in chunk]
            predictions = predictor.predict(images, task=tasks, batch_size=args.batch_size)
            for path, image, prediction in zip(chunk, images, predictions, strict=True):
                write_prediction(output, path.stem, image, prediction, vocab)
            bar.update(len(chunk))
    print(f"wrote {len(todo)} result(s) for {len(vocab)} classes to {output}")


def cmd_models(args: argparse.Namespace) -> None:
    from vocabseg.models import get_family

    rows = []
    for name in list_models():
        variant = get_variant(name)
        family = get_family(variant.family)
        miou = variant.reported.get("ade20k_miou")
        rows.append((name, family.title, family.describe(variant.config).get("backbone", ""), ",".join(family.tasks),
                     "-" if miou is None else f"{miou:.1f}"))
    header = ("name", "family", "backbone", "tasks", "A-150")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)) + "  " + row[-1])


def cmd_download(args: argparse.Namespace) -> None:
    from vocabseg.downloads import fetch_official_weights

    for name in args.models:
        print(fetch_official_weights(get_variant(name)))


def add_predict_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with a vocabulary")
    p.add_argument("inputs", nargs="+", help="image files or directories")
    add_model_arguments(p)
    p.add_argument("--vocab",
                   help="built-in name, file, or inline 'car; person; road [stuff]' (default: COCO+ADE+LVIS)")
    p.add_argument("--task", choices=["panoptic", "semantic", "instance", "all"],
                   help="default: the model's own output (FC-CLIP panoptic, OVSeg semantic)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="images per forward pass (1 reproduces the official per-image results exactly)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the model variants")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("download", help="download official checkpoints into the cache")
    p.add_argument("models", nargs="+", choices=list_models())
    p.set_defaults(func=cmd_download)
