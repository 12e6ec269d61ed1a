"""Stages (c) and (d): CLIP adaptation and mask prompt tuning on synthetic pairs."""
from __future__ import annotations

import pytest
import torch

from vocabseg.cli.train import run_training
from vocabseg.errors import CheckpointError, ConfigError, DatasetError
from vocabseg.fileio import read_checkpoint, save_torch
from vocabseg.train.config import list_presets, read_preset
from vocabseg.train.ovseg.clip_model import build_stage_clip
from vocabseg.train.ovseg.config import load_stage_config
from vocabseg.train.ovseg.run import run_stage


def test_adaptation_lowers_the_contrastive_loss(stage_config):
    trainer = run_stage(stage_config("adapt"), keep_history=True)
    losses = trainer.history
    assert losses[-1] < losses[0] / 4, losses  # measured: 2.36 -> 0.41


def test_prompt_tuning_trains_only_the_mask_embedding(stage_config):
    config = stage_config("prompt", lr=0.05)
    torch.manual_seed(config.solver.seed)
    before = build_stage_clip(config.clip, stage="prompt").state_dict()
    trainer = run_stage(config, keep_history=True)
    after = trainer.clip.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed == ["visual.mask_embedding"]
    losses = trainer.history
    assert losses[-1] < losses[0] / 1.5, losses


def test_vocabseg_train_runs_a_stage_preset(pair_root, tmp_path, one_thread):
    trainer = run_training(["--preset", "ovseg_adapt_coco_vitl", "--output", str(tmp_path / "cli"), "device=cpu",
                            "clip.tiny=true", f"data.root={pair_root}", "data.num_workers=0", "solver.max_iter=1",
                            "solver.batch_size=8", "solver.batch_per_gpu=8", "solver.amp=off"])
    assert trainer.iteration == 1 and (tmp_path / "cli" / "clip_final.pth").is_file()
    assert (tmp_path / "cli" / "config.yaml").is_file()


@pytest.mark.parametrize(("overrides", "error", "message"), [
    (["solver.batch_size=6"], ConfigError, "solver.batch_size=6 is not solver.batch_per_gpu"),
    (["solver.lrr=1"], ConfigError, "unknown key 'solver.lrr' \\(did you mean 'solver.lr'\\?\\)"),
    (["data.root=/nonexistent"], DatasetError, "/nonexistent holds no pairs.jsonl"),
    (["stage=finetune"], ConfigError, "stage='finetune'; use one of mine, adapt, prompt, assemble"),
])
def test_bad_stage_recipes_are_one_line_errors(pair_root, tmp_path, overrides, error, message):
    argv = ["--preset", "ovseg_adapt_coco_vitl", "--output", str(tmp_path / "bad"), "device=cpu", "clip.tiny=true",
            f"data.root={pair_root}", "solver.batch_per_gpu=4", *overrides]
    with pytest.raises(error, match=message):
        run_training(argv)


def test_stage_presets_are_valid_and_official():
    stages = {name: read_preset(name)["stage"] for name in list_presets() if "stage" in read_preset(name)}
    assert {"adapt", "prompt"} <= set(stages.values())
    for name in stages:
        load_stage_config(name)
    adapt = load_stage_config("ovseg_adapt_coco_vitl").solver
    prompt = load_stage_config("ovseg_prompt_coco_vitl").solver
    assert (adapt.lr, adapt.weight_decay, adapt.warmup_iters, adapt.epochs) == (5e-6, 0.2, 100, 5)
    assert (adapt.batch_size, adapt.beta2, adapt.eps) == (128, 0.98, 1e-6)
    assert (prompt.lr, prompt.mask_weight_decay, prompt.epochs, prompt.batch_size) == (0.05, 0.0, 5, 128)


def test_official_parameter_groups_and_schedule():
    from vocabseg.train.ovseg.adapt import cosine_factor
    from vocabseg.train.ovseg.clip_model import param_groups
    from vocabseg.train.ovseg.config import ClipSection, ClipSolver

    clip = build_stage_clip(ClipSection(tiny=True), stage="adapt")
    groups = {g["name"]: g for g in param_groups(clip, ClipSolver(weight_decay=0.2))}
    names = {id(p): n for n, p in clip.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert {"logit_scale", "visual.ln_pre.weight", "visual.class_embedding"} <= no_decay
    assert "visual.conv1.weight" in {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 0.2 and groups["no_decay"]["weight_decay"] == 0.0
    assert not any(n.startswith("transformer.") for n in no_decay)  # the text tower is locked
    prompt = build_stage_clip(ClipSection(tiny=True, mask_prompt_depth=2), stage="prompt")
    (only,) = param_groups(prompt, ClipSolver(mask_weight_decay=0.0))
    assert only["name"] == "mask_embedding" and only["params"][0].std() > 0.01  # N(0, 0.02), not zeros
    assert [cosine_factor(t, warmup=2, total=6) for t in range(7)] == pytest.approx(
        [0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466, 0.0])


def test_resume_refuses_the_last_pth_of_another_clip(stage_config):
    run_stage(stage_config("prompt", output="depth2", max_iter=2, checkpoint_period=1), stop_at=1)
    config = stage_config("prompt", output="depth3", max_iter=2)
    config.clip.mask_prompt_depth = 3
    last = config.output.replace("depth3", "depth2") + "/last.pth"
    with pytest.raises(ConfigError, match="clip.mask_prompt_depth: 2 -> 3"):  # the settings it records
        run_stage(config, resume=last)
    state = read_checkpoint(last)
    del state["run_config"]  # a last.pth written before checkpoints recorded their settings
    save_torch(last, state)
    with pytest.raises(CheckpointError, match="do not fit this CLIP \\(e.g. visual.mask_embedding\\)"):
        run_stage(config, resume=last)
