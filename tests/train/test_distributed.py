"""Process-group helpers, and 2 processes x 1 step == 1 process x 2 accumulation steps."""
from __future__ import annotations

import pytest
import torch

from vocabseg import distributed as dist
from vocabseg.checkpoints import read_checkpoint
from vocabseg.cli.train import run_training
from vocabseg.errors import DeviceError
from vocabseg.train.build import build_trainer

# Jitter and flips on, 3 images: every sample's augmentation and point sampling must match too.
EQUIVALENCE = ["data.num_images=3", "input.min_scale=0.6", "input.max_scale=1.4", "input.flip=true",
               "solver.max_iter=3", "solver.batch_size=2", "solver.batch_per_gpu=1"]


def test_helpers_work_without_a_process_group():
    assert not dist.is_initialized()
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process()) == (0, 1, True)
    value = torch.tensor([1.0, 3.0])
    assert torch.equal(dist.all_reduce_mean(value), value) and torch.equal(dist.all_reduce_sum(value), value)
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]
    dist.barrier()
    dist.cleanup()
    assert dist.init_from_env(device="cpu") == torch.device("cpu") and not dist.is_initialized()


def test_rank_and_world_read_torchrun_before_a_group_is_joined(monkeypatch):
    assert dist.rank_and_world() == (0, 1)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert dist.rank_and_world() == (3, 4) and dist.get_rank() == 0  # get_rank: the joined group's only
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.join_from_env() is False and not dist.is_initialized()  # a single process joins nothing


def test_unknown_training_device_is_a_one_line_error():
    with pytest.raises(DeviceError, match="unknown device 'banana'; use auto, cpu or cuda"):
        dist.init_from_env(device="banana")


@pytest.mark.slow  # two training processes (~20 s)
def test_two_processes_match_one_process_with_accumulation(train_on_two_ranks, tiny_config, tiny_overrides, tmp_path):
    single = run_training(tiny_config(*EQUIVALENCE))
    assert single.settings.accum_steps == 2

    train_on_two_ranks(["--preset", "fcclip_tiny_cpu", *tiny_overrides, *EQUIVALENCE, f"output={tmp_path / 'ddp'}"])
    ddp = read_checkpoint(tmp_path / "ddp" / "model_final.pth")
    assert ddp["trainer"]["world_size"] == 2 and ddp["trainer"]["position"] == 6
    assert len(ddp["trainer"]["rng"]) == 2  # both ranks' random states

    reference = single.model.state_dict()
    initial = build_trainer(tiny_config(*EQUIVALENCE), device=torch.device("cpu")).model.state_dict()
    trained = [k for k, p in single.model.named_parameters() if p.requires_grad]
    moved = max(float((reference[k] - initial[k]).abs().max()) for k in trained)
    assert moved > 1e-3  # 3 AdamW steps of lr 1e-3 (warmup off)
    for name in trained:  # summation order differs (all-reduce vs accumulation): float tolerance
        torch.testing.assert_close(ddp["model"][name], reference[name], rtol=0, atol=1e-6, msg=name)
