"""PQ on hand-made id maps whose answers are worked out in the comments."""

import math

import numpy as np
import pytest

from vocabseg.eval.evaluators import PanopticEvaluator
from vocabseg.eval.panoptic import (
    PanopticImage,
    PQStat,
    id2rgb,
    pq_average,
    pq_compute,
    pq_stats_single_image,
    rgb2id,
)
from vocabseg.eval.report import format_markdown

PERSON, SKY, CAR, GRASS = 1, 2, 3, 4
CATEGORIES = {
    PERSON: {"id": PERSON, "name": "person", "isthing": 1},
    SKY: {"id": SKY, "name": "sky", "isthing": 0},
    CAR: {"id": CAR, "name": "car", "isthing": 1},  # absent everywhere
    GRASS: {"id": GRASS, "name": "grass", "isthing": 0},
}


def row(*runs: tuple[int, int]) -> np.ndarray:
    """A [1, W] id map from (id, length) runs."""
    return np.concatenate([np.full(n, i) for i, n in runs])[None]


def seg(i: int, cat: int, crowd: int = 0) -> dict:
    return {"id": i, "category_id": cat, "iscrowd": crowd}


# 20 pixels. gt: sky 10 | person 6 | VOID 2 | person crowd 2
GT_IDS = row((1, 10), (2, 6), (0, 2), (3, 2))
GT_SEGS = [seg(1, SKY), seg(2, PERSON), seg(3, PERSON, crowd=1)]
# pred: sky 8 | grass 2 | person 5 | none 1 | person 1 (on VOID) | person 3 (VOID 1 + crowd 2)
PRED_IDS = row((11, 8), (12, 2), (13, 5), (0, 1), (13, 1), (14, 3))
PRED_SEGS = [seg(11, SKY), seg(12, GRASS), seg(13, PERSON), seg(14, PERSON)]


def hand_stat() -> PQStat:
    return pq_stats_single_image(GT_IDS, GT_SEGS, PRED_IDS, PRED_SEGS, CATEGORIES, image_id=7)


def test_hand_counts():
    stat = hand_stat()
    # sky: inter 8, union 8 + 10 - 8 = 10 -> IoU 0.8, a tp.
    assert (stat[SKY].tp, stat[SKY].fp, stat[SKY].fn) == (1, 0, 0)
    assert stat[SKY].iou == pytest.approx(0.8)
    # person: pred 13 has area 6 of which 1 on VOID; union 6 + 6 - 5 - 1 = 6 -> IoU 5/6.
    # pred 14 lies on VOID (1) + the person crowd (2): 3/3 > 0.5, ignored.
    # The crowd gt is unmatched but ignored: no fn.
    assert (stat[PERSON].tp, stat[PERSON].fp, stat[PERSON].fn) == (1, 0, 0)
    assert stat[PERSON].iou == pytest.approx(5 / 6)
    # grass: predicted on sky, matches nothing -> fp.
    assert (stat[GRASS].tp, stat[GRASS].fp, stat[GRASS].fn) == (0, 1, 0)
    assert CAR not in stat.per_cat


def test_hand_averages():
    res = pq_compute(hand_stat(), CATEGORIES)
    # car has no tp/fp/fn: out of every mean. All = {sky .8, person 5/6, grass 0}.
    assert res["All"]["n"] == 3
    assert res["All"]["pq"] == pytest.approx((0.8 + 5 / 6 + 0) / 3)
    assert res["All"]["sq"] == pytest.approx((0.8 + 5 / 6 + 0) / 3)
    assert res["All"]["rq"] == pytest.approx(2 / 3)
    assert res["Things"] == pytest.approx({"pq": 5 / 6, "sq": 5 / 6, "rq": 1.0, "n": 1})
    assert res["Stuff"] == pytest.approx({"pq": 0.4, "sq": 0.4, "rq": 0.5, "n": 2})
    assert res["per_class"][CAR] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}


