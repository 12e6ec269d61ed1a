"""Instance segmentation mask AP, computed by pycocotools' COCOeval (iouType="segm").

This module only converts inputs to the COCO formats and reads COCOeval's outputs the
way detectron2's COCOEvaluator does; matching and AP are left to pycocotools.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Order of COCOeval.stats[:6] for iouType="segm".
AP_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of one binary [H, W] mask, with ``counts`` as str (JSON-ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected one [H, W] binary mask, got shape {mask.shape}")
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))  # pycocotools wants Fortran order
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _as_rles(masks: np.ndarray | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Binary [K, H, W] masks or a list of RLE dicts -> list of RLE dicts."""
    if isinstance(masks, Sequence) and (len(masks) == 0 or isinstance(masks[0], Mapping)):
        return [dict(r) for r in masks]
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected binary masks [K, H, W] or a list of RLE dicts, got shape {masks.shape}")
    return [encode_mask(m) for m in masks]


def to_coco_results(
    image_id: int,
    masks: np.ndarray | Sequence[Mapping[str, Any]],
    category_ids: Sequence[int],
    scores: Sequence[float],
) -> list[dict[str, Any]]:
    """One image's predictions as COCO result dicts.

    Args:
        image_id: COCO image id.
        masks: [K, H, W] binary masks, or K RLE dicts.
        category_ids: [K] COCO category ids (dataset ids, not contiguous indices).
        scores: [K] confidences.

    Returns:
        K dicts with ``image_id, category_id, segmentation, score``.
    """
    rles = _as_rles(masks)
    if not len(rles) == len(category_ids) == len(scores):
        raise ValueError(
            f"image {image_id}: got {len(rles)} masks, {len(category_ids)} category ids and {len(scores)} scores; "
            "give one of each per instance"
        )
    return [
        {"image_id": image_id, "category_id": int(c), "segmentation": r, "score": float(s)}
        for r, c, s in zip(rles, category_ids, scores)
    ]


def gt_annotations_from_masks(
    masks: np.ndarray, category_ids: Sequence[int], iscrowd: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """COCO gt annotation dicts (without ids) from binary [M, H, W] gt masks."""
    rles = _as_rles(masks)
    crowd = [0] * len(rles) if iscrowd is None else [int(c) for c in iscrowd]
    return [
        {"category_id": int(c), "segmentation": r, "area": float(mask_util.area(r)), "iscrowd": k}
        for r, c, k in zip(rles, category_ids, crowd)
    ]


def _coco_from_dict(dataset: Mapping[str, Any]) -> COCO:
    """A COCO api object over an in-memory dataset, with annotation ids renumbered 1..N.

    COCOeval records matches by annotation id and treats id 0 as "unmatched", so ids are
    made positive and unique; they carry no other meaning. A missing ``area`` is the mask's
    pixel count (COCO's own polygon gt store the polygon area instead).
    """
    data = copy.deepcopy(dict(dataset))
    for i, ann in enumerate(data.get("annotations", []), start=1):
        ann["id"] = i
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    for ann in data.get("annotations", []):
        if "area" not in ann:  # COCOeval needs it for the small/medium/large split
            ann["area"] = float(mask_util.area(coco.annToRLE(ann)))
    return coco


def _check_results(results: Sequence[Mapping[str, Any]], coco_gt: COCO) -> list[dict[str, Any]]:
    known_images, known_cats = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    out: list[dict[str, Any]] = []
    for r in results:
        if r["image_id"] not in known_images:
            raise ValueError(
                f"a result has image_id {r['image_id']} which is not in the gt images; "
                "drop it or add the image to the gt"
            )
        if r["category_id"] not in known_cats:
            raise ValueError(
                f"a result has category_id {r['category_id']} which is not in the gt categories; "
                "map contiguous indices to dataset ids"
            )
        result = copy.deepcopy(dict(r))
        # As detectron2: with a bbox present COCO.loadRes takes the box area as the
        # instance area, which changes the small/medium/large split of mask AP.
        result.pop("bbox", None)
        out.append(result)
    return out


def coco_mask_ap(gt_dataset: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mask AP of COCO results against a COCO instance gt dataset.

    Args:
        gt_dataset: COCO instance json content (``images`` with height/width,
            ``annotations``, ``categories``).
        results: COCO result dicts (``image_id, category_id, segmentation`` as RLE, ``score``).

    Returns:
        ``AP, AP50, AP75, APs, APm, APl`` in percent (NaN where COCOeval reports -1, or
        for every metric when there are no results, as detectron2) and ``per_class``:
        ``{category_id: AP}`` at IoU 0.50:0.95, area all, 100 detections.
    """
    coco_gt = _coco_from_dict(gt_dataset)
    results = _check_results(results, coco_gt)
    if not results:  # COCO.loadRes cannot take an empty list
        return {
            **{k: float("nan") for k in AP_METRICS},
            "per_class": {int(c): float("nan") for c in sorted(coco_gt.getCatIds())},
        }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    out: dict[str, Any] = {k: _percent(v) for k, v in zip(AP_METRICS, coco_eval.stats[:6])}
    out["per_class"] = _per_class_ap(coco_eval)
    return out


def _percent(value: float) -> float:
    return float(value * 100) if value >= 0 else float("nan")


def _per_class_ap(coco_eval: COCOeval) -> dict[int, float]:
    """AP per category from COCOeval's precision table."""
    precision = coco_eval.eval["precision"]  # [T iou thresholds, R recall points, K cats, A areas, M max dets]
    out = {}
    for k, cat in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]  # area "all", most detections
        p = p[p > -1]  # -1 marks thresholds/recalls with no gt
        out[int(cat)] = float(p.mean() * 100) if p.size else float("nan")
    return out
