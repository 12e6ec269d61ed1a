"""Command line: `vocabseg predict | models | download | eval | data | train`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .images import ImageError
from .model.convert import CheckpointError
from .zoo import SIZE_PRESETS, get_variant, list_models

# Errors whose message is already one line that says what to fix (OSError: unwritable output,
# full disk, ...). Set VOCABSEG_DEBUG=1 to see the traceback instead.
USER_ERRORS = (CheckpointError, ImageError, ValueError, OSError, RuntimeError)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="zoo name (see `vocabseg models`) or checkpoint path")
    parser.add_argument("--weights", help="checkpoint file for a zoo model (instead of downloading)")
    parser.add_argument("--clip-weights", help="open_clip state dict, for checkpoints without the frozen CLIP")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--size-preset", choices=sorted(SIZE_PRESETS), help="official test resize of a benchmark")
    parser.add_argument("--min-size", type=positive_int, help="test resize: shortest edge (default 800)")
    parser.add_argument("--max-size", type=positive_int, help="test resize: longest edge cap (default 1333)")


def inference_overrides(args, default_preset: str | None = None) -> dict:
    """Test-resize settings from --size-preset / --min-size / --max-size (else ``default_preset``)."""
    overrides = {}
    preset = args.size_preset or (default_preset if args.min_size is None and args.max_size is None else None)
    if preset:
        overrides["min_size"], overrides["max_size"] = SIZE_PRESETS[preset]
    if args.min_size is not None:
        overrides["min_size"] = args.min_size
    if args.max_size is not None:
        overrides["max_size"] = args.max_size
    return overrides


def load_predictor(args, default_preset: str | None = None):
    from .predictor import Predictor

    return Predictor.from_pretrained(args.model, weights=args.weights, clip_weights=args.clip_weights, device=args.device,
                                     inference=inference_overrides(args, default_preset))


def cmd_predict(args) -> None:
    from tqdm import tqdm

    from .images import check_readable, expand_inputs, load_image
    from .outputs import write_prediction

    paths = expand_inputs(args.inputs)
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file; give a directory for the results")
    todo = [p for p in paths if args.overwrite or not (output / f"{p.stem}_overlay.png").exists()]
    if len(todo) < len(paths):
        print(f"skipping {len(paths) - len(todo)} image(s) already done in {output} (--overwrite to redo)", file=sys.stderr)
    check_readable(todo)
    predictor = load_predictor(args)
    vocab = predictor.set_vocabulary(args.vocab)
    tasks = ("panoptic", "semantic", "instance") if args.task == "all" else (args.task,)
    with tqdm(total=len(todo), desc="predict", unit="img", disable=not todo) as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            images = [load_image(path) for path in chunk]
            predictions = predictor.predict(images, task=tasks, batch_size=args.batch_size)
            for path, image, prediction in zip(chunk, images, predictions):
                write_prediction(output, path.stem, image, prediction, vocab)
            bar.update(len(chunk))
    print(f"wrote {len(todo)} result(s) for {len(vocab)} classes to {output}")


def cmd_models(args) -> None:
    print(f"{'name':28s} {'CLIP':22s} {'pretrained':28s} {'embed':>5s} {'queries':>7s} {'ADE PQ':>6s} {'A-150':>6s}")
    for name in list_models():
        v = get_variant(name)
        c = v.config
        print(f"{name:28s} {c.clip_model_name:22s} {c.clip_pretrained:28s} {c.embed_dim:5d} {c.num_queries:7d} "
              f"{v.reported.get('ade20k_pq', float('nan')):6.1f} {v.reported.get('ade20k_miou', float('nan')):6.1f}")


def cmd_download(args) -> None:
    from .weights import fetch_official_weights

    for name in args.models:
        print(fetch_official_weights(get_variant(name)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vocabseg", description="Open-vocabulary image segmentation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="segment images with a vocabulary")
    p.add_argument("inputs", nargs="+", help="image files or directories")
    add_model_arguments(p)
    p.add_argument("--vocab", help="built-in name, file, or inline 'car; person; road [stuff]' (default: COCO+ADE+LVIS)")
    p.add_argument("--task", default="panoptic", choices=["panoptic", "semantic", "instance", "all"])
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
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Evaluation, data and training commands; their heavy modules load only when run."""
    from .data.cli import add_data_parser
    from .eval.cli import add_eval_parser

    add_eval_parser(sub)
    add_data_parser(sub)
    try:
        from .train.cli import add_train_parser
    except ImportError:  # training lands separately; until then the command is absent
        return
    add_train_parser(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except USER_ERRORS as error:
        if os.environ.get("VOCABSEG_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"vocabseg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vocabseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    return status if isinstance(status, int) else 0  # handlers may return a result object


if __name__ == "__main__":
    sys.exit(main())
