"""Thin adapters between vocabseg's outputs and other tools, one module per tool, each behind its extra.

Nothing in the core imports these; each imports its tool when used and names the extra to
install when it is missing (``pip install "vocabseg[ray]"``, ``[fiftyone]``, ``[supervision]``).
``coco`` (COCO JSON of a run folder) and ``run_folder`` (reading a ``vocabseg predict`` folder
back) need no extra.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from vocabseg.errors import ConfigError


def require(module: str, extra: str) -> ModuleType:
    """Imports ``module`` or raises a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed: pip install \"vocabseg[{extra}]\"") from None
