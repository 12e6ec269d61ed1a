"""Shared by every model-family test: tiny networks run on one intra-op thread."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    """Every model test runs its tiny networks on one thread (see tests/conftest.py)."""
