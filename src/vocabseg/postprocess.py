"""Semantic, panoptic and instance results from per-query classes and masks (one image).

Inputs everywhere: ``mask_cls`` [Q, K + 1] class log-probabilities (void last) and
``mask_pred`` [Q, H, W] mask logits at the output resolution, either a tensor or a
:class:`QueryMasks` that makes them a few queries at a time. Every merge reads the masks in
query chunks (or, for semantic scores, row tiles), so memory stays bounded at any image size
and the results equal those of the whole tensor: the same labels, segments and masks, and
scores up to float32 rounding (torch's CPU kernels round a tensor's last elements differently
from its vector body, so a chunk's sigmoid or resize can differ in the last bit).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from vocabseg.segments import Segment

QUERY_CHUNK = 8  # queries at full resolution at a time: 8 x 48 MB floats for a 12 MP photo
TILE_ELEMENTS = 2 ** 28  # Q x rows x W floats per semantic row tile (1 GiB; one image of 1.3 MP at Q = 200)
_BAND_PIXELS = 8192  # pixels per class-score product in the semantic argmax: [K, 8192] floats stay in cache


class QueryMasks:
    """[Q, H, W] mask logits made on demand for chosen queries.

    Args:
        make: maps a [n] int64 query index to their [n, H, W] logits; each query's map must not
            depend on which others are made with it (true of per-channel resizes, up to rounding).
        num_queries: Q.
        size: (H, W).
    """

    def __init__(self, make: Callable[[torch.Tensor], torch.Tensor], num_queries: int, size: tuple[int, int],
                 device: torch.device, chunk: int = QUERY_CHUNK):
        self.make, self.num_queries, self.size, self.device = make, num_queries, size, device
        self.chunk = chunk  # queries made per call

    def with_chunk(self, chunk: int) -> QueryMasks:
        """The same masks, made ``chunk`` queries at a time."""
        return QueryMasks(self.make, self.num_queries, self.size, self.device, chunk)

    @classmethod
    def of(cls, masks: torch.Tensor | QueryMasks) -> QueryMasks:
        """Wraps a full [Q, H, W] tensor (returns a QueryMasks unchanged)."""
        if isinstance(masks, QueryMasks):
            return masks
        return cls(masks.__getitem__, masks.shape[0], (masks.shape[-2], masks.shape[-1]), masks.device)

    def chunks(self, index: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, [n, H, W] logits of index[start:start + n]) for consecutive chunks of ``index``."""
        for start in range(0, index.shape[0], self.chunk):
            yield start, self.make(index[start:start + self.chunk])

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """[Q, stop - start, W] rows of every query. Costs a pass over all queries at full size (a
        band resized on its own would round differently, and near-ties could change labels)."""
        every = torch.arange(self.num_queries, device=self.device)
        band: torch.Tensor | None = None
        for first, block in self.chunks(every):
            if band is None:  # one copy of each block's rows, straight into the band
                band = block.new_empty((self.num_queries, block[:, start:stop].shape[1], block.shape[-1]))
            band[first:first + block.shape[0]] = block[:, start:stop]
        assert band is not None  # Q >= 1
        return band


