"""Predictor behaviour on a tiny random model: order of operations, batching, input forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vocabseg.errors import ConfigError, ImageError, VocabularyError
from vocabseg.models import get_family
from vocabseg.postprocess import instance_inference, panoptic_inference, semantic_inference
from vocabseg.predictor import Predictor
from vocabseg.preprocess import crop_and_resize
from vocabseg.testing import synthetic_photo, tiny_config, tiny_model
from vocabseg.text import TextEmbeddingCache


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, one_thread):
    config = tiny_config()
    settings = get_family("fcclip").default_settings(config).override({"min_size": 64, "max_size": 128})
    predictor = Predictor(tiny_model(seed=0), config, settings, family="fcclip",
                          text_cache=TextEmbeddingCache(tmp_path_factory.mktemp("text")))
    predictor.set_vocabulary("cat; dog; road [stuff]; sky [stuff]", progress=False)
    return predictor


def test_semantic_alone_scores_padded_masks_then_resizes(predictor):
    raw = predictor.run([synthetic_photo(50, 90)])[0]
    scores = semantic_inference(raw.mask_cls, raw.padded_mask_logits())
    expected = crop_and_resize(scores, raw.input_size, raw.output_size).argmax(0)
    alone = predictor.postprocess(raw, ("semantic",)).semantic
    assert np.array_equal(alone, expected.numpy())
    with_panoptic = predictor.postprocess(raw, ("semantic", "panoptic")).semantic
    assert np.array_equal(with_panoptic, semantic_inference(raw.mask_cls, raw.mask_logits).argmax(0).numpy())


@pytest.mark.parametrize("tasks, fast, shared", [
    (("semantic", "panoptic"), False, True), (("panoptic", "instance"), False, False),
    (("semantic", "panoptic"), True, False), (("instance",), False, False), (("semantic", "instance"), False, True)])
def test_masks_resized_once_for_several_tasks_give_the_same_results(predictor, monkeypatch, tasks, fast, shared):
    from vocabseg import predictor as module

    raw = predictor.run([synthetic_photo(50, 90, seed=3)])[0]
    masks = module._shared_masks(raw, tasks, fast)
    assert isinstance(masks, torch.Tensor) == shared  # only when exact semantic resizes every query anyway
    if shared:
        assert torch.equal(masks, raw.mask_logits)  # the same bits as resizing query by query
    once = predictor.postprocess(raw, ("semantic", "panoptic", "instance"))
    monkeypatch.setattr(module, "TILE_ELEMENTS", 1)  # too big to share: every task resizes on its own
    apart = predictor.postprocess(raw, ("semantic", "panoptic", "instance"))
    assert np.array_equal(once.semantic, apart.semantic) and np.array_equal(once.panoptic, apart.panoptic)
    assert np.array_equal(once.instance_masks, apart.instance_masks)


def test_a_batch_gives_each_image_its_own_result(predictor):
    images = [synthetic_photo(60, 80, seed=1), synthetic_photo(50, 90, seed=2)]
    batched = predictor.predict(images, task="all", batch_size=2)
    for image, result in zip(images, batched):
        single = predictor.predict(image, task="all")
        assert result.semantic.shape == image.shape[:2]
        # Batching pads to the largest image; the padded area reaches the pixel decoder,
        # so outputs agree closely but not bit for bit (as in the reference).
        assert (result.semantic == single.semantic).mean() > 0.9


def test_pil_and_path_inputs_agree_including_exif_rotation(predictor, tmp_path):
    image = Image.fromarray(synthetic_photo(40, 70))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    from_path = predictor.predict(str(path), task="semantic")
    with Image.open(path) as pil:
        from_pil = predictor.predict(pil, task="semantic")
    assert from_path.semantic.shape == (70, 40)
    assert np.array_equal(from_path.semantic, from_pil.semantic)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from vocabseg.images import load_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb = load_image(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert np.array_equal(rgb[..., 0], (ramp >> 8).astype(np.uint8))


def test_raw_output_carries_both_fcclip_heads(predictor):
    raw = predictor.run([synthetic_photo(50, 90)])[0]
    queries, classes = 10, len(predictor.vocabulary)
    assert raw.mask_cls.shape == (queries, classes + 1)
    assert raw.input_size == (64, 115) and raw.output_size == (50, 90)
    assert raw.pred_masks.shape == (queries, 64 // raw.mask_stride, 128 // raw.mask_stride)  # padded to 32
    assert raw.details["in_vocab_logits"].shape == raw.details["out_vocab_logits"].shape == raw.mask_cls.shape
    assert raw.mask_logits.shape == (queries, 50, 90)


def test_describe_names_family_architecture_and_settings(predictor):
    described = predictor.describe()
    assert described["family"] == "fcclip" and described["train_vocabulary"] == "coco_panoptic"
    assert described["config"] == tiny_config().to_dict()
    assert described["settings"]["inference"]["min_size"] == 64
    assert described["settings"]["family"] == {"ensemble_alpha": 0.4, "ensemble_beta": 0.8,
                                               "ensemble_on_valid_mask": False}
    assert predictor.inference is predictor.settings.inference
    assert [c for c in predictor.classifier.class_names] == ["cat", "dog", "road", "sky"]
    assert predictor.classifier.seen.tolist() == [True, True, True, True]  # all four are COCO panoptic classes


def test_fast_mode_describes_the_arithmetic_this_device_chose(monkeypatch):
    """A run folder's identity (predictor.describe) must tell int8 or bf16 fast outputs from float32 ones."""
    config = tiny_config()
    predictor = Predictor(tiny_model(seed=0), config, get_family("fcclip").default_settings(config))
    assert "recipe" not in predictor.describe()  # exact mode: the same on every device
    predictor.with_settings({"precision": "fast"})
    recipe = predictor.recipe
    assert predictor.describe()["recipe"] == {"bf16": recipe.bf16, "int8": recipe.int8}
    monkeypatch.setattr("vocabseg.precision.int8_available", lambda device: (not recipe.int8, "flipped"))
    assert predictor.describe()["recipe"]["int8"] is (not recipe.int8)  # other hardware, another identity


