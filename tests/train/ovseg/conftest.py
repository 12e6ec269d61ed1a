"""Fixtures of the OVSeg stage tests: a synthetic pair folder and tiny-CLIP stage configs."""
from __future__ import annotations

import numpy as np
import pytest

from vocabseg.train.ovseg.config import StageConfig, stage_config_from_dict
from vocabseg.train.ovseg.mining.pairs import PairWriter

NOUNS = ("cat", "dog", "car", "tree", "sky", "road", "cup", "boat")
MEAN_FILL = (122, 116, 104)  # CLIP's mean colour, 0-255


def write_pairs(root, *, size: int = 224) -> None:
    """One pair per noun: a blob of its own colour and place, outside it CLIP's mean colour."""
    writer = PairWriter(root, settings={"synthetic": True})
    rng = np.random.default_rng(0)
    for k, noun in enumerate(NOUNS):
        mask = np.zeros((size, size), bool)
        top, left = rng.integers(0, size // 2, 2)
        mask[top:top + size // 2, left:left + size // 2] = True
        crop = np.empty((size, size, 3), np.uint8)
        crop[:] = MEAN_FILL
        crop[mask] = rng.integers(0, 256, 3)
        writer.add(f"img{k}.jpg", [(crop, mask, noun, 1.0, f"a {noun}")])


@pytest.fixture
def pair_root(tmp_path):
    root = tmp_path / "pairs"
    write_pairs(root)
    return root


@pytest.fixture
def stage_config(pair_root, tmp_path, one_thread):
    """``stage_config(stage, **solver) -> StageConfig`` for the tiny CLIP on the synthetic pairs."""

    def make(stage: str, output: str = "run", **solver) -> StageConfig:
        base = {"lr": 2e-3, "warmup_iters": 0, "max_iter": 40, "batch_size": 8, "batch_per_gpu": 8,
                "amp": "off", "checkpoint_period": 0, "log_period": 0}
        return stage_config_from_dict({
            "stage": stage, "output": str(tmp_path / output), "device": "cpu",
            "clip": {"tiny": True, "mask_prompt_depth": 2},
            "data": {"root": str(pair_root), "num_workers": 0},
            "solver": {**base, **solver}})

    return make
