"""Command line: `vocabseg predict | models | download | eval | score | data | train | push | export | demo`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

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
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
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
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message.

    ``main`` may run several times in one process (tests, notebooks) while ``sys.stderr`` is
    swapped; a handler holding the first stream would write into a closed one later.
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def configure_logging(quiet: bool = False) -> None:
    """Messages of the ``vocabseg`` logger on stderr; the root logger is left alone."""
    logger = logging.getLogger("vocabseg")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
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
