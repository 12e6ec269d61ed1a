"""`vocabseg demo`: serve the web demo (Gradio) on this machine."""
from __future__ import annotations

import argparse
from pathlib import Path

from vocabseg.cli.common import positive_int, setting, test_size_overrides


def model_sources(args: argparse.Namespace) -> list:
    """Picker entries: --checkpoint files/folders/hf-hub names, --model zoo names (all of them if none given)."""
    from vocabseg.demo import ModelSource
    from vocabseg.errors import ConfigError
    from vocabseg.zoo import list_models

    if args.weights and len(args.model) != 1:
        raise ConfigError("--weights belongs to one --model NAME; give exactly one --model with it "
                          "(or pass vocabseg checkpoints with --checkpoint PATH)")
    sources = [ModelSource(_label(path), path, clip_weights=args.clip_weights) for path in args.checkpoint]
    names = args.model or ([] if sources else list_models())
    sources += [ModelSource(name, name, weights=args.weights, clip_weights=args.clip_weights) for name in names]
    return sources


def _label(path: str) -> str:
    return path if path.startswith("hf-hub:") else Path(path).name


def cmd_demo(args: argparse.Namespace) -> None:
    from vocabseg.demo import DemoSession, launch

    settings = {**test_size_overrides(args), **dict(args.settings)}
    session = DemoSession(model_sources(args), device=args.device, settings=settings)
    print(f"vocabseg demo on http://{args.host}:{args.port} (Ctrl+C stops it)")
    launch(session, host=args.host, port=args.port, share=args.share)


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve the web demo (needs the [demo] extra)")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="a checkpoint file, shared folder or hf-hub:org/name to offer (repeatable)")
    p.add_argument("--model", action="append", default=[],
                   help="a zoo name to offer (repeatable; default: every zoo model: those whose weights are not "
                        "on this machine say in the page how to get them)")
    p.add_argument("--weights", help="local official checkpoint for the one --model (offline use)")
    p.add_argument("--clip-weights", help="open_clip state dict, for checkpoints without the frozen CLIP")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--min-size", type=positive_int, help="test resize: shortest edge (default: the model's)")
    p.add_argument("--max-size", type=positive_int, help="test resize: longest edge cap (default: the model's)")
    p.add_argument("--set", dest="settings", action="append", default=[], type=setting, metavar="KEY=VALUE",
                   help="a test-time setting of the models, e.g. ensemble_alpha=0.5; repeatable")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: reachable from others)")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs network)")
    p.set_defaults(func=cmd_demo, size_preset=None)