def test_with_settings_changes_generic_and_family_settings(tmp_path):
    config = tiny_config()
    predictor = Predictor(tiny_model(seed=0), config, get_family("fcclip").default_settings(config))
    assert predictor.with_settings({"min_size": 96, "ensemble_beta": 0.5}) is predictor
    assert predictor.inference.min_size == 96 and predictor.settings.family.ensemble_beta == 0.5
    with pytest.raises(ConfigError, match="unknown inference setting"):
        predictor.with_settings({"beta": 0.5})


def test_unknown_task_and_missing_vocabulary_are_one_line_errors(predictor, tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'depth'; choose panoptic, semantic, instance or all"):
        predictor.predict(synthetic_photo(40, 40), task="depth")
    config = tiny_config()
    fresh = Predictor(tiny_model(seed=0), config, get_family("fcclip").default_settings(config),
                      text_cache=TextEmbeddingCache(tmp_path))
    with pytest.raises(VocabularyError, match="set_vocabulary"):
        fresh.run([synthetic_photo(40, 40)])
    with pytest.raises(VocabularyError, match="no classes found"):
        fresh.set_vocabulary(" ; ")


# ---- bounded-memory post-processing: equal to merging the full-size [Q, H, W] logits ----------------


def _full_size_reference(predictor, raw, tasks):
    """The straightforward computation on ``raw.mask_logits`` (all queries at the image size)."""
    vocab, inference = predictor.vocabulary, predictor.inference
    pan = panoptic_inference(raw.mask_cls, raw.mask_logits, vocab.thing_mask,
                             object_mask_threshold=inference.object_mask_threshold,
                             overlap_threshold=inference.overlap_threshold)
    inst = instance_inference(raw.mask_cls, raw.mask_logits, vocab.thing_mask, top_k=inference.instances_per_image)
    if raw.semantic_scores is not None:
        scores = crop_and_resize(raw.semantic_scores, raw.input_size, raw.output_size)
        best, labels = scores.max(0)
        semantic = torch.where(best > 0, labels, torch.full_like(labels, -1))
    elif tasks == ("semantic",):
        scores = semantic_inference(raw.mask_cls, raw.padded_mask_logits(), class_probs=raw.class_probs)
        semantic = crop_and_resize(scores, raw.input_size, raw.output_size).argmax(0)
    else:
        semantic = semantic_inference(raw.mask_cls, raw.mask_logits, class_probs=raw.class_probs).argmax(0)
    return semantic, pan, inst


def _assert_postprocess_matches_full_size(predictor, image):
    raw = predictor.run([image])[0]
    every = (("semantic",), ("panoptic",), ("instance",), predictor.family.tasks)
    preds = [predictor.postprocess(raw, tasks) for tasks in every]
    assert "mask_logits" not in raw.__dict__  # the full-size cached property was never built
    for tasks, pred in zip(every, preds):
        semantic, pan, inst = _full_size_reference(predictor, raw, tasks)
        if "semantic" in tasks:
            assert np.array_equal(pred.semantic, semantic.numpy())
        if "panoptic" in tasks:
            assert np.array_equal(pred.panoptic, pan.segment_map.numpy())
            assert [(s.id, s.category, s.score) for s in pred.segments] == [
                (s.id, s.category, s.score) for s in pan.segments]
        if "instance" in tasks:
            assert np.array_equal(pred.instance_masks, inst.masks.numpy())
            assert np.array_equal(pred.instance_classes, inst.classes.numpy())
            np.testing.assert_allclose(pred.instance_scores, inst.scores.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("size", [(50, 90), (97, 61), (33, 130)])
def test_postprocess_matches_the_full_size_computation(predictor, size):
    _assert_postprocess_matches_full_size(predictor, synthetic_photo(*size, seed=size[0]))


@pytest.fixture(scope="module")
def ovseg_predictor(tmp_path_factory, one_thread):
    config = tiny_config(family="ovseg")
    settings = get_family("ovseg").default_settings(config).override({"min_size": 64, "max_size": 128})
    predictor = Predictor(tiny_model(seed=0, family="ovseg"), config, settings, family="ovseg",
                          text_cache=TextEmbeddingCache(tmp_path_factory.mktemp("text")))
    predictor.set_vocabulary("cat; dog; road [stuff]; sky [stuff]", progress=False)
    return predictor


@pytest.mark.parametrize("demo_mode", [False, True])  # class_probs / dense semantic_scores
def test_ovseg_postprocess_matches_the_full_size_computation(ovseg_predictor, demo_mode):
    ovseg_predictor.with_settings({"demo_mode": demo_mode})
    raw = ovseg_predictor.run([synthetic_photo(45, 77, seed=3)])[0]
    assert (raw.semantic_scores is not None) == demo_mode and raw.class_probs is not None
    _assert_postprocess_matches_full_size(ovseg_predictor, synthetic_photo(45, 77, seed=3))


def test_images_over_max_pixels_are_refused_with_the_fix(predictor):
    predictor.with_settings({"max_pixels": 50 * 90 - 1})
    try:
        with pytest.raises(ImageError, match=r"over the .* limit: resize it, or raise the limit with --set max_pixels"):
            predictor.run([synthetic_photo(50, 90)])
        predictor.with_settings({"max_pixels": 0})  # 0: no limit
        assert predictor.run([synthetic_photo(50, 90)])[0].output_size == (50, 90)
    finally:
        predictor.with_settings({"max_pixels": 100_000_000})


@pytest.mark.parametrize("size, output", [((200, 267), (900, 1200)), ((37, 50), (123, 77)), ((64, 48), (60, 40)),
                                          ((50, 60), (500, 40)), ((31, 45), (31, 45))])
def test_top_rows_of_the_resized_masks_are_the_same_bits(size, output):
    from vocabseg.predictor import RawOutput

    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, size[0] // 4 + 1, size[1] // 4 + 1, generator=g) * 5  # padding cropped below
    raw = RawOutput(torch.zeros(3, 2), pred, 4, size, output)
    full = raw.query_mask_logits().make(torch.arange(3)).clone()
    assert torch.equal(full, raw.mask_logits)
    masks = raw.query_mask_logits()
    for stop in sorted({1, 2, 7, output[0] // 3, output[0] // 2 + 1, output[0] - 1, output[0]}):
        top = masks.make_top(torch.arange(3), stop)
        assert torch.equal(top[:, :stop], full[:, :stop]), stop
        assert torch.equal(masks.rows(stop // 2, stop), full[:, stop // 2:stop])
