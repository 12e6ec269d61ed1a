"""Typed records: one per image, with the annotations of each task it has.

Category fields are always *contiguous* indices into the dataset's built-in
vocabulary (``vocabseg.text.builtin.get_vocabulary(dataset.vocabulary)``);
readers translate the ids the annotation files use. Paths are absolute
whenever the ``root`` given to the reader was.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from vocabseg.models import TASKS  # the tasks a record can carry labels for (re-exported)
from vocabseg.segments import Segment
from vocabseg.text.builtin import get_vocabulary
from vocabseg.text.vocabulary import Vocabulary

__all__ = ["IGNORE_LABEL", "TASKS", "Dataset", "InstanceAnnotation", "InstanceLabel", "PanopticLabel", "Record",
           "Segment", "SemanticLabel"]

# Value of unlabelled pixels in the maps returned by ``load_semantic``. Not 255:
# ADE20K-847 and Pascal Context 459 have more than 255 classes.
IGNORE_LABEL = -1


@dataclass(frozen=True)
class PanopticLabel:
    """A COCO-format panoptic PNG and the segments it contains."""

    png: Path  # RGB PNG; pixel id 0 is VOID (unlabelled)
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class SemanticLabel:
    """A label map file and how to turn its raw values into class indices."""

    path: Path  # 8-bit PNG, palette PNG or 16-bit TIFF
    ignore_value: int  # raw value of unlabelled pixels (255; 65 Mapillary; 65535 16-bit)
    # Raw value -> contiguous index (IGNORE_LABEL to drop). None: the raw value
    # already is the index, as after every `vocabseg data prepare`.
    id_map: tuple[int, ...] | None = None


@dataclass(frozen=True)
class InstanceAnnotation:
    """One object of an instance annotation, COCO style."""

    category: int  # contiguous class index
    iscrowd: bool
    bbox: tuple[float, float, float, float]  # x, y, width, height in pixels
    area: float
    # COCO polygons (list) or RLE (dict); an int means "the pixels of this
    # segment id in the record's panoptic PNG" (Cityscapes, whose instances
    # come from the panoptic conversion).
    segmentation: Any


@dataclass(frozen=True)
class InstanceLabel:
    """The instance annotations of one image."""

    source: Path  # COCO instances json, or the panoptic PNG for Cityscapes
    image_id: int | str  # image id in ``source``
    annotations: tuple[InstanceAnnotation, ...]


@dataclass(frozen=True)
class Record:
    """One image and its annotations; a task's field is None if not read."""

    image: Path
    image_id: int | str  # the id the official evaluation uses
    height: int
    width: int
    panoptic: PanopticLabel | None = None
    semantic: SemanticLabel | None = None
    instances: InstanceLabel | None = None


@dataclass(frozen=True)
class Dataset(Sequence[Record]):
    """The records of one dataset split, with what they are labelled against."""

    name: str  # registry name, e.g. "ade20k_panoptic_val"
    vocabulary: str  # built-in vocabulary name, e.g. "ade20k_150"
    tasks: tuple[str, ...]  # tasks the records carry labels for
    root: Path  # the datasets root it was read from
    records: tuple[Record, ...]
    test_size: tuple[int, int] | None = None  # official test resize (min, max) of this split; None: the model's
    unseen: tuple[int, ...] | None = None  # official zero-shot unseen class indices; None: no official split
    iou_rule: str = "detectron2"  # per-class IoU rule of the official evaluation (vocabseg.eval.semantic)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | Sequence[Record]:
        return self.records[index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def get_vocabulary(self) -> Vocabulary:
        """The built-in vocabulary whose class order the category indices use."""
        return get_vocabulary(self.vocabulary)
