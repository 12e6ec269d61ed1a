"""OVSeg's model on tiny random-weight configs: ensemble math, region edge cases, one-class vocabularies."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vocabseg.models import get_family
from vocabseg.models.ovseg.config import OVSegSettings
from vocabseg.models.ovseg.model import _ensemble
from vocabseg.predictor import Predictor
from vocabseg.preprocess import crop_and_resize
from vocabseg.testing import synthetic_photo
from vocabseg.text import TextClassifier, TextEmbeddingCache, build_text_classifier, parse_vocabulary

FAMILY = get_family("ovseg")


@pytest.fixture(scope="module")
def tiny(one_thread):
    torch.manual_seed(0)
    return FAMILY.build(FAMILY.tiny_config("swin")).eval()


def _classifier(model, text: str = "cat; dog; sky") -> TextClassifier:
    vocab = parse_vocabulary(text)
    encoder = model.text_encoder()
    return TextClassifier.build(build_text_classifier(vocab, encoder.encode, ("a photo of a {}.",), progress=False),
                                vocab)


def test_ensemble_is_geometric_and_keeps_queries_without_a_region():
    proposal = torch.tensor([[0.6, 0.3], [0.2, 0.7]])
    clip = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    valid = torch.tensor([True, False])
    mixed = _ensemble(proposal, clip, valid, 0.4)
    torch.testing.assert_close(mixed[0], proposal[0] ** 0.6 * clip[0] ** 0.4)
    torch.testing.assert_close(mixed[1], proposal[1] ** 0.6)  # no region: the CLIP factor is 1


def test_weight_zero_is_clip_only_and_drops_queries_without_a_region():
    proposal, clip = torch.rand(3, 4), torch.rand(3, 4)
    mixed = _ensemble(proposal, clip, torch.tensor([True, False, True]), 0.0)
    assert torch.equal(mixed[0], clip[0]) and torch.equal(mixed[2], clip[2]) and not mixed[1].any()


def _masks_with_regions(num_queries: int, regions: dict[int, tuple[slice, slice]], size=(64, 64)) -> torch.Tensor:
    """[Q, H, W] mask logits: -20 everywhere, +20 inside the given query's box."""
    masks = torch.full((num_queries, *size), -20.0)
    for query, (rows, cols) in regions.items():
        masks[query, rows, cols] = 20.0
    return masks


@pytest.mark.parametrize("regions", [{}, {3: (slice(5, 9), slice(7, 8))}, {0: (slice(0, 64), slice(0, 64)),
                                                                             5: (slice(60, 64), slice(0, 2))}])
def test_zero_one_or_two_regions_are_classified(tiny, regions):
    """The official code crashes on exactly one region (and on none); ours classifies what there is."""
    classifier = _classifier(tiny)
    queries = tiny.config.num_queries
    proposal = torch.softmax(torch.randn(queries, 4), -1)
    image = torch.from_numpy(synthetic_photo(64, 64).transpose(2, 0, 1).copy())
    with torch.no_grad():
        probs, clip_logits, valid, sent = tiny._classify_image(proposal, _masks_with_regions(queries, regions),
                                                               image, (64, 64), classifier,
                                                               OVSegSettings(ensemble_weight=0.5))
    assert valid.nonzero().flatten().tolist() == sorted(regions) and torch.equal(sent, valid)  # exact: all sent
    assert torch.isfinite(probs).all() and probs.shape == (queries, 3)
    assert not clip_logits[~valid].any() and (clip_logits[valid] != 0).all()
    torch.testing.assert_close(probs[~valid], proposal[~valid, :-1] ** 0.5)


