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
TILE_ELEMENTS = 2 ** 28  # Q x H x W floats of masks shared by the tasks (1 GiB; one image of 1.3 MP at Q = 200)
# Q x rows x W floats per semantic row tile (2 GiB). Each tile resizes every query's rows above its end, so
# fewer tiles cost fewer rows: 12 MP photo, Q = 250, 6 instead of 12 tiles, semantic 61 -> 13 s, peak +0.5 GB
SEMANTIC_TILE_ELEMENTS = 2 ** 29
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
                 device: torch.device, chunk: int = QUERY_CHUNK,
                 make_top: Callable[[torch.Tensor, int], torch.Tensor] | None = None):
        self.make, self.num_queries, self.size, self.device = make, num_queries, size, device
        self.chunk = chunk  # queries made per call
        # optional: (index, stop) -> [n, stop, W], the first ``stop`` rows of ``make(index)``, the same bits
        self.make_top = make_top

    def with_chunk(self, chunk: int) -> QueryMasks:
        """The same masks, made ``chunk`` queries at a time."""
        return QueryMasks(self.make, self.num_queries, self.size, self.device, chunk, self.make_top)

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

    def rows(self, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """[Q, stop - start, W] rows of every query, written into ``out`` when it is large enough
        (a buffer reused across calls). Costs a pass over all queries' first ``stop`` rows with
        ``make_top``, else at full size (a band resized on its own rounds differently, and
        near-ties could change labels)."""
        every = torch.arange(self.num_queries, device=self.device)
        shape = (self.num_queries, stop - start, self.size[1])
        numel = shape[0] * shape[1] * shape[2]
        if out is None or out.numel() < numel:
            out = torch.empty(numel, device=self.device)
        band = out.view(-1)[:numel].view(shape)
        for first in range(0, self.num_queries, self.chunk):
            index = every[first:first + self.chunk]
            block = self.make(index) if self.make_top is None else self.make_top(index, stop)
            band[first:first + block.shape[0]] = block[:, start:stop]
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
                    class_probs: torch.Tensor | None = None, tile_elements: int | None = None) -> torch.Tensor:
    """Per-pixel argmax of :func:`semantic_inference` without holding all K score maps at once.

    Args:
        resize: optional function applied to each [c, h, w] block of class scores before the
            argmax (e.g. cropping the padding and resizing to the image, which the reference
            does after scoring when only semantic output is requested).
        chunk: classes taken together: per ``resize`` call, or (without ``resize``) the bound
            chunk x H x W on the floats of one pixel band's scores.
        class_probs: [Q, K] probabilities to use instead of softmax(mask_cls) (see query_class_probs).
        tile_elements: for :class:`QueryMasks`, Q x rows x W floats made per row tile (each
            tile is one pass over the queries; default SEMANTIC_TILE_ELEMENTS); with ``resize``
            (default TILE_ELEMENTS), classes x H x W scores computed
            per matrix product (resized ``chunk`` classes at a time).

    Returns:
        [H, W] int64 class index (the first maximum on ties, as ``argmax`` over all classes).
    """
    if isinstance(mask_pred, QueryMasks):
        return _tiled_semantic_labels(mask_cls, mask_pred, chunk, class_probs, tile_elements or SEMANTIC_TILE_ELEMENTS)
    class_probs = query_class_probs(mask_cls, class_probs)  # [Q, K]
    mask_probs = mask_pred.sigmoid()
    if resize is None:
        return _pixelwise_argmax(class_probs, mask_probs, chunk)
    best: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    for start, scores in _class_score_chunks(class_probs, mask_probs, chunk, tile_elements or TILE_ELEMENTS):
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
        _first_argmax(by_class @ flat[:, start:start + step], out=labels[start:start + step])
    return labels.view(height, width)