def test_iou_exactly_half_is_not_a_match():
    # gt person 2 px, pred person 4 px covering it: IoU 2/4 = 0.5, not > 0.5.
    gt, pred = row((1, 2), (5, 2)), row((9, 4))
    stat = pq_stats_single_image(gt, [seg(1, PERSON), seg(5, SKY)], pred, [seg(9, PERSON)], CATEGORIES)
    assert (stat[PERSON].tp, stat[PERSON].fp, stat[PERSON].fn) == (0, 1, 1)
    assert stat[SKY].fn == 1


@pytest.mark.parametrize("n_void, is_fp", [(2, True), (3, False)])
def test_unmatched_prediction_void_rule(n_void: int, is_fp: bool):
    # pred person of 4 px, n_void on VOID: ignored only when n_void / 4 > 0.5.
    gt = row((0, n_void), (1, 4 - n_void), (2, 6))
    pred = row((9, 4), (0, 6))
    stat = pq_stats_single_image(gt, [seg(1, SKY), seg(2, SKY)], pred, [seg(9, PERSON)], CATEGORIES)
    assert stat[PERSON].fp == int(is_fp)


def test_crowd_of_other_category_does_not_excuse():
    gt = row((1, 4), (2, 4))
    pred = row((9, 4), (0, 4))  # a car on a person crowd
    stat = pq_stats_single_image(gt, [seg(1, PERSON, crowd=1), seg(2, SKY)], pred, [seg(9, CAR)], CATEGORIES)
    assert stat[CAR].fp == 1
    assert stat[PERSON].fn == 0  # crowd never counts as fn


def test_only_last_listed_crowd_per_category_is_used():
    # Two person crowds; panopticapi keeps the last listed per category for the fp rule.
    gt = row((1, 4), (2, 4))
    pred = row((9, 4), (8, 4))  # 9 on the first crowd, 8 on the last one
    gt_segs = [seg(1, PERSON, crowd=1), seg(2, PERSON, crowd=1)]
    stat = pq_stats_single_image(gt, gt_segs, pred, [seg(9, PERSON), seg(8, PERSON)], CATEGORIES)
    assert stat[PERSON].fp == 1


def test_gt_map_and_segments_disagreeing_follow_panopticapi():
    # gt segment 5 is listed but absent from the map: an fn. gt pixels of id 6 are not
    # listed: neither a segment nor VOID, so the grass predicted on them is a plain fp.
    gt, pred = row((1, 4), (6, 4)), row((9, 4), (8, 4))
    stat = pq_stats_single_image(gt, [seg(1, SKY), seg(5, PERSON)], pred, [seg(9, SKY), seg(8, GRASS)], CATEGORIES)
    assert (stat[SKY].tp, stat[PERSON].fn, stat[GRASS].fp) == (1, 1, 1)


def test_gt_area_is_read_from_segments_when_given():
    gt, pred = row((1, 4)), row((9, 4))
    exact = pq_stats_single_image(gt, [seg(1, SKY)], pred, [seg(9, SKY)], CATEGORIES)
    assert exact[SKY].iou == 1.0
    declared = pq_stats_single_image(gt, [{**seg(1, SKY), "area": 6}], pred, [seg(9, SKY)], CATEGORIES)
    assert declared[SKY].iou == pytest.approx(4 / 6)  # union 4 + 6 - 4


def test_no_stuff_gives_nan_stuff_means():
    stat = pq_stats_single_image(row((1, 4)), [seg(1, PERSON)], row((9, 4)), [seg(9, PERSON)], CATEGORIES)
    summary, _ = pq_average(stat, CATEGORIES, isthing=False)
    assert summary["n"] == 0 and math.isnan(summary["pq"])


