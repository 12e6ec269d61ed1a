"""What the generic code relies on, checked for every registered model family.

A new family joins ``vocabseg.models.FAMILIES`` and gives a tiny config through its protocol's
``tiny_config()`` (a few-million-parameter model with random weights, built without
downloads); every test here then runs on it.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from vocabseg.checkpoints import load_model, load_weights, parse_checkpoint, save_checkpoint
from vocabseg.errors import ConfigError
from vocabseg.models import (
    FAMILIES,
    TASKS,
    InputBatch,
    ModelVariant,
    QueryOutput,
    ResizeAndPad,
    SegmentationModel,
    Settings,
)
from vocabseg.predictor import Predictor
from vocabseg.preprocess import normalize_and_pad
from vocabseg.testing import synthetic_photo
from vocabseg.text import TextClassifier, TextEmbeddingCache, build_text_classifier, get_vocabulary, parse_vocabulary
from vocabseg.train.config import LossSection

# family name -> () -> a tiny config of that family (every registered family needs one)
VOCAB = "cat; dog, puppy; road [stuff]"
TEST_SIZE = {"min_size": 64, "max_size": 96}  # the tiny models' test resize
BATCH = 2


def test_every_family_builds_its_tiny_config():
    for family in FAMILIES.values():
        config = family.tiny_config()
        assert family.config_from_dict(config.to_dict()) == config  # the config travels in checkpoints


@dataclasses.dataclass
class Tiny:
    """A family's tiny model, its config, settings and a classifier for VOCAB."""

    family: Any
    config: Any
    settings: Settings
    model: nn.Module
    classifier: TextClassifier

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.family.build(self.config)

    def batch(self, seed: int = 0) -> InputBatch:
        """BATCH random uint8 images through the family's input policy (the second one smaller)."""
        policy = self.model.input_policy(self.settings)
        div = policy.size_divisibility
        # without padding to a multiple (sliding windows), sizes above the test size: a window must fit
        unit = div if div > 1 else (policy.min_size + 8) // 2
        generator = torch.Generator().manual_seed(seed)
        sizes = [(2 * unit, 3 * unit), (2 * unit - 5, 3 * unit - 7)][:BATCH]
        resized = [torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8) for h, w in sizes]
        images, image_sizes = normalize_and_pad(resized, policy.pixel_mean, policy.pixel_std, div)
        return InputBatch(images, image_sizes, resized)

    def images(self, seed: int = 0) -> torch.Tensor:
        """[BATCH, 3, H, W] normalised, padded input (multiples of the family's padding)."""
        return self.batch(seed).images


def _classifier(model: nn.Module) -> TextClassifier:
    """VOCAB through the model's own text tower (one template: fast)."""
    vocab = parse_vocabulary(VOCAB)
    encoder = model.text_encoder()
    text = build_text_classifier(vocab, encoder.encode, ("a photo of a {}.",), progress=False)
    return TextClassifier.build(text, vocab, get_vocabulary("coco_panoptic"))


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request: pytest.FixtureRequest) -> Tiny:
    family = FAMILIES[request.param]
    config = family.tiny_config()
    torch.manual_seed(0)
    model = family.build(config).eval()
    settings = family.default_settings(config).override(TEST_SIZE)
    return Tiny(family, config, settings, model, _classifier(model))


@pytest.fixture(autouse=True)
def _no_grad_leaks():
    yield
    assert torch.is_grad_enabled()


def _infer(model: nn.Module, tiny: Tiny) -> QueryOutput:
    with torch.no_grad():
        return model.inference(tiny.batch(), tiny.classifier, tiny.settings)


def _assert_identical(a: QueryOutput, b: QueryOutput) -> None:
    assert (a.semantic_scores is None) == (b.semantic_scores is None)
    if a.semantic_scores is not None:
        torch.testing.assert_close(a.semantic_scores, b.semantic_scores, rtol=0, atol=0)
    torch.testing.assert_close(a.mask_cls, b.mask_cls, rtol=0, atol=0)
    torch.testing.assert_close(a.mask_logits, b.mask_logits, rtol=0, atol=0)
    assert a.mask_stride == b.mask_stride and a.details.keys() == b.details.keys()
    for name in a.details:
        torch.testing.assert_close(a.details[name], b.details[name], rtol=0, atol=0)


