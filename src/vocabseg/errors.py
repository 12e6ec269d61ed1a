"""The errors vocabseg raises for a user's mistake.

Every one subclasses :class:`VocabsegError` and carries a one-line message naming the file or
field and the fix; the CLI prints exactly that line. Anything else (a real bug) keeps its
traceback. The subclasses also derive from ``ValueError`` so callers that caught the built-in
type keep working.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class VocabsegError(Exception):
    """Base of every user-facing vocabseg error; the message is one line."""


class ConfigError(VocabsegError, ValueError):
    """A setting, option or preset value that cannot be used."""


class CheckpointError(VocabsegError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class ImageError(VocabsegError, ValueError):
    """An input image that cannot be read."""


class DatasetError(VocabsegError, ValueError):
    """A dataset file or folder that is missing or malformed."""


class VocabularyError(VocabsegError, ValueError):
    """A vocabulary that cannot be used (empty, unreadable, unknown name)."""


class DeviceError(VocabsegError, RuntimeError):
    """A device that does not exist on this machine."""


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.8) -> str | None:
    """The choice closest to a mistyped ``word`` (difflib's ratio at least ``cutoff``), else None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def first_line(error: BaseException) -> str:
    """The one line a person is shown for ``error``: its message's first line, else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
