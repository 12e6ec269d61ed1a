"""Fixtures for the data tests; the tiny-dataset writers live in tiny_datasets/.

The project runs pytest with --import-mode=importlib, which does not put test
folders on sys.path, so this folder is added here to make ``tiny_datasets``
importable (by these tests, and by any test that loads this conftest's trick).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_datasets import PREPARED_WRITERS, Tiny  # noqa: E402  (needs the path above)


@pytest.fixture(params=sorted(PREPARED_WRITERS))
def prepared_split(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Tiny]:
    """(registry val split name, its tiny prepared dataset under tmp_path), for every split."""
    return request.param, PREPARED_WRITERS[request.param](tmp_path)