def test_family_describes_itself(tiny):
    family = tiny.family
    assert FAMILIES[family.name] is family
    assert isinstance(family.title, str) and family.title
    assert family.tasks and set(family.tasks) <= set(TASKS) and len(set(family.tasks)) == len(family.tasks)
    assert isinstance(family.optional_prefixes, tuple)
    assert all(isinstance(v, str) for v in family.describe(tiny.config).values())
    for name, factory in family.variants().items():
        variant = factory()
        assert isinstance(variant, ModelVariant) and variant.name == name and variant.family == family.name
        assert isinstance(variant.settings, Settings)


def test_config_and_settings_round_trip_through_dicts(tiny):
    family = tiny.family
    assert family.config_from_dict(tiny.config.to_dict()) == tiny.config
    assert family.settings_from_dict(tiny.settings.to_dict()["family"]) == tiny.settings.family
    defaults = family.default_settings(tiny.config)
    assert isinstance(defaults, Settings) and defaults.override(TEST_SIZE) == tiny.settings


def test_build_gives_a_segmentation_model(tiny):
    assert isinstance(tiny.model, nn.Module) and isinstance(tiny.model, SegmentationModel)
    policy = tiny.model.input_policy(tiny.settings)
    assert isinstance(policy, ResizeAndPad)
    assert (policy.min_size, policy.max_size) == (TEST_SIZE["min_size"], TEST_SIZE["max_size"])
    assert len(policy.pixel_mean) == len(policy.pixel_std) == 3 and policy.size_divisibility >= 1


def test_inference_gives_query_outputs_at_the_mask_stride(tiny):
    images = tiny.images()
    out = _infer(tiny.model, tiny)
    assert isinstance(out, QueryOutput)
    height, width = images.shape[-2:]
    stride, classes = out.mask_stride, tiny.classifier.num_classes
    assert isinstance(stride, int) and height % stride == 0 and width % stride == 0
    batch, queries, columns = out.mask_cls.shape
    assert (batch, columns) == (BATCH, classes + 1)
    assert out.mask_logits.shape == (BATCH, queries, height // stride, width // stride)
    assert torch.isfinite(out.mask_cls).all() and torch.isfinite(out.mask_logits).all()
    # class log-probabilities, void last
    torch.testing.assert_close(out.mask_cls.exp().sum(-1), torch.ones(BATCH, queries), atol=1e-4, rtol=0)
    assert all(value.shape[0] == BATCH for value in out.details.values())
    if out.semantic_scores is not None:  # dense per-class scores at the padded input size
        assert out.semantic_scores.shape == (BATCH, classes, height, width)
        assert torch.isfinite(out.semantic_scores).all()


def test_checkpoint_round_trip_gives_identical_outputs(tiny, tmp_path):
    settings = tiny.settings.override({"overlap_threshold": 0.6})
    path = save_checkpoint(tmp_path / "tiny.pth", tiny.model, family=tiny.family, config=tiny.config,
                           settings=settings, train_vocabulary="ade20k_150")
    loaded = load_model(str(path))
    assert loaded.family is tiny.family and loaded.config == tiny.config
    assert loaded.settings == settings and loaded.train_vocabulary == "ade20k_150"
    _assert_identical(_infer(loaded.model.eval(), tiny), _infer(tiny.model, tiny))


def test_official_conversion_round_trip(tiny):
    convert = importlib.import_module(f"vocabseg.models.{tiny.family.name}.convert")
    export = getattr(convert, "vocabseg_to_official", None)
    if export is None:
        pytest.skip(f"{tiny.family.title} has no vocabseg_to_official in its convert module")
    state = tiny.model.state_dict()
    official = export(state)
    assert tiny.family.is_official(official) and not tiny.family.is_official(state)
    converted = tiny.family.convert_official(official, source="official.pth")
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)
    variant = ModelVariant(name="tiny", family=tiny.family.name, config=tiny.config, settings=tiny.settings,
                           weights=None)
    ckpt = parse_checkpoint({"model": official}, source="official.pth", variant=variant)
    assert ckpt.family is tiny.family and ckpt.settings == tiny.settings
    fresh = tiny.build(seed=1).eval()
    load_weights(fresh, ckpt)
    _assert_identical(_infer(fresh, tiny), _infer(tiny.model, tiny))


