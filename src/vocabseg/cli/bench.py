"""`vocabseg bench`: per-stage times, peak memory and images/s, exact vs fast, as a table."""
from __future__ import annotations

import argparse
import platform

from vocabseg.cli.common import positive_int


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time a model stage by stage, exact vs fast mode")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="zoo name (random weights unless --weights is given)")
    which.add_argument("--checkpoint", help="checkpoint file (official or vocabseg's own)")
    p.add_argument("--weights", help="checkpoint file for a zoo --model")
    p.add_argument("--clip-weights", help="open_clip state dict, for checkpoints without the frozen CLIP")
    p.add_argument("--size", type=_size, default=(800, 1200), help="HxW of the synthetic test image (800x1200)")
    p.add_argument("--image", help="a photo to use instead of the synthetic one (any size, e.g. a 12 MP phone "
                                   "photo: post-processing is reported per megapixel)")
    p.add_argument("--vocab", default="ade20k_150", help="vocabulary (default ade20k_150)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--modes", type=_modes, default=("exact", "fast"),
                   help="comma-separated: exact,fast (bf16 where native, else float32),bf16 (bf16 forced)")
    p.add_argument("--tasks", default="all", help="comma-separated tasks, or all (default)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per run (copies of the test image)")
    p.add_argument("--repeats", type=positive_int, default=2, help="timed passes per mode (median reported)")
    p.add_argument("--warmup", type=_non_negative, default=1, help="untimed passes per mode first")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU seconds / threads, an idle-machine estimate when other jobs share the CPU")
    p.add_argument("--text", choices=["cold", "skip"], default="cold",
                   help="cold: also time building the text classifier into an empty cache, then warm")
    p.set_defaults(func=cmd_bench)


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW such as 800x1200, got {text!r}")
    return int(height), int(width)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _modes(text: str) -> tuple[str, ...]:
    from vocabseg.bench import MODES

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0] if unknown else text!r}; use exact,fast,bf16")
    return modes


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from vocabseg import bench

    predictor = _load(args)
    tasks = _tasks(args.tasks, predictor.family)
    print(f"{predictor.family.title} {args.model or args.checkpoint} on {predictor.device} "
          f"({_machine(predictor.device)}, {torch.get_num_threads()} threads), torch {torch.__version__}")
    for mode in args.modes:  # what each mode runs on this device, and why (vocabseg.precision)
        print(predictor.with_settings({"precision": bench.MODES[mode]}).recipe.describe())
    if args.text == "cold":  # fast mode embeds text with a bf16 tower: timed per mode
        for mode in args.modes:
            predictor.with_settings({"precision": bench.MODES[mode]})
            cold, warm = bench.time_text_classifier(predictor, args.vocab, args.clock)
            print(f"text classifier ({args.vocab}, {mode}): cold {cold:.1f} s, warm {warm:.2f} s")
    vocab = predictor.set_vocabulary(args.vocab, progress=False)
    images = [_image(args)] * args.batch
    print(f"{args.batch} image(s) of {images[0].shape[0]}x{images[0].shape[1]}, {len(vocab)} classes, "
          f"tasks {','.join(tasks)}, median of {args.repeats}, {args.clock} clock")
    results = [bench.run_mode(predictor, images, tasks, mode=mode, repeats=args.repeats, warmup=args.warmup,
                              clock=args.clock) for mode in args.modes]
    exact = next((r for r in results if r.mode == "exact"), None)
    deviations = {r.mode: bench.deviation(r, exact) for r in results if exact is not None and r is not exact}
    print(bench.format_table(results, deviations))
    return 0


def _tasks(text: str, family) -> tuple[str, ...]:
    """--tasks as a tuple of the family's tasks; anything else a one-line error."""
    from vocabseg.errors import ConfigError

    tasks = family.tasks if text == "all" else tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in family.tasks] or ([] if tasks else [text])
    if unknown:
        raise ConfigError(f"--tasks: {family.title} models give {','.join(family.tasks)} output, not {unknown[0]!r}")
    return tasks


def _load(args: argparse.Namespace):
    from vocabseg.bench import random_weights_predictor
    from vocabseg.cli.common import load_predictor

    if args.checkpoint or args.weights:
        args.model, args.settings = args.checkpoint or args.model, []
        args.size_preset = args.min_size = args.max_size = None
        return load_predictor(args)
    return random_weights_predictor(args.model, args.device)


def _image(args: argparse.Namespace):
    from vocabseg.images import load_image
    from vocabseg.testing import synthetic_photo

    return load_image(args.image) if args.image else synthetic_photo(*args.size)


def _machine(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
