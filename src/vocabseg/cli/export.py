"""`vocabseg export`: the network for a fixed vocabulary as a torch.export program (.pt2) or ONNX (.onnx)."""
from __future__ import annotations

import argparse
from pathlib import Path

from vocabseg.cli.common import add_model_arguments, load_predictor, positive_int
from vocabseg.cli.logs import third_party_warnings


def image_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (or one number for a square) -> (height, width)."""
    width, sep, height = text.lower().partition("x")
    try:
        return positive_int(height if sep else width), positive_int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1344x800, got {text!r}") from None


def cmd_export(args: argparse.Namespace) -> None:
    from vocabseg.errors import ConfigError
    from vocabseg.export import describe_export, export_program, save_description, save_onnx, save_program

    output = Path(args.output)
    if output.suffix not in (".onnx", ".pt2"):
        raise ConfigError(f"--output {output}: name the file .onnx (ONNX) or .pt2 (torch.export program)")
    existing = [path for path in (output, output.with_suffix(".json")) if path.exists()]
    if existing and not args.overwrite:  # the run-folder rule for a file target: no silent replacement
        raise ConfigError(f"--output {existing[0]} exists (an earlier export); add --overwrite to replace it "
                          "or choose another --output")
    predictor = load_predictor(args)
    predictor.set_vocabulary(args.vocab)
    height, width = args.size
    with third_party_warnings(f"export to {output.suffix[1:]}"):  # torch.export's and onnxscript's notes
        program = export_program(predictor, height=height, width=width, batch_size=args.batch_size)
        if output.suffix == ".onnx":
            save_onnx(program, output)
        else:
            save_program(program, output)
    sidecar = save_description(describe_export(predictor, program), output.with_suffix(".json"))
    print(f"wrote {output} ({width}x{height}, {len(predictor.vocabulary)} classes) and {sidecar}")


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the network for a fixed vocabulary (torch.export .pt2 or ONNX)")
    add_model_arguments(p)
    p.add_argument("--vocab", required=True, help="built-in name, file, or inline 'car; person; road [stuff]'")
    p.add_argument("--size", type=image_size, required=True,
                   help="fixed input WIDTHxHEIGHT, multiples of 32 (resized photos are zero-padded to it)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="fixed batch size of the graph")
    p.add_argument("--output", required=True, help="model.onnx or model.pt2; a .json beside it lists the classes")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export of the same name")
    p.set_defaults(func=cmd_export)
