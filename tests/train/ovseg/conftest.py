"""Fixtures of the OVSeg stage tests: a synthetic pair folder and tiny-CLIP stage configs."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vocabseg.mining.pairs import PairWriter
from vocabseg.train.ovseg.config import StageConfig, stage_config_from_dict

NOUNS = ("cat", "dog", "car", "tree", "sky", "road", "cup", "boat")
MEAN_FILL = (122, 116, 104)  # CLIP's mean colour, 0-255
SRC = Path(__file__).resolve().parents[3] / "src"


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


@pytest.fixture
def two_ranks():
    """``launch(code, args)``: what torchrun does, two CPU ranks running ``python -c code *args`` (gloo)."""

    def launch(code: str, args: list[str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for rank in range(2):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            procs.append(subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        try:
            outputs = [p.communicate(timeout=240)[0] for p in procs]
        finally:
            for proc in procs:  # a rank left waiting for a dead peer must not outlive the test
                proc.kill()
        for rank, (proc, output) in enumerate(zip(procs, outputs)):
            assert proc.returncode == 0, f"rank {rank} failed:\n{output[-3000:]}"

    return launch
