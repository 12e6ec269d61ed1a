"""Panoptic quality (PQ), with the COCO panopticapi rules.

An image's panoptic labelling is an id map (one segment id per pixel, 0 = VOID)
plus a list of segment dicts (``id``, ``category_id``, ``iscrowd``, ``area``).
Per image we count, for every category, true positives (gt/pred pairs of the same
category with IoU > 0.5, unique by construction), their summed IoU, false
negatives and false positives; those counts add up over images, and PQ/SQ/RQ are
computed from the totals. The rules, all as in ``panopticapi.evaluation``:

* IoU of a pair leaves out the pixels of the prediction that fall on VOID:
  ``inter / (area_pred + area_gt - inter - area(pred & VOID))``.
* Crowd gt segments are never matched and never counted as false negatives.
* An unmatched prediction is not a false positive when more than half of it lies
  on VOID plus the crowd region of its own category (with several crowd segments of
  one category, only the last listed one counts).
* gt pixels whose id is not in the gt segments are neither a segment nor VOID.
* The gt ``area`` is read from the segment dict when present (the official code
  trusts the json); prediction areas are always counted in the id map.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vocabseg.data.io import id_to_rgb, rgb_to_id

VOID = 0
# Pair (gt_id, pred_id) is packed into one uint64 as gt_id * OFFSET + pred_id; ids from
# RGB PNGs are < 256**3, so both halves fit.
OFFSET = 256**3


# panopticapi's names for the COCO panoptic PNG codec (id = R + 256 G + 256^2 B).
rgb2id = rgb_to_id
id2rgb = id_to_rgb


@dataclass
class PanopticImage:
    """One image's panoptic labelling (gt or prediction)."""

    ids: np.ndarray  # [H, W] integer segment ids, 0 = VOID / unlabelled
    segments: list[dict[str, Any]]  # COCO segments_info: id, category_id, iscrowd, area
    image_id: Any = None  # used to pair gt with predictions and to name the image in errors


