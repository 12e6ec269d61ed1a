"""Where one dataset split's files live, and what they hold.

Layouts are the ones the official FC-CLIP repository prepares (its
datasets/README.md), or mmsegmentation's for the Cascade-CLIP zero-shot splits,
all relative to one datasets root, e.g.::

    ROOT/coco/{val2017, panoptic_val2017, panoptic_semseg_val2017, annotations}
    ROOT/ADEChallengeData2016/{images, annotations_detectron2, ade20k_panoptic_val, ...}
    ROOT/ADE20K_2021_17_01/{images_detectron2, annotations_detectron2}
    ROOT/pascal_ctx_d2, ROOT/pascal_voc_d2, ROOT/cityscapes, ROOT/mapillary_vistas
    ROOT/VOCdevkit/{VOC2012, VOC2010}, ROOT/coco_stuff164k/{images, annotations}   (mmseg)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vocabseg.data.errors import DatasetError, prepare_hint
from vocabseg.data.records import Record

# reader(spec, root, tasks) -> records
Reader = Callable[["SplitSpec", Path, frozenset[str]], list[Record]]


@dataclass(frozen=True)
class SplitSpec:
    """One registered split: its files (relative to the root) and meaning."""

    name: str  # registry name, e.g. "coco_panoptic_val"
    vocabulary: str  # built-in vocabulary name
    tasks: tuple[str, ...]  # tasks it has labels for
    prepare: str  # family name for `vocabseg data prepare NAME`
    download: str  # how to get the raw release, for error messages
    read: Reader  # builds the records
    images: str  # image folder
    image_ext: str = ".jpg"
    panoptic_json: str | None = None
    panoptic_dir: str | None = None
    semantic_dir: str | None = None  # label maps named <image stem><semantic_ext>
    semantic_ext: str = ".png"
    ignore_value: int = 255  # raw label value of unlabelled pixels
    label_bits: int = 8  # 8: uint8 PNG; 16: uint16 TIFF
    instance_json: str | None = None
    # Raw release folder the semantic maps are converted from, same file names,
    # for conversions that change every labelled value: a map equal to its
    # source was copied instead of converted (the unshifted-ADE20K trap).
    raw_semantic_dir: str | None = None
    # Which of "images", "panoptic", "semantic", "instance" `prepare` creates;
    # a missing one is fixed by preparing, the others by downloading.
    derived: tuple[str, ...] = ()
    # Test resize (shortest edge, longest edge cap) the official evaluations use on this split,
    # or None for the model's own default (800/1333 for FC-CLIP). Used by `vocabseg eval` and
    # by evaluation during training alike.
    test_size: tuple[int, int] | None = None
    # mmseg layouts: a text file (relative to the root) listing the split's image stems, one a line;
    # None: every image of the image folder.
    split_file: str | None = None
    # mmseg's reduce_zero_label: raw 0 (background) is ignored and every other value shifted down by one.
    reduce_zero_label: bool = False
    # Official zero-shot split: the unseen class indices. Evaluation then reports seen/unseen mIoU and
    # hIoU over this split, whatever model is evaluated; None: seen = the model's training vocabulary.
    unseen: tuple[int, ...] | None = None
    # Per-class IoU rule of the benchmark's official evaluation (see vocabseg.eval.semantic).
    iou_rule: str = "detectron2"

    def path(self, root: Path, relative: str | None) -> Path | None:
        """``root / relative``, or None for a file this split does not have."""
        return None if relative is None else Path(root) / relative

    def required_path(self, root: Path, relative: str | None, what: str) -> Path:
        """``root / relative`` for a file or folder that reading this split needs; raises if it has none."""
        if relative is None:
            raise DatasetError(f"dataset {self.name} registers no {what}, which reading it needs")
        return Path(root) / relative

    def fix(self, kind: str, root: Path) -> str:
        """How to create a missing file of ``kind`` ("images", "panoptic", ...; "release": all of it)."""
        if kind in self.derived:
            return prepare_hint(self.prepare, Path(root))
        download = self.download.replace("ROOT", str(root))
        if self.derived:
            return f"{download}, then {prepare_hint(self.prepare, Path(root))}"
        return download


def check_tasks(spec: SplitSpec, tasks: frozenset[str] | set[str] | None) -> frozenset[str]:
    """The requested tasks (default: all the split has); unknown ones raise."""
    if tasks is None:
        return frozenset(spec.tasks)
    unknown = sorted(set(tasks) - set(spec.tasks))
    if unknown:
        raise DatasetError(
            f"dataset {spec.name} has no {', '.join(unknown)} labels; it supports {', '.join(spec.tasks)}"
        )
    return frozenset(tasks)