def _first_argmax(scores: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` [P] int64 = scores [K, P].argmax(0) (the first maximum on ties), for finite scores.

    One strict comparison per class along contiguous rows: torch's argmax over dim 0 of a short,
    wide matrix walks it across rows and took 5.5 ms per [6, 8192] band, this 0.15 ms (a third of
    a 12 MP photo's semantic time went there). Scores are sums of probabilities, never NaN."""
    best = scores[0].clone()
    out.zero_()
    for k in range(1, scores.shape[0]):
        better = torch.gt(scores[k], best)  # strict: an earlier class keeps a tie
        torch.maximum(best, scores[k], out=best)
        out.masked_fill_(better, k)
    return out


def _tiled_semantic_labels(mask_cls: torch.Tensor, masks: QueryMasks, chunk: int, class_probs: torch.Tensor | None,
                           tile_elements: int) -> torch.Tensor:
    """:func:`semantic_labels` in row tiles of Q x rows x W <= ``tile_elements`` logits (pixels are independent).

    One band buffer serves every tile, and its sigmoid is taken in place: a fresh gigabyte per
    tile made the kernel zero new pages each time (most of a big photo's time was system time)."""
    height, width = masks.size
    step = max(1, tile_elements // max(1, masks.num_queries * width))
    probs = query_class_probs(mask_cls, class_probs)  # [Q, K]
    labels = torch.empty((height, width), dtype=torch.int64, device=masks.device)
    band: torch.Tensor | None = None
    for top in range(0, height, step):
        band = masks.rows(top, min(height, top + step), out=band)
        labels[top:top + step] = _pixelwise_argmax(probs, torch.sigmoid(band, out=band), chunk)
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
    (prob >= 0.5) survives; stuff segments of one class are merged. One pass over the kept
    queries' masks, a chunk at a time, gathers every pixel's owner, whether the owner's own
    mask covers it, and each query's own area; the segments are then decided per query from
    those counts and drawn with one lookup (the reference's per-query loop, vectorised).
    """
    masks = QueryMasks.of(mask_pred)
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = mask_cls.softmax(-1).max(-1)
    kept = (labels.ne(num_classes) & (scores > object_mask_threshold)).nonzero()[:, 0]
    cur_scores, cur_classes = scores[kept], labels[kept]
    result = PanopticSegments(torch.zeros(masks.size, dtype=torch.int32, device=masks.device))
    if kept.shape[0] == 0:
        return result
    owner, owned, own_areas = _winning_query(masks, kept, cur_scores)
    won_areas = torch.bincount(owner.flatten(), minlength=kept.shape[0]).tolist()  # [len(kept)]
    areas = torch.bincount(owner[owned], minlength=kept.shape[0]).tolist()  # own mask & won, per query
    segment_of = [0] * kept.shape[0]  # kept query -> segment id (0: none)
    stuff_segment_of_class: dict[int, int] = {}
    for k, (won_area, own_area, area) in enumerate(zip(won_areas, own_areas.tolist(), areas)):
        if won_area == 0 or own_area == 0 or area == 0 or won_area / own_area < overlap_threshold:
            continue
        pred_class = int(cur_classes[k])
        thing = bool(is_thing[pred_class])
        if not thing and pred_class in stuff_segment_of_class:
            segment_of[k] = stuff_segment_of_class[pred_class]
            continue
        segment_of[k] = len(result.segments) + 1
        if not thing:
            stuff_segment_of_class[pred_class] = segment_of[k]
        result.segments.append(Segment(segment_of[k], pred_class, thing, score=float(cur_scores[k])))
    lookup = torch.tensor(segment_of, dtype=torch.int32, device=masks.device)
    result.segment_map = torch.where(owned, lookup[owner], result.segment_map)
    return result


def _winning_query(masks: QueryMasks, kept: torch.Tensor,
                   scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the kept queries' masks, a chunk at a time.

    Returns:
        owner [H, W] int64: argmax over the kept queries of score x mask probability (the first on ties);
        owned [H, W] bool: the owner's own mask (probability >= 0.5) covers the pixel;
        own_areas [len(kept)] int64: each query's own mask area.
    """
    size, device = masks.size, masks.device
    best = torch.full(size, -1.0, device=device)  # below any score x probability
    owner = torch.zeros(size, dtype=torch.int64, device=device)
    owned = torch.zeros(size, dtype=torch.bool, device=device)
    own_areas = torch.empty(kept.shape[0], dtype=torch.int64, device=device)
    # per-pixel results of a chunk, written in place (at 12 MP each is 50-100 MB)
    value, index = torch.empty(size, device=device), torch.empty(size, dtype=torch.int64, device=device)
    better, covered = torch.empty(size, dtype=torch.bool, device=device), torch.empty(size, dtype=torch.bool,
                                                                                       device=device)
    probs = weighted = own = None
    for start, block in masks.chunks(kept):
        stop = start + block.shape[0]
        probs = torch.sigmoid(block, out=_like(probs, block))  # [n, H, W]
        own = torch.ge(probs, 0.5, out=_like(own, block, torch.bool))
        own_areas[start:stop] = _counts(own)
        weighted = torch.mul(scores[start:stop].view(-1, 1, 1), probs, out=_like(weighted, block))
        # one max() pass gives values and indices (the first maximum, as argmax): several times
        # faster on CPU than argmax followed by a gather
        torch.max(weighted, 0, out=(value, index))
        torch.gather(own, 0, index[None], out=covered[None])
        torch.gt(value, best, out=better)  # strict: an earlier query keeps a tie, as argmax over all
        torch.where(better, value, best, out=best)
        torch.where(better, index.add_(start), owner, out=owner)
        torch.where(better, covered, owned, out=owned)
    return owner, owned, own_areas


def _counts(flags: torch.Tensor) -> torch.Tensor:
    """[n] int64 True pixels of each [n, H, W] bool map: count_nonzero of one flat map at a time is
    about 6x faster than a bool sum over dim 1 (0.06 against 0.4 s for 8 maps of 12 MP)."""
    return torch.stack([torch.count_nonzero(m) for m in flags.flatten(1)]) if flags.shape[0] else \
        torch.zeros(0, dtype=torch.int64, device=flags.device)


def _like(buffer: torch.Tensor | None, block: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A ``block``-shaped tensor of ``dtype`` backed by ``buffer`` when it is large enough (reused per chunk)."""
    dtype = dtype or block.dtype
    if buffer is None or buffer.numel() < block.numel():
        return torch.empty(block.shape, dtype=dtype, device=block.device)
    return buffer.view(-1)[:block.numel()].view(block.shape)


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
    # a query in several top pairs (one per class) is made once; chunk buffers are reused
    queries, pair_of = torch.unique(top_queries, return_inverse=True)  # [U], [N] -> index into queries
    probs = inside = None
    for start, block in masks.chunks(queries):  # [n, H, W] logits
        inside = torch.gt(block, 0, out=_like(inside, block, torch.bool))
        probs = torch.sigmoid(block, out=_like(probs, block))
        # [n] pixels inside each mask: integer counts are exact in float32 below 2 ** 24 pixels in any
        # order; above, the float sum rounds by its own order, so it stays
        area = (_counts(inside).float() if inside[0].numel() < 2 ** 24
                else inside.flatten(1).sum(1, dtype=torch.float32))
        scores = probs.mul_(inside).flatten(1).sum(1) / (area + 1e-6)  # mean probability inside
        pairs = ((pair_of >= start) & (pair_of < start + block.shape[0])).nonzero()[:, 0]  # this chunk's
        mask_scores[pairs] = scores[pair_of[pairs] - start]
        binary[pairs] = inside[pair_of[pairs] - start]
    final_scores = top_scores * mask_scores
    order = final_scores.argsort(descending=True, stable=True)  # best first, by the score users see
    return Instances(binary[order], final_scores[order], top_labels[order])