def query_class_probs(mask_cls: torch.Tensor, class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """[Q, K] per-query class probabilities: ``class_probs`` when the model gives them (used as
    they are, e.g. OVSeg's ensemble, which does not sum to one), else softmax(mask_cls) minus void."""
    return class_probs if class_probs is not None else mask_cls.softmax(-1)[..., :-1]


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor, *,
                       class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-class scores [K, H, W]: sum over queries of class prob x mask prob."""
    class_probs = query_class_probs(mask_cls, class_probs)
    return torch.einsum("qc,qhw->chw", class_probs, mask_pred.sigmoid())


def semantic_labels(mask_cls: torch.Tensor, mask_pred: torch.Tensor | QueryMasks, *, resize=None, chunk: int = 16,
                    class_probs: torch.Tensor | None = None, tile_elements: int = TILE_ELEMENTS) -> torch.Tensor:
    """Per-pixel argmax of :func:`semantic_inference` without holding all K score maps at once.

    Args:
        resize: optional function applied to each [c, h, w] block of class scores before the
            argmax (e.g. cropping the padding and resizing to the image, which the reference
            does after scoring when only semantic output is requested).
        chunk: classes taken together: per ``resize`` call, or (without ``resize``) the bound
            chunk x H x W on the floats of one pixel band's scores.
        class_probs: [Q, K] probabilities to use instead of softmax(mask_cls) (see query_class_probs).
        tile_elements: for :class:`QueryMasks`, Q x rows x W floats made per row tile (each
            tile is one pass over the queries); with ``resize``, classes x H x W scores computed
            per matrix product (resized ``chunk`` classes at a time).

    Returns:
        [H, W] int64 class index (the first maximum on ties, as ``argmax`` over all classes).
    """
    if isinstance(mask_pred, QueryMasks):
        return _tiled_semantic_labels(mask_cls, mask_pred, chunk, class_probs, tile_elements)
    class_probs = query_class_probs(mask_cls, class_probs)  # [Q, K]
    mask_probs = mask_pred.sigmoid()
    if resize is None:
        return _pixelwise_argmax(class_probs, mask_probs, chunk)
    best: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    for start, scores in _class_score_chunks(class_probs, mask_probs, chunk, tile_elements):
        value, index = resize(scores).max(0)
        if best is None or labels is None:
            best, labels = value, index
        else:
            better = value > best  # strict: an earlier class keeps a tie
            best, labels = torch.where(better, value, best), torch.where(better, index + start, labels)
    assert labels is not None  # at least one class chunk ran
    return labels


def _class_score_chunks(class_probs: torch.Tensor, mask_probs: torch.Tensor, chunk: int,
                        tile_elements: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first class, [<= chunk, H, W] scores) of consecutive class chunks. Scores are computed for
    as many classes as fit ``tile_elements`` per matrix product (a narrow product of 16 classes
    runs at a fraction of the CPU's speed), then handed out ``chunk`` classes at a time."""
    num_queries, height, width = mask_probs.shape
    flat = mask_probs.reshape(num_queries, height * width)  # [Q, HW]
    wide = max(chunk, tile_elements // max(1, height * width))
    for first in range(0, class_probs.shape[1], wide):
        scores = (class_probs[:, first:first + wide].t() @ flat).view(-1, height, width)  # [w, H, W]
        for offset in range(0, scores.shape[0], chunk):
            yield first + offset, scores[offset:offset + chunk]


def _pixelwise_argmax(class_probs: torch.Tensor, mask_probs: torch.Tensor, chunk: int) -> torch.Tensor:
    """[H, W] argmax over classes of class_probs [Q, K] . mask_probs [Q, H, W], all K classes of a
    pixel band at once (one wide matrix product per band, as the reference's single einsum, instead
    of a narrow one per class chunk) in bands of at most ``_BAND_PIXELS`` pixels, whose [K, band]
    scores stay in cache for the argmax (and never exceed chunk x H x W floats)."""
    num_queries, height, width = mask_probs.shape
    flat = mask_probs.reshape(num_queries, height * width)  # [Q, HW]
    by_class = class_probs.t()  # [K, Q]
    step = max(1, min(_BAND_PIXELS, chunk * height * width // max(1, by_class.shape[0])))
    labels = torch.empty(height * width, dtype=torch.int64, device=mask_probs.device)
    for start in range(0, height * width, step):
        labels[start:start + step] = (by_class @ flat[:, start:start + step]).argmax(0)  # first max on ties
    return labels.view(height, width)


def _tiled_semantic_labels(mask_cls: torch.Tensor, masks: QueryMasks, chunk: int, class_probs: torch.Tensor | None,
                           tile_elements: int) -> torch.Tensor:
    """:func:`semantic_labels` in row tiles of Q x rows x W <= ``tile_elements`` logits (pixels are independent)."""
    height, width = masks.size
    step = max(1, tile_elements // max(1, masks.num_queries * width))
    labels = torch.empty((height, width), dtype=torch.int64, device=masks.device)
    for top in range(0, height, step):
        labels[top:top + step] = semantic_labels(mask_cls, masks.rows(top, top + step), chunk=chunk,
                                                 class_probs=class_probs)
    return labels


@dataclass
class PanopticSegments:
    segment_map: torch.Tensor  # [H, W] int32, 0 = no segment
    segments: list[Segment] = field(default_factory=list)  # area left 0: the caller measures the final map


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor | QueryMasks,
    is_thing: list[bool],
    *,
    object_mask_threshold: float,
    overlap_threshold: float,
) -> PanopticSegments:
    """Mask2Former panoptic merging.

    Queries predicting void or scoring below ``object_mask_threshold`` are dropped;
    each pixel goes to the query with the highest score x mask probability; a query
    keeps its segment only if at least ``overlap_threshold`` of its own mask
    (prob >= 0.5) survives; stuff segments of one class are merged. Two passes over the
    kept queries' masks (winners, then segments) hold one chunk of them at a time.
    """
    masks = QueryMasks.of(mask_pred)
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = mask_cls.softmax(-1).max(-1)
    kept = (labels.ne(num_classes) & (scores > object_mask_threshold)).nonzero()[:, 0]
    cur_scores, cur_classes = scores[kept], labels[kept]
    result = PanopticSegments(torch.zeros(masks.size, dtype=torch.int32, device=masks.device))
    if kept.shape[0] == 0:
        return result
    owner = _winning_query(masks, kept, cur_scores)  # [H, W] index into kept
    won_areas = torch.bincount(owner.flatten(), minlength=kept.shape[0]).tolist()  # [len(kept)]
    winners = torch.tensor([k for k, area in enumerate(won_areas) if area > 0], dtype=torch.int64)
    stuff_segment_of_class: dict[int, int] = {}
    for start, block in masks.chunks(kept[winners.to(kept.device)]):  # queries that win no pixel keep no segment
        for j, logits in enumerate(block):
            k = int(winners[start + j])
            pred_class = int(cur_classes[k])
            won = owner == k
            own = logits.sigmoid() >= 0.5
            mask = won & own
            won_area, own_area, area = won_areas[k], int(own.sum()), int(mask.sum())
            if own_area == 0 or area == 0 or won_area / own_area < overlap_threshold:
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


def _winning_query(masks: QueryMasks, kept: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[H, W] argmax over the kept queries of score x mask probability (the first on ties)."""
    best: torch.Tensor | None = None
    owner: torch.Tensor | None = None
    for start, block in masks.chunks(kept):
        weighted = scores[start:start + block.shape[0]].view(-1, 1, 1) * block.sigmoid()  # [n, H, W]
        # one max() pass gives values and indices (the first maximum, as argmax): several times
        # faster on CPU than argmax followed by a gather
        value, index = weighted.max(0)
        if best is None or owner is None:
            best, owner = value, index
        else:
            better = value > best  # strict: an earlier query keeps a tie, as argmax over all
            best, owner = torch.where(better, value, best), torch.where(better, index + start, owner)
    assert owner is not None  # at least one query was kept
    return owner


@dataclass
class Instances:
    masks: torch.Tensor  # [N, H, W] bool
    scores: torch.Tensor  # [N] class score x mean mask probability inside the mask
    classes: torch.Tensor  # [N] int64 class index


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor | QueryMasks,
    is_thing: list[bool] | None,
    *,
    top_k: int,
) -> Instances:
    """Top-k (query, class) pairs as instances, sorted by final score.

    Args:
        is_thing: when given (panoptic vocabularies), only thing classes are kept, as the
            official evaluation does when panoptic output is on; None keeps all classes.
    """
    masks = QueryMasks.of(mask_pred)
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    scores = mask_cls.softmax(-1)[:, :-1]  # [Q, K]
    labels = torch.arange(num_classes, device=mask_cls.device).repeat(num_queries)
    top_scores, top_index = scores.flatten().topk(min(top_k, scores.numel()), sorted=True)
    top_labels, top_queries = labels[top_index], top_index // num_classes
    if is_thing is not None:
        thing = torch.tensor(is_thing, dtype=torch.bool, device=mask_cls.device)[top_labels]
        top_scores, top_labels, top_queries = top_scores[thing], top_labels[thing], top_queries[thing]
    binary = torch.empty((top_queries.shape[0], *masks.size), dtype=torch.bool, device=masks.device)
    mask_scores = torch.empty_like(top_scores)
    for start, block in masks.chunks(top_queries):  # [n, H, W] logits
        inside = (block > 0).float()
        stop = start + block.shape[0]
        mask_scores[start:stop] = ((block.sigmoid().flatten(1) * inside.flatten(1)).sum(1)
                                   / (inside.flatten(1).sum(1) + 1e-6))
        binary[start:stop] = inside.bool()
    final_scores = top_scores * mask_scores
    order = final_scores.argsort(descending=True, stable=True)  # best first, by the score users see
    return Instances(binary[order], final_scores[order], top_labels[order])