def test_a_region_alone_scores_as_inside_a_batch(tiny):
    """Region crops go through the CLIP in chunks: one region alone equals the same region among others."""
    classifier = _classifier(tiny)
    queries = tiny.config.num_queries
    regions = {1: (slice(2, 30), slice(4, 40)), 2: (slice(10, 64), slice(0, 20)), 6: (slice(40, 50), slice(40, 60))}
    image = torch.from_numpy(synthetic_photo(64, 64).transpose(2, 0, 1).copy())
    proposal = torch.softmax(torch.randn(queries, 4), -1)
    results = []
    for chunk in (1, 3):
        with torch.no_grad():
            _, logits, _, _ = tiny._classify_image(proposal, _masks_with_regions(queries, regions), image, (64, 64),
                                                   classifier, OVSegSettings(region_batch=chunk))
        results.append(logits)
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["semantic", "panoptic", "instance"])
def test_predictor_runs_every_task_with_a_one_class_vocabulary(tiny, tmp_path, task):
    settings = FAMILY.default_settings(tiny.config).override({"min_size": 64, "max_size": 96})
    predictor = Predictor(tiny, tiny.config, settings, family=FAMILY, text_cache=TextEmbeddingCache(tmp_path))
    predictor.set_vocabulary("traffic cone", progress=False)
    prediction = predictor.predict(synthetic_photo(50, 70), task=task)
    assert prediction.class_names == ["traffic cone"]
    if task == "semantic":
        assert prediction.semantic.shape == (50, 70) and np.all(prediction.semantic == 0)


def test_prompts_are_whole_class_strings(tiny, tmp_path):
    """OVSeg embeds "road, route" as one prompt (the official string), not one prompt per synonym."""
    settings = FAMILY.default_settings(tiny.config)
    predictor = Predictor(tiny, tiny.config, settings, family=FAMILY, text_cache=TextEmbeddingCache(tmp_path))
    predictor.set_vocabulary("road, route; sky", progress=False)
    assert predictor.classifier.embeddings.shape[0] == 2 and predictor.classifier.synonym_index.shape == (2, 1)


def test_demo_scores_pick_each_class_best_region_with_hard_masks():
    from vocabseg.models.ovseg.model import _demo_scores

    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # query 2 is best for no class
    valid = torch.tensor([True, True, True])
    masks = torch.full((3, 4, 4), -10.0)
    masks[0, :2, :2] = 10.0  # query 0 (best for class 0): top-left
    masks[1, 2:, 2:] = 10.0  # query 1 (best for class 1): bottom-right
    masks[2] = 10.0  # everywhere, but never picked
    scores = _demo_scores(probs, valid, masks, (4, 3), 0.35, skip_last=False)
    assert torch.equal(scores[:, 0, 0], probs[0]) and torch.equal(scores[:, 3, 2], probs[1])
    assert not scores[:, 0, 3].any()  # the padding column (width 3) scores nothing
    assert not scores[:, 1, 2].any()  # covered only by query 2, which no class picked
    only_first = _demo_scores(probs, valid, masks, (4, 4), 0.35, skip_last=True)  # class 1 plays "others"
    assert not only_first[:, 3, 3].any() and torch.equal(only_first[:, 0, 0], probs[0])


def test_demo_mode_with_one_class_marks_unclaimed_pixels(tiny, tmp_path):
    settings = FAMILY.default_settings(tiny.config).override(
        {"min_size": 64, "max_size": 96, "demo_mode": True, "ensemble_weight": 0.0, "mask_threshold": 0.35})
    predictor = Predictor(tiny, tiny.config, settings, family=FAMILY, text_cache=TextEmbeddingCache(tmp_path))
    predictor.set_vocabulary("traffic cone", progress=False)
    raw = predictor.run([synthetic_photo(50, 70)])[0]
    assert raw.semantic_scores is not None and raw.semantic_scores.shape[0] == 1  # "others" dropped again
    assert raw.class_probs is not None and raw.class_probs.shape[-1] == 1
    assert raw.details["proposal_logits"].shape[-1] == raw.details["clip_logits"].shape[-1] == 2  # class + void
    semantic = predictor.postprocess(raw, ("semantic",)).semantic
    assert set(np.unique(semantic)) <= {-1, 0}
    claimed = crop_and_resize(raw.semantic_scores, raw.input_size, raw.output_size)[0] > 0  # padding cropped
    assert np.array_equal(semantic == 0, claimed.numpy())


