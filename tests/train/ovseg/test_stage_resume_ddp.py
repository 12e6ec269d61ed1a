"""CLIP stages: a killed run resumes to the same losses; 2 processes equal 1 process with the same batch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vocabseg.fileio import read_checkpoint
from vocabseg.train.ovseg.run import run_stage

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.mark.parametrize("stage", ["adapt", "prompt"])
def test_killed_run_resumes_to_the_same_losses(stage_config, stage):
    solver = {"max_iter": 8, "checkpoint_period": 2, "batch_per_gpu": 4}  # accumulation 2: the cached path too
    whole = run_stage(stage_config(stage, "whole", **solver), keep_history=True)
    run_stage(stage_config(stage, "killed", **solver), stop_at=5)  # last.pth holds iteration 4
    resumed = run_stage(stage_config(stage, "killed", **solver), resume="auto", keep_history=True)
    assert resumed.history == whole.history[4:]
    final = read_checkpoint(Path(resumed.config.output) / "clip_final.pth")["state_dict"]
    for name, value in whole.clip.state_dict().items():
        assert torch.equal(final[name], value), name


def _launch_two_ranks(configs: list[dict]) -> None:
    """What torchrun does, once for all the configs (each run joins and leaves the process group)."""
    code = ("import json, sys, torch; torch.set_num_threads(1); "
            "from vocabseg.train.ovseg.config import stage_config_from_dict; "
            "from vocabseg.train.ovseg.run import run_stage; "
            "[run_stage(stage_config_from_dict(c)) for c in json.loads(sys.argv[1])]")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        procs.append(subprocess.Popen([sys.executable, "-c", code, json.dumps(configs)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for rank, (proc, output) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{output[-3000:]}"


@pytest.mark.slow  # two processes importing torch and training twice (~25 s on 2 cores)
def test_two_processes_match_one_process_with_accumulation(stage_config):
    stages = ("adapt", "prompt")
    configs = [stage_config(stage, f"ddp_{stage}", max_iter=3, batch_per_gpu=4) for stage in stages]  # 2 x 4 x 1
    _launch_two_ranks([c.to_dict() for c in configs])
    for stage, config in zip(stages, configs):
        single = run_stage(stage_config(stage, f"single_{stage}", max_iter=3, batch_per_gpu=4))  # 1 x 4 x 2
        assert single.accum == 2
        ddp = read_checkpoint(Path(config.output) / "clip_final.pth")["state_dict"]
        last = read_checkpoint(Path(config.output) / "last.pth")
        assert last["world_size"] == 2 and last["position"] == 24
        initial = run_stage(stage_config(stage, f"initial_{stage}", max_iter=1, lr=0.0)).clip.state_dict()
        reference = single.clip.state_dict()
        trained = [n for n, p in single.clip.named_parameters() if p.requires_grad]
        assert max(float((reference[n] - initial[n]).abs().max()) for n in trained) > 1e-3
        for name in trained:  # summation order differs (all-gather vs one batch): float tolerance
            torch.testing.assert_close(ddp[name], reference[name], rtol=0, atol=2e-5, msg=f"{stage}: {name}")
