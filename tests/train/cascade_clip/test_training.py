"""Cascade-CLIP's zero-shot recipes through the generic trainer, on the tiny model and synthetic shapes.

Synthetic classes: 0 red square, 1 green disc (unseen in the tiny preset), 2 grey floor.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vocabseg.checkpoints import read_checkpoint
from vocabseg.cli.train import run_training
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.train.build import build_trainer
from vocabseg.train.data import SampleKey

CPU = torch.device("cpu")
DISC_ID = 2  # segment id of the green disc in SyntheticShapes id maps (class 1 + 1)
NO_AUGMENT = ("input.min_scale=1.0", "input.max_scale=1.0", "input.resize_scale=[64,64]", "input.flip=false",
              "input.photometric=false", "input.cat_max_ratio=1.0")


class Recorder:
    """Wraps a criterion and keeps every (prediction channels, targets) the loss saw."""

    def __init__(self, criterion: Any):
        self.criterion, self.calls = criterion, []

    def __call__(self, outputs, targets, *, generator=None):
        losses = self.criterion(outputs, targets, generator=generator)
        self.calls.append((outputs.pred_masks.shape[1], self.criterion.last_targets))
        return losses

    def weighted_total(self, losses):
        return self.criterion.weighted_total(losses)


def test_inductive_loss_never_sees_an_unseen_label(cascade_config):
    trainer = build_trainer(cascade_config("solver.max_iter=3"), device=CPU)
    recorder = trainer.criterion = Recorder(trainer.criterion)
    trainer.train()
    assert trainer.text.class_names == ("red square", "grey floor")  # the head predicts the seen classes only
    assert len(recorder.calls) == 6  # 3 iterations x 2 accumulated images
    for channels, targets in recorder.calls:
        assert channels == 2
        for target in targets:
            assert set(target) == {"labels", "masks"} and set(target["labels"].tolist()) <= {0, 1}
    # The disc of image 0 is in no target mask (no augmentation: pixels stay in place).
    plain = build_trainer(cascade_config(*NO_AUGMENT), device=CPU)
    disc = torch.from_numpy(plain.dataset.source[0].ids == DISC_ID)
    target = plain.dataset[SampleKey(0, 0, 0)].target
    assert disc.any() and not (target["masks"] & disc).any()
    assert torch.equal(target["masks"].any(0), ~disc)  # everything else is labelled


def test_exactly_the_official_trainable_parameters_get_gradients(cascade_config):
    trainer = build_trainer(cascade_config("solver.max_iter=1", *NO_AUGMENT), device=CPU)
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {n for n, p in model.named_parameters() if n.startswith(("prompts.", "decoder."))}
    # Only the attention logits (q, k) of each decoder's last layer make its masks: that layer's
    # value path, output projection, norms and FFN never get a gradient in the official code
    # (trainable there, never changed by AdamW); the model freezes them.
    last = trainer.model_config.decoder_layers - 1
    dead = {n for n in expected if f".layers.{last}." in n and ".cross_attn.q." not in n and ".cross_attn.k." not in n}
    assert dead and trained == expected - dead
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trained
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for n, p in model.named_parameters() if n in trained}
    for group in trainer.optimizer.param_groups:  # the official groups: one lr, decay 0.01 on norms too
        assert group["weight_decay"] == 0.01 and group["initial_lr"] == 1e-3
    frozen = [n for n, _ in model.named_parameters() if n not in trained]
    assert any(n.startswith("clip.") for n in frozen) and any(n.startswith("levels.") for n in frozen)
    for name in frozen:
        assert torch.equal(model.state_dict()[name], before[name]), name


def test_tiny_model_loss_falls(cascade_config):
    trainer = run_training(cascade_config("solver.max_iter=20", "solver.warmup_iters=0", "solver.lr=1e-2",
                                          "data.num_images=1", "solver.batch_size=1", *NO_AUGMENT), keep_history=True)
    first, last = trainer.history[0].total, sum(r.total for r in trainer.history[-5:]) / 5
    assert last < first / 4, f"loss fell only from {first:.2f} to {last:.2f}"  # measured: 9.99 -> 1.75


def test_resumed_run_repeats_the_uninterrupted_losses(cascade_config, tmp_path):
    overrides = ("solver.max_iter=4", "solver.checkpoint_period=2", "data.num_images=3")
    whole = run_training(cascade_config(*overrides), keep_history=True)
    checkpoint = tmp_path / "run" / "model_0000002.pth"
    resumed = build_trainer(cascade_config(*overrides, f"output={tmp_path / 'resumed'}"), device=CPU,
                            keep_history=True)
    resumed.resume(checkpoint)
    assert resumed.iteration == 2 and resumed.position == 4
    resumed.train()
    expected = [(r.total, r.losses, r.lr) for r in whole.history[2:]]
    assert [(r.total, r.losses, r.lr) for r in resumed.history] == expected
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_transductive_run_starts_from_the_inductive_checkpoint_at_half_schedule(cascade_config, tmp_path):
    inductive = run_training(cascade_config("solver.max_iter=4", "solver.checkpoint_period=2"))
    half = tmp_path / "run" / "model_0000002.pth"
    saved = read_checkpoint(half)["model"]
    assert inductive.iteration == 4

    config = cascade_config("zero_shot.transductive=true", f"model.init={half}", "solver.max_iter=2",
                            f"output={tmp_path / 'transductive'}", *NO_AUGMENT)
    trainer = build_trainer(config, device=CPU)
    state = trainer.model.state_dict()
    for name, value in saved.items():  # weights only, as the official --load-from ...
        assert torch.equal(state[name], value), name
    assert trainer.iteration == 0 and not trainer.optimizer.state  # ... with a fresh optimizer and schedule
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3 * 1e-6  # warmup starts again
    assert trainer.text.class_names == ("red square", "green disc", "grey floor")  # all classes

    recorder = trainer.criterion = Recorder(trainer.criterion)
    trainer.train()
    disc = torch.from_numpy(trainer.dataset.source[0].ids == DISC_ID)
    assert len(recorder.calls) == 4 and all(channels == 3 for channels, _ in recorder.calls)
    with_disc = [t[0] for _, t in recorder.calls if 1 in t[0]["labels"].tolist()]
    assert len(with_disc) == 2  # image 0, once per iteration: its disc pixels pseudo-labelled (the only unseen class)
    for target in with_disc:
        assert torch.equal(target["masks"][target["labels"].tolist().index(1)], disc)
    with pytest.raises(CheckpointError, match="was trained with zero_shot .* with model.init"):
        trainer.resume(tmp_path / "run" / "last.pth")  # --resume of the inductive run: not a continuation


def test_official_embedding_file_gives_the_head_its_rows(cascade_config, tmp_path):
    rows = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1).half()  # one per synthetic class, tiny CLIP width
    path = tmp_path / "shapes.npy"
    np.save(path, rows.numpy())
    inductive = build_trainer(cascade_config(f"text_embeddings={path}"), device=CPU)
    assert torch.equal(inductive.text.embeddings, rows[[0, 2]].float())  # the seen classes' rows, as stored
    assert inductive.text.class_names == ("red square", "grey floor")
    transductive = build_trainer(cascade_config(f"text_embeddings={path}", "zero_shot.transductive=true"), device=CPU)
    assert torch.equal(transductive.text.embeddings, rows.float())


def test_trained_checkpoint_predicts_with_its_unseen_class_marked(cascade_config, tmp_path):
    from vocabseg.predictor import Predictor
    from vocabseg.text import TextEmbeddingCache

    trainer = run_training(cascade_config("solver.max_iter=1"))
    predictor = Predictor.from_pretrained(str(tmp_path / "run" / "model_final.pth"), device="cpu",
                                          text_cache=TextEmbeddingCache(tmp_path / "text_cache"))
    predictor.set_vocabulary("red square; green disc; grey floor [stuff]")
    assert predictor.classifier.seen.tolist() == [True, False, True]  # the disc was held out
    assert predictor.predict(trainer.dataset.source[0].image, "semantic").semantic.shape == (64, 64)


def test_custom_dataset_and_split_by_configuration(cascade_config, tmp_path):
    from PIL import Image

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(2):  # left half class 0 (cat), right half class 1 (dog), bottom rows class 2 (grass)
        label = np.zeros((48, 80), dtype=np.uint8)
        label[:, 40:] = 1
        label[40:] = 2
        Image.fromarray((label * 80).astype(np.uint8).repeat(3).reshape(48, 80, 3)).save(images / f"{i}.jpg")
        Image.fromarray(label).save(labels / f"{i}.png")
    config = cascade_config("data.format=semantic", f"data.images={images}", f"data.labels={labels}",
                            "data.vocabulary=cat; dog; grass [stuff]", "zero_shot.seen_classes=null",
                            "zero_shot.unseen_classes=[dog]", "solver.max_iter=1")
    trainer = build_trainer(config, device=CPU)
    recorder = trainer.criterion = Recorder(trainer.criterion)
    trainer.train()
    assert trainer.text.class_names == ("cat", "grass")
    assert all(set(t["labels"].tolist()) <= {0, 1} for _, targets in recorder.calls for t in targets)


@pytest.mark.parametrize(("override", "message"), [
    ("input.short_side_choices=[a]", r"input.short_side_choices=\['a'\] must be a list of positive integers"),
    ("input.resize_scale=[256, 0]", r"input.resize_scale=\[256, 0\] must be a list of positive integers"),
    ("input.resize_scale=[256]", r"input.resize_scale=\[256\] must be \[long, short\]"),
])
def test_bad_resize_settings_are_one_line_errors(cascade_config, override, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(cascade_config(override), device=CPU)
