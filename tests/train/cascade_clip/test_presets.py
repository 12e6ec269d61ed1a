"""The six official Cascade-CLIP recipes as presets: splits, schedules, starting points."""
from __future__ import annotations

import pytest

from vocabseg.data.registry import DATASETS
from vocabseg.text import get_vocabulary
from vocabseg.text.zero_shot import UNSEEN_CLASSES
from vocabseg.train.build import resolve_architecture
from vocabseg.train.config import load_config

# preset key: (vocabulary, inductive iterations, transductive iterations, transductive batch)
OFFICIAL = {"voc": ("cascade_voc_20", 20000, 10000, 32), "context": ("cascade_context_59", 40000, 20000, 16),
            "coco": ("cascade_coco_stuff_171", 80000, 40000, 16)}


@pytest.mark.parametrize("key", list(OFFICIAL))
def test_presets_hold_the_official_split_schedule_and_starting_point(key):
    vocabulary, inductive_iters, transductive_iters, transductive_batch = OFFICIAL[key]
    inductive = load_config(f"cascade_clip_{key}_inductive")
    transductive = load_config(f"cascade_clip_{key}_transductive")
    unseen = set(UNSEEN_CLASSES[vocabulary])
    for config in (inductive, transductive):
        arch = resolve_architecture(config)
        assert arch.family.name == "cascade_clip" and arch.variant is not None
        seen = config.zero_shot.seen_classes
        assert seen is not None and set(seen) == set(range(len(get_vocabulary(vocabulary)))) - unseen
        s = config.solver
        assert (s.lr, s.weight_decay, s.weight_decay_norm, s.weight_decay_embed) == (2e-4, 0.01, 0.01, 0.01)
        assert (s.schedule, s.poly_power, s.min_lr, s.warmup_iters, s.warmup_factor) == ("poly", 0.9, 1e-6, 1500, 1e-6)
        assert (s.amp, s.clip_grad) == ("off", 0.0)
        assert (config.loss.mask_weight, config.loss.dice_weight) == (100.0, 1.0)
        inp = config.input
        assert (inp.augment, inp.image_size, inp.resize_scale, inp.min_scale, inp.max_scale) == \
            ("mmseg", 512, [2048, 512], 0.5, 2.0)
        assert (inp.cat_max_ratio, inp.flip, inp.photometric) == (0.75, True, True)
    assert not inductive.zero_shot.transductive and transductive.zero_shot.transductive
    assert resolve_architecture(inductive).settings.family.seen_offset == 0.1  # inductive inference offset
    assert resolve_architecture(transductive).settings.family.seen_offset == 0.0
    assert (inductive.solver.max_iter, inductive.solver.batch_size) == (inductive_iters, 16)
    assert (transductive.solver.max_iter, transductive.solver.batch_size) == (transductive_iters, transductive_batch)
    # The transductive run starts from the inductive run's checkpoint at half its schedule, which it writes.
    half = inductive_iters // 2
    assert transductive.model.init == f"{inductive.output}/model_{half:07d}.pth"
    assert half % inductive.solver.checkpoint_period == 0 and inductive.model.init is None


@pytest.mark.parametrize("key", list(OFFICIAL))
def test_preset_datasets_are_registered(key):
    for mode in ("inductive", "transductive"):
        config = load_config(f"cascade_clip_{key}_{mode}")
        assert config.eval.dataset in DATASETS
        assert config.data.name in DATASETS
