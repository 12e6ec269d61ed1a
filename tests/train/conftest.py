"""Shared fixtures for the training tests: the tiny CPU preset, pointed at a temporary folder."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vocabseg.train.config import TrainConfig, load_config

TINY_PRESET = "fcclip_tiny_cpu"
SRC = Path(__file__).resolve().parents[2] / "src"
# a rank of `vocabseg train` (torchrun runs the same through the CLI)
TRAIN_CODE = ("import sys, torch; torch.set_num_threads(1); "
              "from vocabseg.cli.train import run_training; run_training(sys.argv[1:])")


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


@pytest.fixture
def train_on_two_ranks(two_ranks):
    """``run(args)``: ``vocabseg train ARGS`` as two gloo ranks."""
    return lambda args: two_ranks(TRAIN_CODE, args)
