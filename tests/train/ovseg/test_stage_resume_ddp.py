"""CLIP stages: a killed run resumes to the same losses; 2 processes equal 1 process with the same batch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vocabseg.fileio import read_checkpoint
from vocabseg.train.ovseg.run import run_stage


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


# One stage per launch: a process that leaves a gloo group and joins a new one on the same port can
# meet its peer's stale rendezvous keys.
LAUNCH = ("import json, sys, torch; torch.set_num_threads(1); "
          "from vocabseg.train.ovseg.config import stage_config_from_dict; "
          "from vocabseg.train.ovseg.run import run_stage; run_stage(stage_config_from_dict(json.loads(sys.argv[1])))")


@pytest.mark.slow  # two launches of two processes (~35 s on 2 cores)
def test_two_processes_match_one_process_with_accumulation(stage_config, two_ranks):
    stages = ("adapt", "prompt")
    configs = [stage_config(stage, f"ddp_{stage}", max_iter=3, batch_per_gpu=4) for stage in stages]  # 2 x 4 x 1
    for stage, config in zip(stages, configs):
        two_ranks(LAUNCH, [json.dumps(config.to_dict())])
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
