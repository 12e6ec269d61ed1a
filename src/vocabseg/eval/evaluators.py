"""Thin accumulators over the pure metrics: ``reset() / process(gt, pred) / evaluate()``.

Each evaluator's state is a plain picklable dict, so a distributed run can gather and
reduce it with any transport, e.g. with torch.distributed::

    states = [None] * world_size
    dist.all_gather_object(states, evaluator.state_dict())
    if rank == 0:
        evaluator.reset()
        evaluator.merge(states)
        results = evaluator.evaluate()

All results are percentages, with detectron2's metric names, plus ``per_class``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vocabseg.eval.instance import coco_mask_ap, to_coco_results
from vocabseg.eval.panoptic import PanopticImage, PQStat, pq_average, pq_stats_single_image
from vocabseg.eval.semantic import IOU_RULES, confusion_matrix, semantic_metrics


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on GPU; note: a device-to-host copy
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _category_name(category: Mapping[str, Any]) -> str:
    return str(category.get("name", category["id"]))


class PanopticEvaluator:
    """COCO panoptic quality, accumulated image by image.

    Args:
        categories: COCO panoptic categories, dicts with ``id``, ``name``, ``isthing``.
    """

    def __init__(self, categories: Sequence[Mapping[str, Any]]) -> None:
        self.categories = {int(c["id"]): dict(c) for c in categories}
        self.reset()

    def reset(self) -> None:
        self.stat = PQStat()

    def process(self, gt: PanopticImage, pred: PanopticImage) -> None:
        """Adds one image; ``pred`` segments need ``id`` and ``category_id`` only."""
        image_id = gt.image_id if gt.image_id is not None else pred.image_id
        self.stat += pq_stats_single_image(
            _to_numpy(gt.ids), gt.segments, _to_numpy(pred.ids), pred.segments, self.categories, image_id
        )

    def state_dict(self) -> dict[str, Any]:
        return {"pq_stat": self.stat.state_dict()}

    def merge(self, states: Iterable[Mapping[str, Any]]) -> None:
        """Adds gathered ``state_dict()``s into this evaluator."""
        for state in states:
            self.stat += PQStat.from_state_dict(state["pq_stat"])

    def evaluate(self) -> dict[str, Any]:
        """PQ/SQ/RQ for all categories, things (``_th``) and stuff (``_st``), and per class."""
        res: dict[str, Any] = {}
        for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
            summary, per_class = pq_average(self.stat, self.categories, isthing)
            res.update({f"{k.upper()}{suffix}": 100 * summary[k] for k in ("pq", "sq", "rq")})
            res[f"N{suffix}"] = summary["n"]
            if isthing is None:
                res["per_class"] = self._per_class(per_class)
        return res

    def _per_class(self, per_class: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
        out = {}
        for cat, scores in per_class.items():
            c = self.stat.per_cat.get(cat)
            counts = (c.tp, c.fp, c.fn) if c else (0, 0, 0)
            out[_category_name(self.categories[cat])] = {
                **{k.upper(): 100 * v for k, v in scores.items()},
                **dict(zip(("TP", "FP", "FN"), counts)),
            }
        return out


class SemanticEvaluator:
    """Semantic segmentation metrics from a confusion matrix summed over images.

    Args:
        class_names: one name per contiguous class index.
        ignore_label: gt value excluded from evaluation; in a prediction it means "no class".
        seen: optional per-class flags (True = seen in training) to report
            ``mIoU_seen``, ``mIoU_unseen`` and their harmonic mean ``hIoU``.
        iou_rule: "detectron2" or "mmseg": which classes have an IoU (``vocabseg.eval.semantic``).
    """

    def __init__(self, class_names: Sequence[str], ignore_label: int = 255, seen: Sequence[bool] | None = None,
                 iou_rule: str = "detectron2") -> None:
        self.class_names = list(class_names)
        self.ignore_label = ignore_label
        if iou_rule not in IOU_RULES:
            raise ValueError(f"unknown iou_rule {iou_rule!r}; use one of {', '.join(IOU_RULES)}")
        self.iou_rule = iou_rule
        self.seen = None if seen is None else list(seen)
        if self.seen is not None and len(self.seen) != len(self.class_names):
            raise ValueError(f"seen has {len(self.seen)} flags for {len(self.class_names)} classes; give one per class")
        self.reset()

    def reset(self) -> None:
        n = len(self.class_names)
        self.conf = np.zeros((n, n + 1), dtype=np.int64)  # [gt, pred (+ unpredicted)]

    def process(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Adds one image: [H, W] gt and predicted class indices (argmax already taken)."""
        self.conf += confusion_matrix(_to_numpy(gt), _to_numpy(pred), len(self.class_names), self.ignore_label)

    def state_dict(self) -> dict[str, Any]:
        return {"conf": self.conf.copy()}

    def merge(self, states: Iterable[Mapping[str, Any]]) -> None:
        for state in states:
            self.conf += np.asarray(state["conf"], dtype=np.int64)

    def evaluate(self) -> dict[str, Any]:
        """mIoU, fwIoU, mACC, pACC (+ seen/unseen/hIoU) and per-class IoU/ACC, in percent."""
        m = semantic_metrics(self.conf, self.seen, iou_rule=self.iou_rule)
        res: dict[str, Any] = {
            "mIoU": 100 * m["miou"],
            "fwIoU": 100 * m["fwiou"],
            "mACC": 100 * m["macc"],
            "pACC": 100 * m["pacc"],
        }
        if self.seen is not None:
            res.update(
                {"mIoU_seen": 100 * m["miou_seen"], "mIoU_unseen": 100 * m["miou_unseen"], "hIoU": 100 * m["hiou"]}
            )
        res["per_class"] = {
            name: {"IoU": 100 * float(i), "ACC": 100 * float(a)}
            for name, i, a in zip(self.class_names, m["iou"], m["acc"])
        }
        return res


