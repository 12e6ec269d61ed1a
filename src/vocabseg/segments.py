"""The one panoptic segment type: ground-truth annotations and predictions alike."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic id map."""

    id: int  # value of its pixels in the panoptic id map (R + 256 G + 256^2 B for PNGs)
    category: int  # contiguous class index in the vocabulary
    is_thing: bool  # countable object (from the vocabulary) vs. stuff region
    iscrowd: bool = False  # ground truth: a group of things annotated as one region
    area: int = 0  # pixels (ground truth: as the json states it)
    score: float | None = None  # predictions: the class probability of the query that made it
    class_name: str | None = None  # predictions: the vocabulary's display name of ``category``
