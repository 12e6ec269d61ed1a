"""Command line: `vocabseg predict | models | download | eval | score | data | train | push | export | demo`."""
from __future__ import annotations

import argparse
import os
import sys

from vocabseg.cli.logs import cli_logging, verbosity_level
from vocabseg.errors import VocabsegError, first_line

# Errors whose message is one line that says what to fix: ours, and the operating system's
# (unwritable output, full disk, ...). Anything else is a bug and keeps its traceback.
# VOCABSEG_DEBUG=1 shows the traceback of these too.
USER_ERRORS = (VocabsegError, OSError)


def build_parser() -> argparse.ArgumentParser:
    from vocabseg.cli.bench import add_bench_parser
    from vocabseg.cli.data import add_data_parser
    from vocabseg.cli.demo import add_demo_parser
    from vocabseg.cli.eval import add_eval_parser
    from vocabseg.cli.export import add_export_parser
    from vocabseg.cli.export_labels import add_export_labels_parser
    from vocabseg.cli.hub import add_hub_parser
    from vocabseg.cli.predict import add_predict_parsers
    from vocabseg.cli.train import add_train_parser

    parser = argparse.ArgumentParser(prog="vocabseg", description="Open-vocabulary image segmentation")
    add_verbosity_arguments(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    add_predict_parsers(sub)
    add_eval_parser(sub)
    add_data_parser(sub)
    add_train_parser(sub)
    add_bench_parser(sub)
    add_hub_parser(sub)
    add_export_parser(sub)
    add_export_labels_parser(sub)
    add_demo_parser(sub)
    for command in _subcommands(parser):
        # SUPPRESS: a subcommand that is not given -q leaves the value of `vocabseg -q CMD` alone
        add_verbosity_arguments(command, default=argparse.SUPPRESS)
    return parser


def add_verbosity_arguments(parser: argparse.ArgumentParser, *, default: object) -> None:
    """-q/-v, accepted before the subcommand and after it (``vocabseg predict ... -q``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default, help="print only warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", default=default, help="print debug notes too")


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (nested) subcommand's parser, e.g. `predict` and `data prepare`."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases share one parser
                found += [command, *_subcommands(command)]
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet and args.verbose:  # one given before the subcommand, the other after it
        build_parser().error("-q/--quiet and -v/--verbose contradict each other; give one")
    with cli_logging(verbosity_level(args.quiet, args.verbose)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        status = args.func(args)
    except USER_ERRORS as error:
        if os.environ.get("VOCABSEG_DEBUG"):
            raise
        print(f"vocabseg: error: {first_line(error)}", file=sys.stderr)
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
