"""Shared fixtures: the official-format synthetic checkpoints from ../shared/reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "synth_weights.py").exists():
        pytest.skip("../shared/reference is not available")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def reference_file():
    """File name in ../shared/reference -> its path; skips the test when the file is absent."""

    def path(name: str) -> Path:
        found = REFERENCE_DIR / name
        if not found.is_file():
            pytest.skip(f"../shared/reference/{name} is not available")
        return found

    return path


@pytest.fixture(scope="session")
def synth_official_state(reference_dir):
    """manifest file name -> official-format state dict with deterministic synthetic weights."""
    sys.path.insert(0, str(reference_dir))
    from synth_weights import load_manifest, synth_state_dict

    return lambda name: synth_state_dict(load_manifest(reference_dir / name))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one intra-op thread
    (a second thread mostly waits for a busy core); restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
