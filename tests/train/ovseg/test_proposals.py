"""Stage (a): the OVSeg proposal generator trains with MaskFormer's losses in the generic trainer."""
from __future__ import annotations

import torch

from vocabseg.cli.train import run_training
from vocabseg.losses.maskformer import batch_focal_cost, sigmoid_focal_loss
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