@pytest.fixture(scope="module")
def predictor(tiny, tmp_path_factory) -> Predictor:
    predictor = Predictor(tiny.model, tiny.config, tiny.settings, family=tiny.family,
                          text_cache=TextEmbeddingCache(tmp_path_factory.mktemp("text")))
    predictor.set_vocabulary(VOCAB, progress=False)
    return predictor


def test_predictor_gives_every_task_of_the_family_at_image_size(tiny, predictor):
    image = synthetic_photo(50, 90)
    result = predictor.predict(image, task="all")
    assert (result.height, result.width) == (50, 90) and result.class_names == ["cat", "dog", "road"]
    if "semantic" in tiny.family.tasks:
        assert result.semantic.shape == (50, 90) and result.semantic.max() < 3
    if "panoptic" in tiny.family.tasks:
        assert result.panoptic.shape == (50, 90)
        assert {s.id for s in result.segments} == set(np.unique(result.panoptic).tolist()) - {0}
    if "instance" in tiny.family.tasks:
        count = len(result.instance_scores)
        assert result.instance_masks.shape == (count, 50, 90) and result.instance_classes.shape == (count,)
        assert set(result.instance_classes.tolist()) <= {0, 1}  # things only
    for task, field in (("semantic", "semantic"), ("panoptic", "panoptic"), ("instance", "instance_masks")):
        if task not in tiny.family.tasks:
            assert getattr(result, field) is None


class _FewerTasks:
    """The family, claiming fewer tasks (a family that gives every task cannot refuse one otherwise)."""

    def __init__(self, family, tasks: tuple[str, ...]):
        self._family, self.tasks = family, tasks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._family, name)


def test_a_task_outside_the_family_is_a_config_error(tiny, predictor):
    family, unsupported = tiny.family, [t for t in TASKS if t not in tiny.family.tasks]
    if not unsupported:
        family, unsupported = _FewerTasks(family, family.tasks[:1]), list(family.tasks[1:])
    limited = Predictor(tiny.model, tiny.config, tiny.settings, family=family, text_cache=predictor.text_cache)
    limited.set_vocabulary(VOCAB, progress=False)
    for task in unsupported:
        with pytest.raises(ConfigError, match=f"{family.title} models give .*not {task}; choose another --task"):
            limited.predict(synthetic_photo(40, 40), task=task)
    result = limited.predict(synthetic_photo(40, 40), task="all")
    filled = {"semantic": result.semantic, "panoptic": result.panoptic, "instance": result.instance_masks}
    assert {t for t, value in filled.items() if value is not None} == set(family.tasks)
    with pytest.raises(ConfigError, match="unknown task 'depth'"):
        limited.predict(synthetic_photo(40, 40), task="depth")


def _targets(images: torch.Tensor, num_classes: int) -> list[dict[str, torch.Tensor]]:
    """Two rectangles per image at the padded input size, labels in [0, K)."""
    height, width = images.shape[-2:]
    targets = []
    for i in range(images.shape[0]):
        masks = torch.zeros(2, height, width, dtype=torch.bool)
        masks[0, : height // 2, : width // 2] = True
        masks[1, height // 3 :, width // 4 + i :] = True
        targets.append({"labels": torch.tensor([i % num_classes, (i + 1) % num_classes]), "masks": masks})
    return targets


def test_training_forward_and_criterion_give_finite_losses_and_trainable_gradients(tiny):
    model = tiny.build(seed=2).train()
    loss_section = LossSection(num_points=64)
    criterion = tiny.family.build_criterion(tiny.config, loss_section)
    images = tiny.images(seed=1)
    outputs = model(images, tiny.classifier)
    targets = _targets(images, tiny.classifier.num_classes)
    losses = criterion(outputs, targets, generator=torch.Generator().manual_seed(0))
    assert losses and all(torch.isfinite(value) and value.ndim == 0 for value in losses.values())
    total = criterion.weighted_total(losses)
    assert torch.isfinite(total) and total > 0
    total.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable
    without = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert without == []
    assert any(p.grad.abs().sum() > 0 for p in trainable.values())
    assert [n for n, p in frozen.items() if p.grad is not None] == []
