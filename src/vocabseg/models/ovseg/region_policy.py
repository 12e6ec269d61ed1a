"""Fast mode's region policy: fewer masked crops through the CLIP, the same answer almost always.

OVSeg's region pass (one masked crop per proposal through the CLIP ViT) is most of its time,
and exact mode is near its float32 floor there. Fast mode sends fewer crops:

- **void-dominated proposals** (proposal void probability >= ``void_threshold``) send none:
  panoptic and instance merging drop them anyway, and in the semantic sum their classes carry
  the proposal's own distribution (what the CLIP would have to overturn);
- **near-duplicates** (binary masks with IoU >= ``iou_threshold``) send one crop, the proposal
  the classifier is surest of, and the others reuse its CLIP scores (nearly the same crop).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

VOID_THRESHOLD = 0.9  # proposals at least this sure of "no object" send no crop
IOU_THRESHOLD = 0.8  # masks overlapping this much share one crop (measured: benchmarks/ovseg_region_policy.py)


class RegionPlan(NamedTuple):
    """Which proposals' crops go through the CLIP, and whose CLIP scores the others reuse."""

    sent: torch.Tensor  # [Q] bool: the crop goes through the CLIP
    source: torch.Tensor  # [Q] int64: the sent query whose CLIP scores a query uses (-1: none, own guess)


def plan_regions(proposal_probs: torch.Tensor, bin_masks: torch.Tensor, valid: torch.Tensor, *,
                 void_threshold: float = VOID_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> RegionPlan:
    """The fast-mode plan for one image.

    Args:
        proposal_probs: [Q, K + 1] proposal class probabilities, void last.
        bin_masks: [Q, h, w] bool thresholded masks (any resolution: only IoUs are read).
        valid: [Q] bool: the query has a non-empty mask (a crop exists).
    """
    num_queries = proposal_probs.shape[0]
    source = torch.full((num_queries,), -1, dtype=torch.int64, device=valid.device)
    candidates = valid & (proposal_probs[:, -1] < void_threshold)
    index = candidates.nonzero()[:, 0]
    if index.numel() == 0:
        return RegionPlan(torch.zeros_like(valid), source)
    order = index[proposal_probs[index, :-1].max(-1).values.argsort(descending=True, stable=True)]  # surest first
    flat = bin_masks[order].flatten(1).float()  # [N, P]
    inter = flat @ flat.t()  # [N, N] intersections
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    representative = torch.arange(order.numel(), device=valid.device)
    for i in range(order.numel()):  # greedy: a query joins the first (surest) sent query it duplicates
        if int(representative[i]) != i:
            continue
        later = (iou[i] >= iou_threshold) & (representative == torch.arange(order.numel(), device=valid.device))
        later[: i + 1] = False
        representative[later] = i
    source[order] = order[representative]
    return RegionPlan(source.eq(torch.arange(num_queries, device=valid.device)), source)
