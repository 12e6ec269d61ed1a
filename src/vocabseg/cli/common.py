"""Arguments and helpers shared by the commands."""
from __future__ import annotations

import argparse
from typing import Any

# Official test resizes (shortest edge, longest edge cap) by benchmark, for --size-preset.
SIZE_PRESETS = {"default": (800, 1333), "cityscapes": (1024, 2560), "mapillary_vistas": (1024, 2560)}


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
    parser.add_argument("--min-size", type=positive_int, help="test resize: shortest edge (default: the model's)")
    parser.add_argument("--max-size", type=positive_int, help="test resize: longest edge cap (default: the model's)")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=setting, metavar="KEY=VALUE",
                        help="a test-time setting of the model, e.g. ensemble_weight=0.45 or demo_mode=true "
                             "(OVSeg), ensemble_alpha=0.5 (FC-CLIP); repeatable")


def setting(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, true/false, null)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot read the value of {text!r}") from None


def test_size_overrides(args: argparse.Namespace) -> dict[str, int]:
    """Test-resize settings the user gave with --size-preset / --min-size / --max-size (else none)."""
    overrides: dict[str, int] = {}
    if args.size_preset:
        overrides["min_size"], overrides["max_size"] = SIZE_PRESETS[args.size_preset]
    if args.min_size is not None:
        overrides["min_size"] = args.min_size
    if args.max_size is not None:
        overrides["max_size"] = args.max_size
    return overrides


def load_predictor(args: argparse.Namespace) -> Any:
    from vocabseg.predictor import Predictor

    overrides = {**test_size_overrides(args), **dict(args.settings)}
    return Predictor.from_pretrained(args.model, weights=args.weights, clip_weights=args.clip_weights,
                                     device=args.device, inference=overrides)
