"""Where the command line's messages go: vocabseg's own records once, on stderr; other libraries' noise summed up.

One place for the CLI's logging. vocabseg's logger hierarchy gets its own handler and does not
propagate: a dependency may configure the root logger (open_clip's ``logging.info`` calls
``basicConfig`` when the root has no handler), and vocabseg's records would then print twice,
once as ``WARNING:vocabseg...``. The library itself configures nothing (``import vocabseg`` in a
notebook leaves logging to the notebook).
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("vocabseg")


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


def verbosity_level(quiet: bool, verbose: bool) -> int:
    """The level of vocabseg's messages: -q warnings and errors only, -v debug notes too."""
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


@contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """vocabseg's records at ``level`` and above on stderr, printed once, for one command; restored after."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the root logger's handlers (a dependency's basicConfig) never see them
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _Collector(logging.Handler):
    """Keeps the records of other libraries at WARNING and above (vocabseg's own print as usual)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("vocabseg"):
            self.records.append(record)


@contextmanager
def third_party_warnings(during: str) -> Iterator[None]:
    """Other libraries' warnings raised inside, as one summary line (all of them with ``VOCABSEG_DEBUG=1``).

    Collected: log records at WARNING and above that reach the root logger (its handlers are set
    aside meanwhile, so a ``basicConfig`` handler or Python's last-resort one prints none of them)
    and Python warnings. Nothing is hidden for good: the summary names the sources and how to see all.
    """
    if os.environ.get("VOCABSEG_DEBUG"):
        yield
        return
    root, collector = logging.getLogger(), _Collector()
    kept = root.handlers[:]
    root.handlers = [collector]
    try:
        with warnings.catch_warnings(record=True) as caught:  # the filters in force decide what is caught
            yield
    finally:
        root.handlers = kept
        _summarise(during, [r.name.split(".")[0] for r in collector.records] + [w.category.__name__ for w in caught])


def _summarise(during: str, sources: list[str]) -> None:
    """One line: how many warnings, from which libraries (or warning categories), most first."""
    if sources:
        named = ", ".join(f"{count} from {name}" for name, count in Counter(sources).most_common())
        logger.info("%s: %d warning(s) of other libraries hidden (%s); VOCABSEG_DEBUG=1 prints them",
                       during, len(sources), named)
