"""Stage (a): the OVSeg proposal generator trains with MaskFormer's losses in the generic trainer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vocabseg.checkpoints import read_checkpoint
from vocabseg.cli.train import run_training
from vocabseg.losses.maskformer import batch_focal_cost, sigmoid_focal_loss
from vocabseg.train.build import build_trainer
from vocabseg.train.config import load_config

OVERFIT = ["solver.max_iter=30", "solver.steps=[1000]", "solver.lr=3e-3", "solver.batch_size=2",
           "solver.clip_grad=0", "data.num_images=2"]


def test_focal_cost_is_the_focal_loss_of_each_pair():
    logits, targets = torch.randn(3, 10), (torch.rand(2, 10) > 0.5).float()
    cost = batch_focal_cost(logits, targets)  # [3, 2]
    for q in range(3):
        for n in range(2):
            torch.testing.assert_close(cost[q, n], sigmoid_focal_loss(logits[q:q + 1], targets[n:n + 1], 1.0))


def test_tiny_ovseg_overfits_two_images(tiny_overrides, one_thread):
    config = load_config("ovseg_tiny_cpu", tiny_overrides + OVERFIT)
    trainer = run_training(config, keep_history=True)
    assert type(trainer.criterion).__name__ == "MaskFormerCriterion"
    assert trainer.criterion.weight_dict["loss_mask"] == 20.0 and trainer.criterion.weight_dict["loss_ce"] == 1.0
    totals = [r.total for r in trainer.history]
    assert sum(totals[-3:]) / 3 < totals[0] / 2.5, totals  # measured: 21.5 -> 6.8


def test_killed_ovseg_run_resumes_to_the_same_losses(tiny_overrides, tmp_path, one_thread):
    overrides = [*tiny_overrides, "solver.max_iter=4", "solver.checkpoint_period=2", "data.num_images=3",
                 "input.min_scale=0.5", "input.max_scale=1.5", "input.flip=true"]
    whole = run_training(load_config("ovseg_tiny_cpu", overrides), keep_history=True)
    resumed = build_trainer(load_config("ovseg_tiny_cpu", [*overrides, f"output={tmp_path / 'resumed'}"]),
                            device=torch.device("cpu"), keep_history=True)
    resumed.resume(tmp_path / "run" / "model_0000002.pth")
    resumed.train()
    assert [(r.total, r.losses) for r in resumed.history] == [(r.total, r.losses) for r in whole.history[2:]]


@pytest.mark.slow  # two training processes (~20 s on 2 cores)
def test_two_ovseg_processes_match_one_process_with_accumulation(tiny_overrides, tmp_path, two_ranks, one_thread):
    same = ["data.num_images=3", "input.flip=true", "solver.max_iter=3", "solver.batch_size=2",
            "solver.batch_per_gpu=1", "solver.clip_grad=0", "solver.lr=1e-3"]
    single = run_training(load_config("ovseg_tiny_cpu", [*tiny_overrides, *same]))
    assert single.settings.accum_steps == 2
    code = "import sys, torch; torch.set_num_threads(1); from vocabseg.cli.train import run_training; " \
           "run_training(sys.argv[1:])"
    two_ranks(code, ["--preset", "ovseg_tiny_cpu", *tiny_overrides, *same, f"output={tmp_path / 'ddp'}"])
    ddp = read_checkpoint(Path(tmp_path / "ddp" / "model_final.pth"))
    assert ddp["trainer"]["world_size"] == 2
    reference = single.model.state_dict()
    trained = [k for k, p in single.model.named_parameters() if p.requires_grad]
    for name in trained:
        torch.testing.assert_close(ddp["model"][name], reference[name], rtol=0, atol=1e-5, msg=name)
