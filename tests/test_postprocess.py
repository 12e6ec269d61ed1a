"""Tests for vocabseg.postprocess on hand-made queries.

Masks are logits of +-10 (sigmoid 0.99995 / 0.00005) on tiny maps; class rows are the
logs of chosen probabilities, so ``softmax`` gives those probabilities back.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vocabseg.postprocess import (
    QueryMasks,
    instance_inference,
    panoptic_inference,
    semantic_inference,
    semantic_labels,
)

THING, STUFF = 0, 1
IS_THING = [True, False]  # K = 2; column 2 is void
ALL, LEFT, TOP = slice(None), slice(0, 2), slice(0, 2)  # regions of a 4x4 map


def _cls(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def _mask(*regions: tuple[slice, slice], size=(4, 4)) -> torch.Tensor:
    """Mask logits: +10 inside the union of (row slice, column slice) regions, -10 elsewhere."""
    logits = torch.full(size, -10.0)
    for rows, cols in regions:
        logits[rows, cols] = 10.0
    return logits


def _panoptic(mask_cls, masks, *, object_mask_threshold=0.0, overlap_threshold=0.8):
    return panoptic_inference(
        mask_cls, torch.stack(masks), IS_THING,
        object_mask_threshold=object_mask_threshold, overlap_threshold=overlap_threshold,
    )



def test_void_queries_are_dropped():
    result = _panoptic(_cls([0.1, 0.1, 0.8]), [_mask((ALL, ALL))])
    assert result.segments == []
    assert result.segment_map.dtype == torch.int32 and result.segment_map.shape == (4, 4)
    assert torch.count_nonzero(result.segment_map) == 0


def test_object_mask_threshold_drops_low_scores():
    mask_cls = _cls([0.5, 0.3, 0.2], [0.2, 0.7, 0.1])
    masks = [_mask((ALL, LEFT)), _mask((ALL, slice(2, 4)))]
    kept = _panoptic(mask_cls, masks, object_mask_threshold=0.6)
    assert [s.category for s in kept.segments] == [STUFF]
    assert kept.segment_map[:, :2].eq(0).all() and kept.segment_map[:, 2:].eq(1).all()
    both = _panoptic(mask_cls, masks, object_mask_threshold=0.4)
    assert [s.category for s in both.segments] == [THING, STUFF]


def test_mostly_covered_query_is_rejected_by_overlap_threshold():
    # A (0.9) owns columns 0-1; B (0.8) wants columns 0-2 but keeps only column 2: 4/12 visible
    mask_cls = _cls([0.9, 0.05, 0.05], [0.8, 0.1, 0.1])
    masks = [_mask((ALL, LEFT)), _mask((ALL, slice(0, 3)))]
    result = _panoptic(mask_cls, masks, overlap_threshold=0.8)
    assert [(s.id, s.category) for s in result.segments] == [(1, THING)]
    assert math.isclose(result.segments[0].score, 0.9, rel_tol=1e-6)
    expected = torch.zeros(4, 4, dtype=torch.int32)
    expected[:, :2] = 1
    assert torch.equal(result.segment_map, expected)
    # with a permissive threshold B keeps its visible column as a second segment
    lenient = _panoptic(mask_cls, masks, overlap_threshold=0.3)
    assert [s.id for s in lenient.segments] == [1, 2]
    assert lenient.segment_map[:, 2].eq(2).all() and lenient.segment_map[:, 3].eq(0).all()


def test_stuff_queries_of_one_class_merge_into_one_segment():
    mask_cls = _cls([0.05, 0.9, 0.05], [0.1, 0.85, 0.05])
    result = _panoptic(mask_cls, [_mask((TOP, ALL)), _mask((slice(2, 4), ALL))])
    assert len(result.segments) == 1
    assert result.segments[0].category == STUFF and result.segments[0].is_thing is False
    assert result.segment_map.eq(1).all()


def test_thing_queries_of_one_class_stay_separate():
    mask_cls = _cls([0.9, 0.05, 0.05], [0.85, 0.1, 0.05])
    result = _panoptic(mask_cls, [_mask((TOP, ALL)), _mask((slice(2, 4), ALL))])
    assert [(s.id, s.is_thing) for s in result.segments] == [(1, True), (2, True)]


def test_segment_ids_are_consecutive_from_one():
    # dropped void query first, then thing, stuff, stuff (merged), thing
    mask_cls = _cls([0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05])
    masks = [
        _mask((ALL, ALL)),
        _mask((slice(0, 1), ALL)),
        _mask((slice(1, 2), ALL)),
        _mask((slice(2, 3), ALL)),
        _mask((slice(3, 4), ALL)),
    ]
    result = _panoptic(mask_cls, masks)
    assert [s.id for s in result.segments] == [1, 2, 3]
    assert [s.category for s in result.segments] == [THING, STUFF, THING]
    assert result.segment_map[:, 0].tolist() == [1, 2, 2, 3]
    assert sorted(result.segment_map.unique().tolist()) == [1, 2, 3]


def test_semantic_inference_matches_hand_sum():
    g = torch.Generator().manual_seed(0)
    mask_cls, mask_pred = torch.randn(3, 4, generator=g), torch.randn(3, 2, 5, generator=g)  # Q=3, K=3
    expected = torch.zeros(3, 2, 5)
    for q in range(3):
        probs = mask_cls[q].exp() / mask_cls[q].exp().sum()  # softmax over K + 1, then void dropped
        for c in range(3):
            expected[c] += probs[c] * (1 / (1 + (-mask_pred[q]).exp()))
    result = semantic_inference(mask_cls, mask_pred)
    assert result.shape == (3, 2, 5)
    torch.testing.assert_close(result, expected)


def test_semantic_inference_does_not_renormalise_without_void():
    result = semantic_inference(_cls([0.3, 0.5, 0.2]), torch.full((1, 1, 1), 50.0))
    torch.testing.assert_close(result.flatten(), torch.tensor([0.3, 0.5]))


# Q=3, K=3 (void last); flattened (query, class) scores .6 .3 .05 | .1 .7 .15 | .2 .1 .5
INSTANCE_CLS = _cls([0.6, 0.3, 0.05, 0.05], [0.1, 0.7, 0.15, 0.05], [0.2, 0.1, 0.5, 0.2])
# [3, 1, 4]
INSTANCE_MASKS = torch.tensor([[[2.0, 1.0, -1.0, -3.0]], [[5.0, 5.0, 5.0, 5.0]], [[-1.0, -2.0, -3.0, -4.0]]])


def test_instance_top_k_order_and_scores():
    result = instance_inference(INSTANCE_CLS, INSTANCE_MASKS, None, top_k=4)
    # top pairs: (q1, c1) .7, (q0, c0) .6, (q2, c2) .5, (q0, c1) .3; then sorted by final score,
    # where (q2, c2) falls last because its mask is empty
    assert result.classes.tolist() == [1, 0, 1, 2]
    assert torch.equal(result.masks, INSTANCE_MASKS[[1, 0, 0, 2]] > 0)
    sig = lambda x: 1 / (1 + math.exp(-x))
    q0_inside = (sig(2.0) + sig(1.0)) / 2
    expected = [0.7 * sig(5.0), 0.6 * q0_inside, 0.3 * q0_inside, 0.0]  # empty mask scores 0
    torch.testing.assert_close(result.scores, torch.tensor(expected), atol=1e-5, rtol=0)


def test_instance_keeps_only_things_when_given():
    result = instance_inference(INSTANCE_CLS, INSTANCE_MASKS, [True, False, True], top_k=4)
    assert result.classes.tolist() == [0, 2]
    assert result.masks.shape == (2, 1, 4) and result.masks.dtype == torch.bool


@pytest.mark.parametrize("top_k, expected", [(1, 1), (9, 9), (100, 9)])
def test_instance_top_k_is_capped_by_the_number_of_pairs(top_k, expected):
    assert len(instance_inference(INSTANCE_CLS, INSTANCE_MASKS, None, top_k=top_k).scores) == expected


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_semantic_labels_equal_the_full_argmax(chunk):
    g = torch.Generator().manual_seed(1)
    mask_cls, mask_pred = torch.randn(6, 8, generator=g), torch.randn(6, 9, 11, generator=g)  # K = 7
    expected = semantic_inference(mask_cls, mask_pred).argmax(0)
    assert torch.equal(semantic_labels(mask_cls, mask_pred, chunk=chunk), expected)
    double = lambda scores: scores.repeat_interleave(2, -1)
    assert torch.equal(semantic_labels(mask_cls, mask_pred, resize=double, chunk=chunk),
                       double(semantic_inference(mask_cls, mask_pred)).argmax(0))


@pytest.mark.parametrize("band, tile_elements", [(1, 1), (7, 2 * 99), (10 ** 6, 10 ** 9)])
def test_semantic_labels_in_pixel_bands_and_wide_class_groups_equal_the_full_argmax(monkeypatch, band,
                                                                                      tile_elements):
    monkeypatch.setattr("vocabseg.postprocess._BAND_PIXELS", band)
    g = torch.Generator().manual_seed(2)
    mask_cls, mask_pred = torch.randn(5, 8, generator=g), torch.randn(5, 9, 11, generator=g)  # K = 7, 99 pixels
    mask_cls[:, 4] = mask_cls[:, 2]  # classes 2 and 4 tie everywhere: the first one wins
    scores = semantic_inference(mask_cls, mask_pred)
    assert torch.equal(semantic_labels(mask_cls, mask_pred, chunk=3), scores.argmax(0))
    double = lambda block: block.repeat_interleave(2, -1)
    labels = semantic_labels(mask_cls, mask_pred, resize=double, chunk=3, tile_elements=tile_elements)
    assert torch.equal(labels, double(scores).argmax(0)) and not (labels == 4).any()


# ---- chunked merging equals merging the whole [Q, H, W] tensor ---------------------------------------


def _random_case(seed: int, queries: int, classes: int, size: tuple[int, int]):
    """Class log-probs and, like the predictor, masks resized from a coarse map (per query, on demand)."""
    g = torch.Generator().manual_seed(seed)
    mask_cls = (torch.randn(queries, classes + 1, generator=g) * 2).log_softmax(-1)
    coarse = torch.randn(queries, (size[0] + 3) // 4, (size[1] + 3) // 4, generator=g) * 4
    resize = lambda index: F.interpolate(coarse[index][None], size=size, mode="bilinear", align_corners=False)[0]
    full = resize(torch.arange(queries))
    return mask_cls, full, QueryMasks(resize, queries, size, full.device)


CASES = [(0, 7, 3, (9, 13)), (1, 12, 5, (17, 10)), (2, 1, 2, (5, 7)), (3, 25, 4, (31, 23))]


@pytest.mark.parametrize("seed, queries, classes, size", CASES)
@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_panoptic_equals_the_full_tensor(seed, queries, classes, size, chunk):
    mask_cls, full, lazy = _random_case(seed, queries, classes, size)
    is_thing = [k % 2 == 0 for k in range(classes)]
    for threshold in (0.0, 0.3):
        kwargs = dict(object_mask_threshold=threshold, overlap_threshold=0.5)
        expected = panoptic_inference(mask_cls, full, is_thing, **kwargs)
        result = panoptic_inference(mask_cls, lazy.with_chunk(chunk), is_thing, **kwargs)
        assert torch.equal(result.segment_map, expected.segment_map)
        assert result.segments == expected.segments


@pytest.mark.parametrize("seed, queries, classes, size", CASES)
@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("is_thing", [False, True])
def test_chunked_instances_equal_the_full_tensor(seed, queries, classes, size, chunk, is_thing):
    mask_cls, full, lazy = _random_case(seed, queries, classes, size)
    things = [k % 2 == 0 for k in range(classes)] if is_thing else None
    expected = instance_inference(mask_cls, full, things, top_k=10)
    result = instance_inference(mask_cls, lazy.with_chunk(chunk), things, top_k=10)
    assert torch.equal(result.masks, expected.masks) and torch.equal(result.classes, expected.classes)
    # scores to float32 rounding: torch sums one row and many rows in different orders
    torch.testing.assert_close(result.scores, expected.scores, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed, queries, classes, size", CASES)
@pytest.mark.parametrize("tile", [1, 7, 10 ** 6])
@pytest.mark.parametrize("given_probs", [False, True])
def test_row_tiled_semantic_labels_equal_the_full_tensor(seed, queries, classes, size, tile, given_probs):
    mask_cls, full, lazy = _random_case(seed, queries, classes, size)
    # OVSeg's ensemble probabilities do not sum to one
    class_probs = torch.rand(queries, classes, generator=torch.Generator().manual_seed(seed)) if given_probs else None
    expected = semantic_inference(mask_cls, full, class_probs=class_probs).argmax(0)
    tile_elements = tile * queries * size[1]  # ``tile`` rows at a time
    result = semantic_labels(mask_cls, lazy.with_chunk(3), class_probs=class_probs, tile_elements=tile_elements,
                             chunk=2)
    assert torch.equal(result, expected)
    assert torch.equal(semantic_labels(mask_cls, full, class_probs=class_probs), expected)


def test_query_masks_of_a_tensor_reads_it():
    _, full, _ = _random_case(0, 5, 2, (6, 4))
    masks = QueryMasks.of(full)
    assert masks.size == (6, 4) and masks.num_queries == 5
    assert torch.equal(masks.rows(2, 5), full[:, 2:5])


def test_first_argmax_equals_argmax_with_ties():
    from vocabseg.postprocess import _first_argmax

    scores = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0))
    scores[2, :100] = scores[4, :100] = 100.0  # ties: the first class wins, as argmax
    scores[:, 100:120] = 0.5  # all classes tied
    out = torch.full((1000,), 7, dtype=torch.int64)
    assert torch.equal(_first_argmax(scores, out=out), scores.argmax(0))
    assert int(out[0]) == 2 and int(out[110]) == 0


def test_counts_equal_bool_sums():
    from vocabseg.postprocess import _counts

    flags = torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(1)) > 0.4
    assert torch.equal(_counts(flags), flags.flatten(1).sum(1))
    assert _counts(flags[:0]).shape == (0,)