@pytest.mark.parametrize(
    "pred_ids, pred_segs, message",
    [
        (row((9, 2), (8, 2)), [seg(9, SKY)], "segment id 8 is in the prediction PNG but not in its segments_info"),
        (
            row((9, 4)),
            [seg(9, SKY), seg(8, SKY)],
            "segment ids [8] are in the prediction segments_info but not in its PNG",
        ),
        (row((9, 4)), [seg(9, 42)], "predicted segment 9 has unknown category_id 42"),
    ],
)
def test_errors_name_the_image(pred_ids, pred_segs, message):
    with pytest.raises(ValueError) as err:
        pq_stats_single_image(row((1, 4)), [seg(1, SKY)], pred_ids, pred_segs, CATEGORIES, image_id="img_3")
    assert str(err.value).startswith("image img_3: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="one size"):
        pq_stats_single_image(row((1, 4)), [seg(1, SKY)], row((9, 5)), [seg(9, SKY)], CATEGORIES)


def test_rgb_round_trip():
    ids = np.array([[0, 1, 256, 65536 + 7, 256**3 - 1]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert rgb2id(np.array([[[1, 2, 3]]], dtype=np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536


def random_image(rng: np.random.Generator, image_id: int) -> tuple[PanopticImage, PanopticImage]:
    """gt of random blocks and a noisy prediction of it."""
    gt = rng.integers(0, 5, (3, 4)).repeat(4, 0).repeat(4, 1)  # [12, 16], 0 = VOID
    pred = np.where(rng.random(gt.shape) < 0.15, rng.integers(0, 6, gt.shape), gt) + 10 * (gt > 0)
    gt_segs = [seg(i, [PERSON, SKY, GRASS, PERSON][i - 1], crowd=int(i == 4)) for i in range(1, 5) if (gt == i).any()]
    pred_segs = [seg(int(i), [SKY, PERSON, GRASS][int(i) % 3]) for i in np.unique(pred) if i != 0]
    return PanopticImage(gt, gt_segs, image_id), PanopticImage(pred, pred_segs, image_id)


def test_stat_addition_and_merge_equal_whole():
    rng = np.random.default_rng(0)
    images = [random_image(rng, i) for i in range(8)]
    whole, halves = PanopticEvaluator(list(CATEGORIES.values())), [
        PanopticEvaluator(list(CATEGORIES.values())) for _ in range(2)
    ]
    for i, (gt, pred) in enumerate(images):
        whole.process(gt, pred)
        halves[i % 2].process(gt, pred)
    summed = halves[0].stat + halves[1].stat
    merged = PanopticEvaluator(list(CATEGORIES.values()))
    merged.merge([h.state_dict() for h in halves])
    for stat in (summed, merged.stat):
        assert set(stat.per_cat) == set(whole.stat.per_cat)
        for cat, c in whole.stat.per_cat.items():
            assert (stat[cat].tp, stat[cat].fp, stat[cat].fn) == (c.tp, c.fp, c.fn)
            assert stat[cat].iou == pytest.approx(c.iou, abs=1e-12)
    assert merged.evaluate()["PQ"] == pytest.approx(whole.evaluate()["PQ"], abs=1e-9)


def test_evaluator_results_and_markdown():
    ev = PanopticEvaluator(list(CATEGORIES.values()))
    ev.process(PanopticImage(GT_IDS, GT_SEGS, 7), PanopticImage(PRED_IDS, PRED_SEGS, 7))
    res = ev.evaluate()
    assert res["PQ"] == pytest.approx(100 * (0.8 + 5 / 6) / 3)
    assert res["PQ_th"] == pytest.approx(100 * 5 / 6) and res["PQ_st"] == pytest.approx(40.0)
    assert (res["N"], res["N_th"], res["N_st"]) == (3, 1, 2)
    assert res["per_class"]["grass"] == {"PQ": 0.0, "SQ": 0.0, "RQ": 0.0, "TP": 0, "FP": 1, "FN": 0}
    md = format_markdown(res)
    assert "| Things | 83.3 | 83.3 | 100.0 | 1 |" in md
    assert "| sky | 80.0 | 80.0 | 100.0 | 1 | 0 | 0 |" in md
