"""Semantic, panoptic and instance results from per-query classes and masks (one image).

Inputs everywhere: ``mask_cls`` [Q, K + 1] class log-probabilities (void last) and
``mask_pred`` [Q, H, W] mask logits at the output resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vocabseg.segments import Segment


def query_class_probs(mask_cls: torch.Tensor, class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """[Q, K] per-query class probabilities: ``class_probs`` when the model gives them (used as
    they are, e.g. OVSeg's ensemble, which does not sum to one), else softmax(mask_cls) minus void."""
    return class_probs if class_probs is not None else mask_cls.softmax(-1)[..., :-1]


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor, *,
                       class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-class scores [K, H, W]: sum over queries of class prob x mask prob."""
    class_probs = query_class_probs(mask_cls, class_probs)
    return torch.einsum("qc,qhw->chw", class_probs, mask_pred.sigmoid())


def semantic_labels(mask_cls: torch.Tensor, mask_pred: torch.Tensor, *, resize=None, chunk: int = 16,
                    class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel argmax of :func:`semantic_inference` without holding all K score maps at once.

    Args:
        resize: optional function applied to each [c, h, w] block of class scores before the
            argmax (e.g. cropping the padding and resizing to the image, which the reference
            does after scoring when only semantic output is requested).
        chunk: classes scored at a time; bounds memory at chunk x H x W floats.
        class_probs: [Q, K] probabilities to use instead of softmax(mask_cls) (see query_class_probs).

    Returns:
        [H, W] int64 class index (the first maximum on ties, as ``argmax`` over all classes).
    """
    class_probs = query_class_probs(mask_cls, class_probs)  # [Q, K]
    mask_probs = mask_pred.sigmoid()
    best: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    for start in range(0, class_probs.shape[1], chunk):
        scores = torch.einsum("qc,qhw->chw", class_probs[:, start:start + chunk], mask_probs)
        if resize is not None:
            scores = resize(scores)
        value, index = scores.max(0)
        if best is None or labels is None:
            best, labels = value, index
        else:
            better = value > best  # strict: an earlier class keeps a tie
            best, labels = torch.where(better, value, best), torch.where(better, index + start, labels)
    assert labels is not None  # at least one class chunk ran
    return labels


@dataclass
class PanopticSegments:
    segment_map: torch.Tensor  # [H, W] int32, 0 = no segment
    segments: list[Segment] = field(default_factory=list)  # area left 0: the caller measures the final map


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    is_thing: list[bool],
    *,
    object_mask_threshold: float,
    overlap_threshold: float,
) -> PanopticSegments:
    """Mask2Former panoptic merging.

    Queries predicting void or scoring below ``object_mask_threshold`` are dropped;
    each pixel goes to the query with the highest score x mask probability; a query
    keeps its segment only if at least ``overlap_threshold`` of its own mask
    (prob >= 0.5) survives; stuff segments of one class are merged.
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_pred[keep].sigmoid()
    height, width = mask_pred.shape[-2:]
    result = PanopticSegments(torch.zeros((height, width), dtype=torch.int32, device=mask_pred.device))
    if cur_masks.shape[0] == 0:
        return result
    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)  # [H, W] winning query
    stuff_segment_of_class: dict[int, int] = {}
    for k in range(cur_classes.shape[0]):
        pred_class = int(cur_classes[k])
        won = owner == k
        own = cur_masks[k] >= 0.5
        mask = won & own
        won_area, own_area, area = int(won.sum()), int(own.sum()), int(mask.sum())
        if won_area == 0 or own_area == 0 or area == 0 or won_area / own_area < overlap_threshold:
            continue
        thing = bool(is_thing[pred_class])
        if not thing and pred_class in stuff_segment_of_class:
            result.segment_map[mask] = stuff_segment_of_class[pred_class]
            continue
        segment_id = len(result.segments) + 1
        if not thing:
            stuff_segment_of_class[pred_class] = segment_id
        result.segment_map[mask] = segment_id
        result.segments.append(Segment(segment_id, pred_class, thing, score=float(cur_scores[k])))
    return result


@dataclass
class Instances:
    masks: torch.Tensor  # [N, H, W] bool
    scores: torch.Tensor  # [N] class score x mean mask probability inside the mask
    classes: torch.Tensor  # [N] int64 class index


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    is_thing: list[bool] | None,
    *,
    top_k: int,
) -> Instances:
    """Top-k (query, class) pairs as instances, sorted by final score.

    Args:
        is_thing: when given (panoptic vocabularies), only thing classes are kept, as the
            official evaluation does when panoptic output is on; None keeps all classes.
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    scores = mask_cls.softmax(-1)[:, :-1]  # [Q, K]
    labels = torch.arange(num_classes, device=mask_cls.device).repeat(num_queries)
    top_scores, top_index = scores.flatten().topk(min(top_k, scores.numel()), sorted=True)
    top_labels = labels[top_index]
    masks = mask_pred[top_index // num_classes]
    if is_thing is not None:
        thing = torch.tensor(is_thing, dtype=torch.bool, device=mask_cls.device)[top_labels]
        top_scores, top_labels, masks = top_scores[thing], top_labels[thing], masks[thing]
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    final_scores = top_scores * mask_scores
    order = final_scores.argsort(descending=True, stable=True)  # best first, by the score users see
    return Instances(binary.bool()[order], final_scores[order], top_labels[order])
