"""Official schedule values and weight-decay groups."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vocabseg.errors import ConfigError
from vocabseg.models.fcclip.build import build_fcclip
from vocabseg.train.build import resolve_architecture
from vocabseg.train.optim import NORM_TYPES, build_optimizer, build_scheduler, lr_factor, param_groups, scale_schedule

OFFICIAL = dict(steps=(327778, 355092), gamma=0.1, warmup_iters=10, warmup_factor=1.0)


def test_official_schedule_decays_at_the_steps():
    assert lr_factor(0, **OFFICIAL) == 1.0  # warmup factor 1.0: no ramp
    assert lr_factor(327777, **OFFICIAL) == 1.0
    assert lr_factor(327778, **OFFICIAL) == pytest.approx(0.1)
    assert lr_factor(355091, **OFFICIAL) == pytest.approx(0.1)
    assert lr_factor(355092, **OFFICIAL) == pytest.approx(0.01)
    assert lr_factor(368749, **OFFICIAL) == pytest.approx(0.01)


def test_linear_warmup():
    kw = dict(steps=(100,), gamma=0.1, warmup_iters=10, warmup_factor=0.001)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(5, **kw) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(9, **kw) == pytest.approx(0.001 * 0.1 + 0.9)
    assert lr_factor(10, **kw) == 1.0


def test_scheduler_sets_the_factor_of_each_iteration():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    kw = dict(steps=(4, 6), gamma=0.1, warmup_iters=2, warmup_factor=0.5)
    scheduler = build_scheduler(optimizer, **kw)
    for iteration in range(8):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * lr_factor(iteration, **kw))
        optimizer.step()
        scheduler.step()


def test_scale_schedule_keeps_the_shape():
    assert scale_schedule(368750, (327778, 355092), 0.01) == (3688, (3278, 3551))
    assert scale_schedule(100, (80,), 1.0) == (100, (80,))
    with pytest.raises(ConfigError, match="solver.schedule_scale must be positive, got 0"):
        scale_schedule(100, (80,), 0)


def test_param_groups_follow_the_official_weight_decay_rules(tiny_config):
    model = build_fcclip(resolve_architecture(tiny_config()).config)
    groups = {g["name"]: g
              for g in param_groups(model, weight_decay=0.05, weight_decay_norm=0.0, weight_decay_embed=0.0)}
    assert {n: g["weight_decay"] for n, g in groups.items()} == {"decay": 0.05, "norm": 0.0, "embedding": 0.0}
    grouped = {id(p): name for name, g in groups.items() for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(trainable) == sum(len(g["params"]) for g in groups.values())  # each param exactly once
    assert not any(id(p) in grouped for p in model.backbone.clip.parameters())  # frozen CLIP excluded
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(module, NORM_TYPES):
                expected = "norm"
            elif isinstance(module, nn.Embedding):
                expected = "embedding"
            else:
                expected = "decay"
            assert grouped[id(p)] == expected
    assert grouped[id(model.void_embedding.weight)] == "embedding"
    assert grouped[id(model.transformer_decoder.query_feat.weight)] == "embedding"
    assert grouped[id(model.transformer_decoder.decoder_norm.weight)] == "norm"
    assert any(p.ndim == 1 for p in groups["decay"]["params"])  # biases of linear layers keep the decay (official)


def test_optimizer_is_adamw_over_trainable_parameters_only(tiny_config):
    model = build_fcclip(resolve_architecture(tiny_config()).config)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(p.requires_grad for g in optimizer.param_groups for p in g["params"])
    assert all(g["lr"] == 1e-4 and g["betas"] == (0.9, 0.999) for g in optimizer.param_groups)


def test_backbone_multiplier_and_no_decay_names_as_detectron2_ovseg():
    from vocabseg.testing import tiny_model

    model = tiny_model("swin", family="ovseg")
    for param in model.parameters():
        param.requires_grad_(True)
    made = param_groups(model, weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_embed=0.0, lr=2e-4,
                        backbone_multiplier=0.1, no_decay_names=("relative_position_bias_table",))
    groups = {g["name"]: g for g in made}
    names = {id(p): n for n, p in model.named_parameters()}
    backbone = [names[id(p)] for g in groups.values() if g["name"].startswith("backbone_") for p in g["params"]]
    assert backbone and all(n.startswith("backbone.") for n in backbone)
    assert all(g["lr"] == pytest.approx(2e-5 if g["name"].startswith("backbone_") else 2e-4) for g in groups.values())
    tables = groups["backbone_no_decay"]["params"]
    assert tables and all("relative_position_bias_table" in names[id(p)] for p in tables)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 1e-4