class InstanceEvaluator:
    """Mask AP via pycocotools, gt and predictions collected image by image.

    Args:
        categories: COCO categories, dicts with ``id`` and ``name``.
    """

    def __init__(self, categories: Sequence[Mapping[str, Any]]) -> None:
        self.categories = [dict(c) for c in categories]
        self.reset()

    def reset(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.gt_annotations: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def process(self, gt: Mapping[str, Any], pred: Mapping[str, Any]) -> None:
        """Adds one image.

        Args:
            gt: ``{"image_id", "height", "width", "annotations"}``, the annotations in COCO
                form (``category_id``, ``segmentation`` RLE or polygons, ``iscrowd``,
                optional ``area``); ``gt_annotations_from_masks`` builds them from masks.
            pred: ``{"masks": [K, H, W] binary or K RLE dicts, "category_ids": [K], "scores": [K]}``
                with COCO (dataset) category ids.
        """
        image_id = gt["image_id"]
        self.images.append({"id": image_id, "height": int(gt["height"]), "width": int(gt["width"])})
        self.gt_annotations += [{**a, "image_id": image_id} for a in gt["annotations"]]
        masks = _to_numpy(pred["masks"]) if hasattr(pred["masks"], "detach") else pred["masks"]
        self.results += to_coco_results(
            image_id, masks, _to_numpy(pred["category_ids"]).tolist(), _to_numpy(pred["scores"]).tolist()
        )

    def state_dict(self) -> dict[str, Any]:
        return {"images": list(self.images), "gt_annotations": list(self.gt_annotations), "results": list(self.results)}

    def merge(self, states: Iterable[Mapping[str, Any]]) -> None:
        for state in states:
            self.images += state["images"]
            self.gt_annotations += state["gt_annotations"]
            self.results += state["results"]

    def evaluate(self) -> dict[str, Any]:
        """AP, AP50, AP75, APs, APm, APl and per-class AP, in percent."""
        ids = [img["id"] for img in self.images]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(
                f"image {dup} was processed more than once; drop duplicates (e.g. sampler padding) before evaluating"
            )
        gt = {"images": self.images, "annotations": self.gt_annotations, "categories": self.categories}
        res = coco_mask_ap(gt, self.results)
        names = {c["id"]: _category_name(c) for c in self.categories}
        res["per_class"] = {names[cat]: {"AP": ap} for cat, ap in res["per_class"].items()}
        return res
