"""Presets hold the official recipe; overrides are checked against the schema; the CLI wiring works."""
from __future__ import annotations

import argparse

import pytest

from vocabseg.cli.train import add_train_parser, main_from_args
from vocabseg.text import get_vocabulary, parse_vocabulary, resolve_vocabulary
from vocabseg.train.build import resolve_accum_steps, resolve_architecture, vocabulary_spec
from vocabseg.train.config import ConfigError, SolverSection, list_presets, load_config, read_preset


def test_presets_are_listed_and_valid():
    assert {"fcclip_convnext_large_coco", "fcclip_rn50_coco", "fcclip_tiny_cpu"} <= set(list_presets())
    for name in list_presets():
        if "stage" not in read_preset(name):  # OVSeg's CLIP-stage recipes: tests/train/ovseg
            resolve_architecture(load_config(name))


def test_convnext_preset_is_the_official_recipe():
    config = load_config("fcclip_convnext_large_coco")
    s = config.solver
    assert (s.lr, s.weight_decay, s.weight_decay_norm, s.weight_decay_embed) == (1e-4, 0.05, 0.0, 0.0)
    assert (s.max_iter, s.steps, s.gamma, s.warmup_iters, s.warmup_factor) == (368750, [327778, 355092], 0.1, 10, 1.0)
    assert (s.batch_size, s.amp, s.clip_grad) == (16, "fp16", 0.01)
    inp = config.input
    assert (inp.image_size, inp.min_scale, inp.max_scale, inp.flip) == (1024, 0.1, 2.0, True)
    assert (config.data.format, config.data.name) == ("registered", "coco_panoptic_train")
    arch = resolve_architecture(config)
    assert arch.family.name == "fcclip" and arch.variant.name == "fcclip_convnext_large_coco"
    assert arch.config.num_queries == 250 and arch.settings == arch.variant.settings
    loss = config.loss
    assert (loss.class_weight, loss.mask_weight, loss.dice_weight, loss.no_object_weight, loss.num_points) == (
        2.0, 5.0, 5.0, 0.1, 12544)


def test_overrides_are_typed():
    config = load_config("fcclip_tiny_cpu", ["solver.lr=2e-4", "solver.steps=[10,20]", "solver.amp=off",
                                             "model.arch.num_queries=7", "model.clip_weights=null", "input.flip=false"])
    assert config.solver.lr == 2e-4 and config.solver.steps == [10, 20] and config.solver.amp == "off"
    assert config.model.arch == {"num_queries": 7} and config.model.tiny  # on top of the preset's tiny architecture
    assert config.input.flip is False


@pytest.mark.parametrize("override, message", [
    ("solver.lrr=1",
     r"unknown key 'solver.lrr' \(did you mean 'solver.lr'\?\); valid keys: output, device, .*solver.seed"),
    ("model.arch.depth=3",
     r"unknown key 'model.arch.depth'; model.arch takes FC-CLIP config fields: clip_model_name, "),
    ("solver.max_iter=many", r"solver.max_iter must be int, got 'many'"),
    ("solver", r"override 'solver' is not key=value"),
])
def test_bad_keys_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config("fcclip_tiny_cpu", [override])
    assert "\n" not in str(error.value)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown preset 'fcclip_huge'; use a YAML file or one of: .*fcclip_convnext"):
        load_config("fcclip_huge")


def test_accumulation_fills_the_effective_batch():
    solver = SolverSection(batch_size=16, batch_per_gpu=2)
    assert [resolve_accum_steps(solver, n) for n in (1, 2, 8)] == [8, 4, 1]
    with pytest.raises(ConfigError, match="solver.batch_size=16 is not solver.batch_per_gpu"):
        resolve_accum_steps(solver, 3)
    with pytest.raises(ConfigError):
        resolve_accum_steps(SolverSection(batch_size=16, batch_per_gpu=2, accum_steps=2), 1)


def test_vocabulary_spec_round_trips():
    custom = parse_vocabulary("cat, kitty; grass [stuff]")
    assert resolve_vocabulary(vocabulary_spec(custom)).classes == custom.classes
    assert vocabulary_spec(get_vocabulary("coco_panoptic")) == "coco_panoptic"


def test_cli_wiring_parses_and_rejects_bad_overrides_before_building(tmp_path):
    parser = argparse.ArgumentParser(prog="vocabseg")
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--preset", "fcclip_tiny_cpu", "--output", str(tmp_path), "--resume",
                              "solver.lr=1e-3", "solver.bogus=1"])
    assert args.func is main_from_args and args.resume and args.resume_from is None
    assert args.overrides == ["solver.lr=1e-3", "solver.bogus=1"]
    with pytest.raises(ConfigError, match="unknown key 'solver.bogus'"):
        args.func(args)