@dataclass
class PQStatCat:
    """Counts for one category; all fields add up over images."""

    iou: float = 0.0  # sum of the IoUs of the true positives
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: PQStatCat) -> PQStatCat:
        return PQStatCat(self.iou + other.iou, self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


@dataclass
class PQStat:
    """Per-category PQ counts, keyed by category id. ``a + b`` merges two sets of images."""

    per_cat: dict[int, PQStatCat] = field(default_factory=dict)

    def __getitem__(self, category_id: int) -> PQStatCat:
        # Reading a category that was never seen gives zeros (and creates its entry).
        return self.per_cat.setdefault(int(category_id), PQStatCat())

    def __add__(self, other: PQStat) -> PQStat:
        out = PQStat({cat: replace(c) for cat, c in self.per_cat.items()})  # copies: never alias an operand
        for cat, counts in other.per_cat.items():
            out.per_cat[cat] = out.per_cat.get(cat, PQStatCat()) + counts
        return out

    def state_dict(self) -> dict[int, list[float]]:
        """Plain picklable form, ``{category_id: [iou, tp, fp, fn]}``, for gathering."""
        return {cat: [c.iou, c.tp, c.fp, c.fn] for cat, c in self.per_cat.items()}

    @classmethod
    def from_state_dict(cls, state: Mapping[int, Sequence[float]]) -> PQStat:
        return cls({int(cat): PQStatCat(float(v[0]), int(v[1]), int(v[2]), int(v[3])) for cat, v in state.items()})


def _segments_by_id(segments: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(s["id"]): s for s in segments}


def _pred_areas(
    pred_ids: np.ndarray, pred_segms: Mapping[int, Mapping[str, Any]], categories: Container[int], image: str
) -> dict[int, int]:
    """Counts prediction areas and checks the map against its segments_info, like panopticapi."""
    labels, counts = np.unique(pred_ids, return_counts=True)
    areas = {}
    for label, count in zip(labels.tolist(), counts.tolist()):
        if label not in pred_segms:
            if label == VOID:
                continue
            raise ValueError(
                f"image {image}: segment id {label} is in the prediction PNG but not in its segments_info; "
                "add it to segments_info or set those pixels to 0 (VOID)"
            )
        cat = pred_segms[label]["category_id"]
        if cat not in categories:
            raise ValueError(
                f"image {image}: predicted segment {label} has unknown category_id {cat}; "
                "use the dataset's category ids, not contiguous indices"
            )
        areas[label] = count
    missing = sorted(set(pred_segms) - set(areas))
    if missing:
        raise ValueError(
            f"image {image}: segment ids {missing} are in the prediction segments_info but not in its PNG; "
            "drop them from segments_info"
        )
    return areas


def _pair_intersections(gt_ids: np.ndarray, pred_ids: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixel count of every (gt_id, pred_id) pair that co-occurs, VOID included."""
    packed = gt_ids.astype(np.uint64) * np.uint64(OFFSET) + pred_ids.astype(np.uint64)  # [H, W]
    labels, counts = np.unique(packed, return_counts=True)
    return {(lab // OFFSET, lab % OFFSET): cnt for lab, cnt in zip(labels.tolist(), counts.tolist())}


def _check_id_maps(gt_ids: np.ndarray, pred_ids: np.ndarray, image: str) -> None:
    if gt_ids.ndim != 2 or gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"image {image}: gt and prediction id maps must both be [H, W] of one size, got "
            f"{tuple(gt_ids.shape)} and {tuple(pred_ids.shape)}; decode RGB PNGs with rgb2id"
        )
    for name, ids in (("gt", gt_ids), ("prediction", pred_ids)):
        if ids.size and (ids.min() < 0 or ids.max() >= OFFSET):
            raise ValueError(f"image {image}: {name} segment ids must lie in [0, 256**3)")


def _gt_areas(gt_ids: np.ndarray, gt_segms: Mapping[int, Mapping[str, Any]]) -> dict[int, int]:
    """gt areas: the json ``area`` when given (as panopticapi), else the pixel count."""
    if all("area" in s for s in gt_segms.values()):
        return {i: s["area"] for i, s in gt_segms.items()}
    labels, counts = np.unique(gt_ids, return_counts=True)
    counted = dict(zip(labels.tolist(), counts.tolist()))
    return {i: s["area"] if "area" in s else counted.get(i, 0) for i, s in gt_segms.items()}


def _match(
    inter: Mapping[tuple[int, int], int],
    gt_segms: Mapping[int, Mapping[str, Any]],
    pred_segms: Mapping[int, Mapping[str, Any]],
    gt_area: Mapping[int, int],
    pred_area: Mapping[int, int],
    stat: PQStat,
) -> tuple[set[int], set[int]]:
    """Counts true positives into ``stat``; returns the matched gt and pred ids."""
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), n_inter in inter.items():
        if gt_id not in gt_segms or pred_id not in pred_segms:
            continue
        gt, pred = gt_segms[gt_id], pred_segms[pred_id]
        if gt.get("iscrowd", 0) == 1 or gt["category_id"] != pred["category_id"]:
            continue
        # Pixels of the prediction lying on VOID are left out of the union.
        union = pred_area[pred_id] + gt_area[gt_id] - n_inter - inter.get((VOID, pred_id), 0)
        iou = n_inter / union
        if iou > 0.5:  # IoU > 0.5 makes the match unique; no assignment step needed
            stat[gt["category_id"]].tp += 1
            stat[gt["category_id"]].iou += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)
    return gt_matched, pred_matched


def _count_false_negatives(
    gt_segms: Mapping[int, Mapping[str, Any]], gt_matched: set[int], stat: PQStat
) -> dict[int, int]:
    """Counts unmatched non-crowd gt into ``stat``; returns ``{category_id: crowd segment id}``."""
    crowd_by_cat = {}
    for gt_id, gt in gt_segms.items():
        if gt_id in gt_matched:
            continue
        if gt.get("iscrowd", 0) == 1:
            # As panopticapi: with several crowd segments of one category, the last one
            # listed is the one the false-positive rule uses.
            crowd_by_cat[gt["category_id"]] = gt_id
            continue
        stat[gt["category_id"]].fn += 1
    return crowd_by_cat


def _count_false_positives(
    inter: Mapping[tuple[int, int], int],
    pred_segms: Mapping[int, Mapping[str, Any]],
    pred_area: Mapping[int, int],
    pred_matched: set[int],
    crowd_by_cat: Mapping[int, int],
    stat: PQStat,
) -> None:
    """Counts unmatched predictions into ``stat``, unless mostly on VOID + same-category crowd."""
    for pred_id, pred in pred_segms.items():
        if pred_id in pred_matched:
            continue
        ignored = inter.get((VOID, pred_id), 0)
        if pred["category_id"] in crowd_by_cat:
            ignored += inter.get((crowd_by_cat[pred["category_id"]], pred_id), 0)
        if ignored / pred_area[pred_id] > 0.5:
            continue
        stat[pred["category_id"]].fp += 1


def pq_stats_single_image(
    gt_ids: np.ndarray,
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping[str, Any]],
    categories: Container[int],
    image_id: Any = None,
) -> PQStat:
    """PQ counts of one image.

    Args:
        gt_ids: [H, W] integer gt segment ids, 0 = VOID.
        gt_segments: gt segment dicts with ``id``, ``category_id``, ``iscrowd`` (0 if absent)
            and optionally ``area`` (counted in ``gt_ids`` if absent).
        pred_ids: [H, W] integer predicted segment ids, 0 = no prediction.
        pred_segments: predicted segment dicts with ``id`` and ``category_id``.
        categories: the valid category ids (a mapping keyed by id works).
        image_id: only used to name the image in error messages.

    Returns:
        The counts, with an entry for every category that got a tp, fp or fn here.

    Raises:
        ValueError: when the prediction map and its segments disagree, or a predicted
            category is unknown (the cases where panopticapi raises).
    """
    gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
    _check_id_maps(gt_ids, pred_ids, str(image_id))
    gt_segms, pred_segms = _segments_by_id(gt_segments), _segments_by_id(pred_segments)
    pred_area = _pred_areas(pred_ids, pred_segms, categories, str(image_id))
    gt_area = _gt_areas(gt_ids, gt_segms)
    inter = _pair_intersections(gt_ids, pred_ids)  # {(gt_id, pred_id): pixels}
    stat = PQStat()
    gt_matched, pred_matched = _match(inter, gt_segms, pred_segms, gt_area, pred_area, stat)
    crowd_by_cat = _count_false_negatives(gt_segms, gt_matched, stat)
    _count_false_positives(inter, pred_segms, pred_area, pred_matched, crowd_by_cat, stat)
    return stat


def pq_average(
    stat: PQStat, categories: Mapping[int, Mapping[str, Any]], isthing: bool | None = None
) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """PQ, SQ, RQ averaged over categories, as fractions in [0, 1].

    Args:
        stat: counts summed over the dataset.
        categories: ``{category_id: {"isthing": 0 or 1, ...}}``; categories missing here
            are not averaged even if ``stat`` has counts for them.
        isthing: True for things only, False for stuff only, None for all.

    Returns:
        ``({"pq", "sq", "rq", "n"}, {category_id: {"pq", "sq", "rq"}})``. Only categories
        with tp + fp + fn > 0 enter the mean (``n`` of them); the others get zeros in the
        per-class dict. With ``n == 0`` the means are NaN (panopticapi divides by zero).
    """
    per_class, sums, n = {}, np.zeros(3), 0
    for cat, info in categories.items():
        if isthing is not None and (info["isthing"] == 1) != isthing:
            continue
        c = stat.per_cat.get(int(cat), PQStatCat())
        if c.tp + c.fp + c.fn == 0:
            per_class[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        denom = c.tp + 0.5 * c.fp + 0.5 * c.fn
        scores = (c.iou / denom, c.iou / c.tp if c.tp else 0.0, c.tp / denom)
        per_class[cat] = dict(zip(("pq", "sq", "rq"), scores))
        sums += scores
    means = sums / n if n else np.full(3, np.nan)
    return {"pq": float(means[0]), "sq": float(means[1]), "rq": float(means[2]), "n": n}, per_class


def pq_compute(stat: PQStat, categories: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """All / Things / Stuff summaries plus per-class results, laid out like panopticapi's pq_compute."""
    results: dict[str, Any] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        results[name], per_class = pq_average(stat, categories, isthing)
        if isthing is None:
            results["per_class"] = per_class
    return results
