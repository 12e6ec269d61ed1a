"""Fast mode's region policy: fewer masked crops through the CLIP, the same answer almost always.

OVSeg's region pass (one masked crop per proposal through the CLIP ViT) is most of its time,
and exact mode is near its float32 floor there. Fast mode sends fewer crops:

- **void-dominated proposals** (proposal void probability >= ``void_threshold``) send none:
  panoptic and instance merging drop them anyway, but the semantic sum does not (OVSeg's
  ensemble p^(1-w) * c^w leaves the CLIP factor unscaled by void, and the small p^(1-w) is
  not small enough), so they reuse the CLIP scores of the sent crop their mask overlaps most
  (without overlap: their own renormalised distribution, what the CLIP would have to overturn);
- **near-duplicates** (binary masks with IoU >= ``iou_threshold``) send one crop, the proposal
  the classifier is surest of, and the others reuse its CLIP scores (nearly the same crop).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

VOID_THRESHOLD = 0.9  # proposals at least this sure of "no object" send no crop
IOU_THRESHOLD = 0.7  # masks overlapping this much share one crop (measured: benchmarks/ovseg_region_policy.py)


class RegionPlan(NamedTuple):
    """Which proposals' crops go through the CLIP, and whose CLIP scores the others reuse."""

    sent: torch.Tensor  # [Q] bool: the crop goes through the CLIP
    # [Q] int64: the sent query whose CLIP scores a query uses: itself, its duplicate group's leader,
    # or for a void-dominated query the sent query its mask overlaps most (-1: none, own guess)
    source: torch.Tensor


def plan_regions(proposal_probs: torch.Tensor, bin_masks: torch.Tensor, valid: torch.Tensor, *,
                 void_threshold: float | None = None, iou_threshold: float | None = None) -> RegionPlan:
    """The fast-mode plan for one image (thresholds: the module's constants when None, read at call time).

    Args:
        proposal_probs: [Q, K + 1] proposal class probabilities, void last.
        bin_masks: [Q, h, w] bool thresholded masks (any resolution: only IoUs are read).
        valid: [Q] bool: the query has a non-empty mask (a crop exists).
    """
    void_threshold = VOID_THRESHOLD if void_threshold is None else void_threshold
    iou_threshold = IOU_THRESHOLD if iou_threshold is None else iou_threshold
    num_queries = proposal_probs.shape[0]
    source = torch.full((num_queries,), -1, dtype=torch.int64, device=valid.device)
    candidates = valid & (proposal_probs[:, -1] < void_threshold)
    index = candidates.nonzero()[:, 0]
    if index.numel() == 0:
        return RegionPlan(torch.zeros_like(valid), source)
    order = index[proposal_probs[index, :-1].max(-1).values.argsort(descending=True, stable=True)]  # surest first
    duplicates = _mask_iou(bin_masks[order]) >= iou_threshold  # [N, N]
    representative = _greedy_groups(duplicates.tolist())  # note: one device sync
    source[order] = order[torch.tensor(representative, device=valid.device)]
    sent = source.eq(torch.arange(num_queries, device=valid.device))
    return RegionPlan(sent, _nearest_sent(source, sent, bin_masks, valid & ~candidates))


def _nearest_sent(source: torch.Tensor, sent: torch.Tensor, bin_masks: torch.Tensor,
                  skipped: torch.Tensor) -> torch.Tensor:
    """``source`` with each ``skipped`` query's entry set to the sent query its mask overlaps most (-1: none)."""
    skipped_index, sent_index = skipped.nonzero()[:, 0], sent.nonzero()[:, 0]
    if skipped_index.numel() == 0 or sent_index.numel() == 0:
        return source
    iou = _mask_iou(bin_masks[torch.cat([skipped_index, sent_index])])[: len(skipped_index), len(skipped_index):]
    best = iou.max(-1)  # over the sent queries: [S] for the S skipped ones
    source[skipped_index] = torch.where(best.values > 0, sent_index[best.indices], -1)
    return source


def _mask_iou(bin_masks: torch.Tensor) -> torch.Tensor:
    """[N, N] IoUs of [N, h, w] bool masks; float32 even under autocast (bf16 would round pixel counts)."""
    with torch.autocast(bin_masks.device.type, enabled=False):
        flat = bin_masks.flatten(1).float()  # [N, P]
        inter = flat @ flat.t()  # [N, N] intersections, exact up to 2^24 pixels
        area = flat.sum(1)
        return inter / (area[:, None] + area[None, :] - inter).clamp(min=1)


def _greedy_groups(duplicates: list[list[bool]]) -> list[int]:
    """Each mask's group leader: a mask joins the first (surest) leader it duplicates, else leads."""
    leader = list(range(len(duplicates)))
    for i, row in enumerate(duplicates):
        if leader[i] != i:
            continue
        for j in range(i + 1, len(row)):
            if row[j] and leader[j] == j:
                leader[j] = i
    return leader
