"""The two OVSeg stage (a) presets hold the official configs' values (configs/ovseg_*_bs32_120k.yaml)."""
from __future__ import annotations

import pytest

from vocabseg.train.config import load_config


@pytest.mark.parametrize(("preset", "official"), [
    ("ovseg_swinb_vitl_coco_stuff", {"backbone": "swin_base", "lr": 6e-5, "weight_decay": 0.01, "multiplier": 1.0,
                                     "crop": 640, "short": [64 * x for x in range(5, 21)], "long": 2560}),
    ("ovseg_r101c_vitb_coco_stuff", {"backbone": "resnet101_deeplab", "lr": 2e-4, "weight_decay": 1e-4,
                                     "multiplier": 0.1, "crop": 512, "short": [800], "long": 1333}),
])
def test_proposal_presets_follow_the_official_configs(preset, official):
    config = load_config(preset)
    solver, inp = config.solver, config.input
    assert config.model.arch["backbone"] == official["backbone"] and config.model.backbone_init
    assert (solver.lr, solver.weight_decay, solver.backbone_multiplier) == (
        official["lr"], official["weight_decay"], official["multiplier"])
    assert (solver.max_iter, solver.batch_size, solver.clip_grad, solver.warmup_iters) == (120000, 32, 0.01, 1500)
    assert (solver.schedule, solver.poly_power, solver.warmup_factor) == ("poly", 0.9, 1e-6)
    assert (config.loss.class_weight, config.loss.mask_weight, config.loss.dice_weight) == (1.0, 20.0, 1.0)
    assert inp.image_size == official["crop"] and list(inp.short_side_choices) == official["short"]
    assert inp.resize_scale[0] == official["long"] and inp.photometric and inp.flip
    if official["backbone"] == "swin_base":  # Swin's relative position tables are not decayed
        assert "relative_position_bias_table" in solver.no_decay_names
