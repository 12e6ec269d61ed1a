"""The tiny Cascade-CLIP preset pointed at a temporary folder, without augmentation noise by default."""
from __future__ import annotations

import pytest

from vocabseg.train.config import TrainConfig, load_config

TINY_PRESET = "cascade_clip_tiny_cpu"


@pytest.fixture
def cascade_overrides(tmp_path) -> list[str]:
    """2 synthetic 64x64 images (0: square + disc + floor, 1: square + floor), no checkpoint or log."""
    return [f"output={tmp_path / 'run'}", f"text_cache={tmp_path / 'text_cache'}", "data.num_images=2",
            "solver.checkpoint_period=0", "solver.log_period=0"]


@pytest.fixture
def cascade_config(cascade_overrides, one_thread):
    """``cascade_config(*overrides) -> TrainConfig`` (the tiny preset + ``cascade_overrides`` + these)."""

    def make(*overrides: str) -> TrainConfig:
        return load_config(TINY_PRESET, cascade_overrides + list(overrides))

    return make