def test_fast_mode_sends_one_crop_per_duplicate_group_and_keeps_exact_untouched(tiny):
    from vocabseg.precision import choose_recipe, inference_precision

    classifier = _classifier(tiny)
    queries = tiny.config.num_queries
    regions = {1: (slice(2, 30), slice(4, 40)), 2: (slice(2, 30), slice(4, 40)), 6: (slice(40, 50), slice(40, 60))}
    image = torch.from_numpy(synthetic_photo(64, 64).transpose(2, 0, 1).copy())
    proposal = torch.softmax(torch.randn(queries, 4, generator=torch.Generator().manual_seed(0)), -1)
    masks = _masks_with_regions(queries, regions)
    settings = OVSegSettings(ensemble_weight=0.5)
    with torch.no_grad():
        exact = tiny._classify_image(proposal, masks, image, (64, 64), classifier, settings)
        with inference_precision(tiny, torch.device("cpu"), choose_recipe("fp32", torch.device("cpu"))):
            assert all(torch.equal(a, b) for a, b in zip(exact, tiny._classify_image(proposal, masks, image, (64, 64),
                                                                                     classifier, settings)))
        with inference_precision(tiny, torch.device("cpu"), choose_recipe("fast", torch.device("cpu"))):
            probs, clip_logits, valid, sent = tiny._classify_image(proposal, masks, image, (64, 64), classifier,
                                                                   settings)
    assert sent.sum() == 2 and sent[6] and sent[1] != sent[2]  # queries 1 and 2 share one crop
    assert torch.equal(clip_logits[1], clip_logits[2]) and torch.equal(valid, exact[2])
    kept = 1 if sent[1] else 2
    torch.testing.assert_close(clip_logits[kept], exact[1][kept], rtol=0.05, atol=0.05)  # bf16 where native


def test_fast_mode_batches_crops_across_images_with_the_same_numbers(tiny, monkeypatch):
    """Fast mode sends a batch's crops through the CLIP in full chunks: 8 crops of 3 images in 2 passes of 4,
    not 3 + 3 + 2, and every image gets the class scores it gets alone."""
    import vocabseg.models.ovseg.model as ovseg_model
    from vocabseg.precision import Recipe, inference_precision

    chunks: list[int] = []  # crops per CLIP forward pass
    encode = ovseg_model.encode_masked_regions

    def counted(visual, regions, region_masks, **kwargs):  # the real encoder, its calls counted
        chunks.append(len(regions))
        return encode(visual, regions, region_masks, **kwargs)

    monkeypatch.setattr(ovseg_model, "encode_masked_regions", counted)
    classifier, queries = _classifier(tiny), tiny.config.num_queries
    sizes = [(64, 64), (48, 64), (64, 40)]  # masks at the padded 64x64, images of different sizes
    boxes = [(slice(0, 20), slice(0, 30)), (slice(30, 45), slice(5, 25)), (slice(20, 40), slice(30, 38))]
    masks = [_masks_with_regions(queries, dict(zip(picked, boxes))) for picked in ([0, 3, 5], [1, 2, 7], [4, 6])]
    images = [torch.from_numpy(synthetic_photo(h, w, seed=i).transpose(2, 0, 1).copy())
              for i, (h, w) in enumerate(sizes)]
    generator = torch.Generator().manual_seed(0)
    proposals = [torch.softmax(torch.randn(queries, 4, generator=generator) - torch.tensor([0, 0, 0, 3.0]), -1)
                 for _ in sizes]
    settings = OVSegSettings(ensemble_weight=0.5, region_batch=4)
    with torch.no_grad():
        exact = [tiny._classify_image(p, m, image, size, classifier, settings)
                 for p, m, image, size in zip(proposals, masks, images, sizes)]
    chunks.clear()
    with torch.no_grad(), inference_precision(tiny, torch.device("cpu"), Recipe(True, False, False, "fast, fp32")):
        alone = [tiny._classify_image(p, m, image, size, classifier, settings)
                 for p, m, image, size in zip(proposals, masks, images, sizes)]
        assert chunks == [3, 3, 2]
        together = tiny._classify_images(proposals, masks, images, sizes, classifier, settings)
    assert chunks[3:] == [4, 4]
    for one, batched in zip(alone, together):
        assert torch.equal(one.valid, batched.valid) and torch.equal(one.sent, batched.sent)
        torch.testing.assert_close(batched.class_probs, one.class_probs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched.clip_logits, one.clip_logits, rtol=1e-5, atol=1e-5)
    for fast, reference in zip(together, exact):  # distinct masks: every region sends the crop exact mode cuts
        assert torch.equal(fast.sent, reference.valid)
        torch.testing.assert_close(fast.clip_logits, reference.clip_logits, rtol=1e-5, atol=1e-5)


