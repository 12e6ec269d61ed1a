"""Mask AP must equal pycocotools' COCOeval run directly on the same data."""

import contextlib
import copy
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vocabseg.eval.evaluators import InstanceEvaluator
from vocabseg.eval.instance import coco_mask_ap, encode_mask, gt_annotations_from_masks, to_coco_results
from vocabseg.eval.report import format_markdown

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 5, "name": "bird"}]
SIZE = 128  # large enough for small (< 32^2), medium and large (> 96^2) instances


def box_mask(y0: int, x0: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[y0 : y0 + h, x0 : x0 + w] = True
    return m


def make_image(rng: np.random.Generator, image_id: int) -> tuple[dict, dict]:
    """gt of random boxes (one crowd) and noisy, partly wrong predictions."""
    sides = [8, 20, 40, 100]  # small, small, medium, large
    gt_masks = np.stack([box_mask(*rng.integers(0, SIZE - s, 2), s, s) for s in sides])
    cats = rng.choice([1, 3, 5], len(sides)).tolist()
    crowd = [0, 0, 0, int(image_id % 2)]
    pred_masks = [np.roll(m, tuple(rng.integers(-4, 5, 2)), (0, 1)) for m in gt_masks]
    pred_masks.append(box_mask(0, 0, 30, 30))  # a false positive
    pred_cats = cats + [int(rng.choice([1, 3, 5]))]
    pred_cats[1] = 3 if pred_cats[1] != 3 else 1  # one wrong class
    gt = {
        "image_id": image_id,
        "height": SIZE,
        "width": SIZE,
        "annotations": gt_annotations_from_masks(gt_masks, cats, crowd),
    }
    pred = {"masks": np.stack(pred_masks), "category_ids": pred_cats, "scores": rng.random(len(pred_cats)).tolist()}
    return gt, pred


def dataset(pairs: list[tuple[dict, dict]]) -> tuple[dict, list[dict]]:
    images, anns, results = [], [], []
    for gt, pred in pairs:
        images.append({"id": gt["image_id"], "height": SIZE, "width": SIZE})
        anns += [{**a, "image_id": gt["image_id"], "id": len(anns) + k + 1} for k, a in enumerate(gt["annotations"])]
        results += to_coco_results(gt["image_id"], pred["masks"], pred["category_ids"], pred["scores"])
    return {"images": images, "annotations": anns, "categories": CATEGORIES}, results


def cocoeval_direct(gt: dict, results: list[dict], cat_ids: list[int] | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        e = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iouType="segm")
        if cat_ids is not None:
            e.params.catIds = cat_ids
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


@pytest.fixture(scope="module")
def data() -> tuple[list, dict, list]:
    rng = np.random.default_rng(0)
    pairs = [make_image(rng, i) for i in (4, 8, 15)]
    return (pairs, *dataset(pairs))


def test_ap_equals_cocoeval(data):
    _, gt, results = data
    ours = coco_mask_ap(gt, results)
    ref = cocoeval_direct(gt, results)
    for k, v in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ref[:6]):
        assert ours[k] == pytest.approx(100 * v, abs=1e-9)
    assert 0 < ours["AP"] < 100
    for cat in (1, 3, 5):  # per-category AP = COCOeval restricted to that category
        assert ours["per_class"][cat] == pytest.approx(100 * cocoeval_direct(gt, results, [cat])[0], abs=1e-9)


def test_bbox_in_results_is_ignored(data):
    _, gt, results = data
    with_box = [{**r, "bbox": [0.0, 0.0, 127.0, 127.0]} for r in results]
    assert coco_mask_ap(gt, with_box) == coco_mask_ap(gt, results)


def test_evaluator_merge_equals_whole(data):
    pairs, gt, results = data
    parts = [InstanceEvaluator(CATEGORIES) for _ in range(2)]
    for i, (g, p) in enumerate(pairs):
        parts[i % 2].process(g, p)
    merged = InstanceEvaluator(CATEGORIES)
    merged.merge(p.state_dict() for p in parts)
    res = merged.evaluate()
    ref = coco_mask_ap(gt, results)
    assert res["AP"] == pytest.approx(ref["AP"], abs=1e-9)
    assert res["per_class"]["dog"]["AP"] == pytest.approx(ref["per_class"][3], abs=1e-9)
    assert format_markdown(res).splitlines()[0] == "| AP | AP50 | AP75 | APs | APm | APl |"


def test_rle_predictions_equal_mask_predictions(data):
    pairs, gt, results = data
    ev = InstanceEvaluator(CATEGORIES)
    for g, p in pairs:
        ev.process(g, {**p, "masks": [encode_mask(m) for m in p["masks"]]})
    assert ev.evaluate()["AP"] == pytest.approx(coco_mask_ap(gt, results)["AP"], abs=1e-9)


def test_no_predictions_gives_nan(data):
    _, gt, _ = data
    res = coco_mask_ap(gt, [])
    assert math.isnan(res["AP"]) and math.isnan(res["per_class"][1])


def test_duplicate_image_raises(data):
    pairs, _, _ = data
    ev = InstanceEvaluator(CATEGORIES)
    ev.process(*pairs[0])
    ev.process(*pairs[0])
    with pytest.raises(ValueError, match="processed more than once"):
        ev.evaluate()


def test_unknown_image_or_category_raises(data):
    _, gt, results = data
    with pytest.raises(ValueError, match="image_id 999 which is not in the gt images"):
        coco_mask_ap(gt, [{**results[0], "image_id": 999}])
    with pytest.raises(ValueError, match="category_id 2 which is not in the gt categories"):
        coco_mask_ap(gt, [{**results[0], "category_id": 2}])
