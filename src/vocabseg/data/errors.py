"""Checks that raise one error type for datasets that are missing, unprepared or malformed.

The error class is :class:`vocabseg.errors.DatasetError` (a ``VocabsegError`` and a
``ValueError``), re-exported here. Every message is one line: the file or folder, what
is wrong with it, and the command or step that fixes it. The CLI prints ``str(error)``
and nothing else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vocabseg.errors import DatasetError

__all__ = ["DatasetError", "prepare_hint", "read_json", "require_dir", "require_file", "require_keys"]


def prepare_hint(prepare_name: str, root: Path) -> str:
    """The command that builds the derived files of one dataset family."""
    return f"run `vocabseg data prepare {prepare_name} --root {root}`"


def require_dir(path: Path, fix: str, *, what: str = "folder") -> Path:
    """Returns ``path`` if it is a folder, else raises naming it (as ``what``) and ``fix``."""
    if not Path(path).is_dir():
        raise DatasetError(f"{what} {path} not found; {fix}")
    return path


def require_file(path: Path, fix: str, *, what: str = "file") -> Path:
    """Returns ``path`` if it is a file, else raises naming it (as ``what``) and ``fix``."""
    if not Path(path).is_file():
        raise DatasetError(f"{what} {path} not found; {fix}")
    return path


def read_json(path: Path, fix: str, *, what: str = "file", malformed: str | None = None) -> Any:
    """Loads a json file; the one JSON reader of vocabseg's dataset and evaluation files.

    Args:
        fix: what to do when the file is missing.
        what: what the file is, for the messages (e.g. "COCO results json").
        malformed: what to do when it is not valid JSON; default: delete it and ``fix``
            (a download or a prepare run cut short).
    """
    require_file(path, fix, what=what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
        raise DatasetError(f"{what} {path} is not valid JSON ({where}); "
                           f"{malformed or f'it is probably truncated: delete it and {fix}'}") from None


def require_keys(obj: Any, keys: tuple[str, ...], where: str, fix: str) -> None:
    """Raises if ``obj`` is not a dict holding every key in ``keys``."""
    if not isinstance(obj, dict):
        raise DatasetError(f"{where} should be a JSON object, got {type(obj).__name__}; {fix}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DatasetError(f"{where} lacks field(s) {', '.join(missing)}; {fix}")
