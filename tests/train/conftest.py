"""Shared fixtures for the training tests: the tiny CPU preset, pointed at a temporary folder."""
from __future__ import annotations

import pytest

from vocabseg.train.config import TrainConfig, load_config

TINY_PRESET = "fcclip_tiny_cpu"


@pytest.fixture
def tiny_overrides(tmp_path) -> list[str]:
    """Overrides of the tiny preset for fast tests: 2 synthetic 64x64 images, no jitter, no checkpoint or log."""
    return [
        f"output={tmp_path / 'run'}", f"text_cache={tmp_path / 'text_cache'}", "data.num_images=2",
        "input.min_scale=1.0", "input.max_scale=1.0", "input.flip=false",
        "solver.checkpoint_period=0", "solver.log_period=0", "solver.warmup_iters=0",
    ]


@pytest.fixture
def tiny_config(tiny_overrides, one_thread):
    """``tiny_config(*overrides) -> TrainConfig`` (the tiny preset + ``tiny_overrides`` + these)."""

    def make(*overrides: str) -> TrainConfig:
        return load_config(TINY_PRESET, tiny_overrides + list(overrides))

    return make