def test_fast_mode_batch_without_any_crop_skips_the_clip(tiny):
    from vocabseg.precision import Recipe, inference_precision

    classifier, queries = _classifier(tiny), tiny.config.num_queries
    image = torch.from_numpy(synthetic_photo(64, 64).transpose(2, 0, 1).copy())
    proposal = torch.softmax(torch.randn(queries, 4), -1)
    with torch.no_grad(), inference_precision(tiny, torch.device("cpu"), Recipe(True, False, False, "fast, fp32")):
        results = tiny._classify_images([proposal] * 2, [_masks_with_regions(queries, {})] * 2, [image] * 2,
                                        [(64, 64)] * 2, classifier, OVSegSettings(ensemble_weight=0.5))
    for result in results:
        assert not result.valid.any() and not result.clip_logits.any() and result.clip_logits.shape == (queries, 4)
        torch.testing.assert_close(result.class_probs, proposal[:, :-1] ** 0.5)


def test_fast_inference_runs_the_heads_on_the_last_decoder_layer_only(tiny):
    from vocabseg.precision import Recipe, inference_precision

    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    classifier = _classifier(tiny)
    with torch.no_grad():
        exact = tiny(images, classifier)
        with inference_precision(tiny, torch.device("cpu"), Recipe(True, False, False, "fast, fp32")):
            fast = tiny(images, classifier)
    assert len(exact.aux_outputs) == tiny.config.dec_layers - 1 and fast.aux_outputs == []
    torch.testing.assert_close(fast.pred_masks, exact.pred_masks, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.pred_logits, exact.pred_logits, rtol=1e-5, atol=1e-5)


def test_fast_crops_run_int8_clip_blocks_close_to_exact(tiny):
    from vocabseg.layers.int8_linear import _PACKED, int8_available
    from vocabseg.precision import Recipe, inference_precision

    if not int8_available(torch.device("cpu"))[0]:
        pytest.skip("no fbgemm int8 linears on this CPU")
    classifier = _classifier(tiny)
    generator = torch.Generator().manual_seed(0)
    crops, masks = torch.randn(3, 3, 224, 224, generator=generator), torch.ones(3, 1, 224, 224)
    masks[0, :, :100] = 0  # one crop with a mask-prompted half
    with torch.no_grad():
        exact = tiny.region_logits(crops, masks, classifier, 2)
        with inference_precision(tiny, torch.device("cpu"), Recipe(True, False, False, "fast, int8", int8=True)):
            fast = tiny.region_logits(crops, masks, classifier, 2)
    assert tiny.clip.visual.transformer.resblocks[0].mlp.c_fc in _PACKED and not torch.equal(fast, exact)
    assert ((fast - exact).norm() / exact.norm()).item() < 0.03  # 9e-3 measured (logits at temperature 100)
