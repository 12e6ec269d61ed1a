"""Semantic training examples with mmseg augmentation and a zero-shot class split.

For families trained on dense per-class masks (Cascade-CLIP): each example is an mmseg-augmented
crop and its per-class target masks. The split decides what the loss may know:

- inductive: only seen classes keep their labels, renumbered to their position among the seen
  classes (the head predicts the seen classes only); unseen-class pixels become unlabelled,
  exactly as unlabelled (255) pixels.
- transductive: seen classes keep their dataset index (the head predicts all classes);
  unseen-class pixels are handed over as ``unseen_pixels`` without their class, to be
  pseudo-labelled by the criterion (``pseudo_classes`` lists the unseen indices).

Targets per image: ``labels`` [N] int64, ``masks`` [N, h, w] bool (+ ``unseen_pixels`` [h, w]
bool and ``pseudo_classes`` [U] int64 in transductive training).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from vocabseg.errors import ConfigError
from vocabseg.preprocess import normalize_and_pad
from vocabseg.train.cascade_clip.pseudo_labels import PSEUDO_CLASSES, UNSEEN_PIXELS  # the keys its criterion reads
from vocabseg.train.cascade_clip.transforms import MMSegAugment, mmseg_augment
from vocabseg.train.data import Batch, SampleKey
from vocabseg.train.sources import RawExample
from vocabseg.train.transforms import VOID_ID


@dataclass(frozen=True)
class ClassSplit:
    """Which of a dataset's classes are trained with their labels (zero-shot training)."""

    num_classes: int
    seen: tuple[int, ...]  # ascending dataset class indices
    transductive: bool = False  # unseen-class pixels get pseudo-labels instead of being unlabelled

    @property
    def unseen(self) -> tuple[int, ...]:
        seen = set(self.seen)
        return tuple(i for i in range(self.num_classes) if i not in seen)

    @property
    def head_classes(self) -> tuple[int, ...]:
        """Dataset classes of the head's channels, in order: the seen ones (inductive) or all."""
        return tuple(range(self.num_classes)) if self.transductive else self.seen

    def channel_table(self) -> np.ndarray:
        """[num_classes] head channel of each class's labels; -1: the class's pixels are not labelled."""
        table = np.full(self.num_classes, -1, dtype=np.int64)
        table[list(self.seen)] = list(self.seen) if self.transductive else range(len(self.seen))
        return table


def resolve_split(class_names: Sequence[str], *, seen: list | None, unseen: list | None,
                  transductive: bool) -> ClassSplit:
    """The split from a preset's ``zero_shot`` section: class indices or names, seen or unseen (not both).

    Raises:
        ConfigError: unknown class, both or an empty side, transductive without unseen classes.
    """
    if seen is not None and unseen is not None:
        raise ConfigError("set zero_shot.seen_classes or zero_shot.unseen_classes, not both")
    given = seen if seen is not None else unseen
    field = "zero_shot.seen_classes" if seen is not None else "zero_shot.unseen_classes"
    indices = {_class_index(item, class_names, field) for item in given or []}
    seen_set = indices if seen is not None else set(range(len(class_names))) - indices
    if not seen_set:
        raise ConfigError(f"{field} leaves no seen class; the model needs some classes to train on")
    split = ClassSplit(len(class_names), tuple(sorted(seen_set)), transductive)
    if transductive and not split.unseen:
        raise ConfigError("zero_shot.transductive=true needs unseen classes; set zero_shot.seen_classes "
                          "or zero_shot.unseen_classes")
    return split


def _class_index(item: int | str, class_names: Sequence[str], field: str) -> int:
    if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(class_names):
        return item
    if isinstance(item, str) and item in class_names:
        return list(class_names).index(item)
    raise ConfigError(f"{field}: {item!r} is not a class of the training vocabulary; give indices "
                      f"0..{len(class_names) - 1} or names such as {class_names[0]!r}")


def class_map(example: RawExample, ignore_label: int) -> np.ndarray:
    """[H, W] int64 class indices of an example's id map (``ignore_label`` where unlabelled)."""
    size = int(max([example.ids.max(initial=0)] + [s.id for s in example.segments])) + 1
    lut = np.full(size, ignore_label, dtype=np.int64)
    for segment in example.segments:
        if not segment.iscrowd:
            lut[segment.id] = segment.category
    lut[VOID_ID] = ignore_label
    return lut[example.ids]


def split_targets(labels: np.ndarray, split: ClassSplit, ignore_label: int) -> dict[str, torch.Tensor]:
    """Per-class targets of an [h, w] class map under ``split`` (see the module docstring)."""
    labelled = labels != ignore_label
    channels = np.full(labels.shape, -1, dtype=np.int64)
    channels[labelled] = split.channel_table()[labels[labelled]]  # -1: unseen class
    present = np.unique(channels[channels >= 0])
    target = {"labels": torch.from_numpy(present),
              "masks": torch.from_numpy(channels[None] == present[:, None, None])}
    if split.transductive:
        target[UNSEEN_PIXELS] = torch.from_numpy(labelled & (channels < 0))
        target[PSEUDO_CLASSES] = torch.tensor(split.unseen, dtype=torch.int64)
    return target


class DenseExample(NamedTuple):
    image: torch.Tensor  # [3, h, w] uint8, h and w <= crop size
    target: dict[str, torch.Tensor]
    key: SampleKey


class DenseTrainDataset(Dataset):
    """mmseg-augmented semantic examples of a source, indexed by ``SampleKey``."""

    def __init__(self, source: Sequence[RawExample], *, augment: MMSegAugment, split: ClassSplit):
        self.source, self.augment, self.split = source, augment, split

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: SampleKey) -> DenseExample:
        raw = self.source[key.index]
        rng = np.random.default_rng(key.seed)
        ignore = self.augment.ignore_label
        image, labels = mmseg_augment(raw.image, class_map(raw, ignore), rng, self.augment)
        image_chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return DenseExample(image_chw, split_targets(labels, self.split, ignore), key)


@dataclass(frozen=True)
class DenseCollate:
    """Normalises crops and pads them to ``size`` x ``size`` (image 0 after normalisation, as mmseg's
    ``Pad(pad_val=0)``; target masks False, i.e. unlabelled, whatever value the official pads with)."""

    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    size: int

    def __call__(self, examples: list[DenseExample]) -> Batch:
        images, _ = normalize_and_pad([e.image for e in examples], self.pixel_mean, self.pixel_std, self.size)
        return Batch(images, [self._pad(e.target) for e in examples], [e.key for e in examples])

    def _pad(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(target)
        for key in ("masks", UNSEEN_PIXELS):
            if key in target:
                value = target[key]
                padded = torch.zeros((*value.shape[:-2], self.size, self.size), dtype=torch.bool)
                padded[..., : value.shape[-2], : value.shape[-1]] = value
                out[key] = padded
        return out
