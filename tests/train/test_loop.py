"""The trainer learns, resumes exactly, keeps the CLIP frozen, and refuses foreign checkpoints."""
from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from vocabseg.checkpoints import parse_checkpoint, read_checkpoint
from vocabseg.cli.train import run_training
from vocabseg.errors import CheckpointError
from vocabseg.train.build import build_trainer
from vocabseg.train.data import SampleKey

CPU = torch.device("cpu")


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp(min=1))


def test_tiny_model_overfits_two_images(tiny_config):
    config = tiny_config("solver.max_iter=80", "solver.steps=[1000]", "solver.lr=1e-3", "solver.batch_size=2",
                         "solver.batch_per_gpu=2")
    trainer = run_training(config, keep_history=True)
    first, last = trainer.history[0].total, sum(r.total for r in trainer.history[-5:]) / 5
    assert last < first / 5, f"loss fell only from {first:.2f} to {last:.2f}"

    # The trained model finds every segment: the query most confident in a target's class covers it.
    dataset = trainer.dataset
    batch = trainer.collate([dataset[SampleKey(i, 0, i)] for i in range(len(dataset))])
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(batch.images, trainer.text)
    masks = F.interpolate(out.pred_masks, size=batch.images.shape[-2:], mode="bilinear", align_corners=False) > 0
    probs = out.pred_logits.softmax(-1)  # [B, Q, K + 1]
    for b, target in enumerate(batch.targets):
        for label, gt in zip(target["labels"].tolist(), target["masks"]):
            query = int(probs[b, :, label].argmax())
            assert mask_iou(masks[b, query], gt) > 0.75, f"image {b} class {label}"


def test_resumed_run_repeats_the_uninterrupted_losses(tiny_config, tmp_path):
    overrides = ("solver.max_iter=4", "solver.checkpoint_period=2", "solver.steps=[3]", "input.min_scale=0.5",
                 "input.max_scale=1.5", "input.flip=true", "data.num_images=3")
    whole = run_training(tiny_config(*overrides), keep_history=True)
    checkpoint = tmp_path / "run" / "model_0000002.pth"
    assert checkpoint.is_file() and (tmp_path / "run" / "last.pth").is_file()

    resumed = build_trainer(tiny_config(*overrides, f"output={tmp_path / 'resumed'}"), device=CPU, keep_history=True)
    resumed.resume(checkpoint)
    assert resumed.iteration == 2 and resumed.position == 4
    resumed.train()
    expected = [(r.total, r.losses, r.lr) for r in whole.history[2:]]
    assert [(r.total, r.losses, r.lr) for r in resumed.history] == expected
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_clip_stays_frozen_and_in_eval_mode(tiny_config):
    trainer = build_trainer(tiny_config("solver.max_iter=2"), device=CPU)
    clip_before = {k: v.clone() for k, v in trainer.model.backbone.clip.state_dict().items()}
    head_before = trainer.model.transformer_decoder.query_feat.weight.detach().clone()
    trainer.train()
    assert not trainer.model.backbone.clip.training and trainer.model.transformer_decoder.training
    assert all(torch.equal(v, clip_before[k]) for k, v in trainer.model.backbone.clip.state_dict().items())
    assert not torch.equal(trainer.model.transformer_decoder.query_feat.weight, head_before)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in trainer.model.backbone.clip.parameters())


def test_training_checkpoint_is_a_vocabseg_checkpoint_without_clip(tiny_config, tmp_path):
    run_training(tiny_config("solver.max_iter=1"))
    data = read_checkpoint(tmp_path / "run" / "last.pth")
    loaded = parse_checkpoint(data, source="last.pth", variant=None)
    assert not loaded.has_frozen_parts and loaded.config.num_queries == 10
    assert loaded.train_vocabulary == "red square; green disc; grey floor [stuff]"
    trainer_state = data["trainer"]
    assert trainer_state["iteration"] == 1 and trainer_state["position"] == 2 and len(trainer_state["rng"]) == 1


def test_non_finite_gradients_skip_the_step(tiny_config):
    trainer = build_trainer(tiny_config("solver.max_iter=1"), device=CPU)
    before = [p.detach().clone() for p in trainer.trainable]
    for p in trainer.trainable:
        p.grad = torch.full_like(p, math.inf)
    grad_norm, skipped = trainer._optimizer_step()
    assert skipped and not math.isfinite(grad_norm)
    assert all(torch.equal(p, b) for p, b in zip(trainer.trainable, before))


def test_checkpoint_of_another_architecture_is_refused(tiny_config, tmp_path):
    run_training(tiny_config("solver.max_iter=1"))
    checkpoint = tmp_path / "run" / "last.pth"
    other = tiny_config("model.arch.num_queries=12", f"output={tmp_path / 'other'}")
    trainer = build_trainer(other, device=CPU)
    with pytest.raises(CheckpointError, match=r"another architecture \(num_queries: 10 -> 12\)") as error:
        trainer.resume(checkpoint)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="does not fit this architecture: .*wrong shape"):
        build_trainer(other, device=CPU, init=str(checkpoint))
    with pytest.raises(CheckpointError, match="not a vocabseg training checkpoint"):
        torch.save({"model": {}}, tmp_path / "plain.pth")
        trainer.resume(tmp_path / "plain.pth")


def test_evaluation_hook_keeps_the_best_checkpoint(tiny_config, tmp_path):
    scores = iter([1.0, 3.0, 2.0])
    calls = []

    def evaluate(model, iteration):
        calls.append((iteration, model.training))
        return {"panoptic/PQ": next(scores)}

    trainer = run_training(tiny_config("solver.max_iter=3", "solver.eval_period=1"), eval_fn=evaluate)
    assert calls == [(1, False), (2, False), (3, False)]  # evaluated in eval mode, then back to training
    assert trainer.model.training and trainer.best == {"metric": "panoptic/PQ", "value": 3.0, "iteration": 2}
    best = read_checkpoint(tmp_path / "run" / "best.pth")
    assert best["trainer"]["iteration"] == 2 and best["trainer"]["best"]["value"] == 3.0


def test_resume_flag_continues_the_run_in_the_output_folder(tiny_overrides, tmp_path):
    argv = ["--preset", "fcclip_tiny_cpu", *tiny_overrides, "solver.checkpoint_period=2"]
    first = run_training([*argv, "solver.max_iter=2"])
    assert first.iteration == 2
    second = run_training([*argv, "solver.max_iter=3", "--resume"])
    assert second.iteration == 3 and second.position == 6
    with pytest.raises(CheckpointError, match="--resume-from .*missing.pth: no such file"):
        run_training([*argv, "--resume-from", str(tmp_path / "missing.pth")])


def test_progress_notes_go_to_the_vocabseg_logger(tiny_config, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="vocabseg"):
        run_training(tiny_config("solver.max_iter=1", "solver.log_period=1"))
    notes = [r.getMessage() for r in caplog.records if r.name == "vocabseg.train.loop"]
    assert len(notes) == 1 and notes[0].startswith("iter 1/1  loss ")
    assert capsys.readouterr().out == ""  # stdout is left to a command's results
