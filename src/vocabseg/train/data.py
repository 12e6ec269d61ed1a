"""Training data: an infinite, sharded sample stream; LSJ examples; padded batches.

The sample stream is global and infinite: epoch ``e`` is a permutation of the
dataset drawn from ``(seed, e)``, and epochs follow each other. Iteration ``t``
consumes ``G = batch_per_gpu x world_size x accum_steps`` consecutive positions.
They are cut into micro-batches of ``batch_per_gpu``; micro-batch ``m = a x
world_size + rank`` goes to ``rank`` at accumulation step ``a``. Every sample
carries its stream position and a seed derived from it (``SampleKey``), so the
data of a run depends only on the seed and the effective batch: 2 processes x 1
accumulation step see exactly what 1 process x 2 steps sees, and a resumed run
continues the stream where the checkpoint left it.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vocabseg.errors import DatasetError
from vocabseg.preprocess import normalize_and_pad
from vocabseg.train.rng import AUGMENT, derive_seed
from vocabseg.train.sources import RawExample
from vocabseg.train.transforms import lsj_targets


@dataclass(frozen=True)
class SampleKey:
    """What the sampler hands the dataset."""

    index: int  # example index in the source
    seed: int  # augmentation seed, derived from (run seed, position)
    position: int  # place in the global sample stream


class StreamSampler:
    """Batch sampler: this rank's micro-batches of the global stream, forever.

    Args:
        size: examples in the dataset.
        start_position: stream position of the first sample of the first
            iteration (``iteration x G`` for a run that kept one effective batch).
    """

    def __init__(self, size: int, *, seed: int, rank: int, world_size: int, batch_per_gpu: int, accum_steps: int,
                 start_position: int = 0):
        if size < 1:
            raise DatasetError("the training set is empty; check the data section of the preset (e.g. data.num_images)")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.batch_per_gpu, self.accum_steps, self.start_position = batch_per_gpu, accum_steps, start_position
        self._permutations: dict[int, np.ndarray] = {}  # the last two epochs' (a micro-batch may span two)

    @property
    def global_batch(self) -> int:
        return self.batch_per_gpu * self.world_size * self.accum_steps

    def positions(self, step: int, accum_index: int) -> range:
        """Stream positions of this rank's micro-batch ``accum_index`` of the ``step``-th iteration from the start."""
        micro = accum_index * self.world_size + self.rank
        first = self.start_position + step * self.global_batch + micro * self.batch_per_gpu
        return range(first, first + self.batch_per_gpu)

    def key(self, position: int) -> SampleKey:
        epoch, offset = divmod(position, self.size)
        return SampleKey(int(self._permutation(epoch)[offset]), derive_seed(self.seed, AUGMENT, position), position)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) == 2:
                del self._permutations[min(self._permutations)]
            self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._permutations[epoch]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in itertools.count():
            for accum_index in range(self.accum_steps):
                yield [self.key(p) for p in self.positions(step, accum_index)]


class TrainExample(NamedTuple):
    image: torch.Tensor  # [3, h, w] uint8
    labels: torch.Tensor  # [N] int64
    masks: torch.Tensor  # [N, h, w] bool
    key: SampleKey


class TrainDataset(Dataset):
    """LSJ-augmented examples of a source, indexed by ``SampleKey``."""

    def __init__(self, source: Sequence[RawExample], *, image_size: int, min_scale: float, max_scale: float,
                 flip: bool, pad: bool = True):
        self.source = source
        self.lsj: dict[str, Any] = dict(image_size=image_size, min_scale=min_scale, max_scale=max_scale, flip=flip,
                                        pad=pad)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: SampleKey) -> TrainExample:
        raw = self.source[key.index]
        rng = np.random.default_rng(key.seed)
        image, labels, masks = lsj_targets(raw.image, raw.ids, raw.segments, rng=rng, **self.lsj)
        return TrainExample(image, labels, masks, key)


@dataclass
class Batch:
    """A padded micro-batch."""

    images: torch.Tensor  # [B, 3, H, W] normalised, zero-padded to a multiple of size_divisibility
    targets: list[dict[str, torch.Tensor]]  # per image: "labels" [N] int64, "masks" [N, H, W] bool (padded like images)
    keys: list[SampleKey]

    def pin_memory(self) -> Batch:  # called by DataLoader(pin_memory=True)
        targets = [{k: v.pin_memory() for k, v in t.items()} for t in self.targets]
        return Batch(self.images.pin_memory(), targets, self.keys)

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"
        targets = [{k: v.to(device, non_blocking=non_blocking) for k, v in t.items()} for t in self.targets]
        return Batch(self.images.to(device, non_blocking=non_blocking), targets, self.keys)


@dataclass(frozen=True)
class PadCollate:
    """Normalises and pads images as the model expects; pads masks the same way (with False)."""

    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    size_divisibility: int

    def __call__(self, examples: list[TrainExample]) -> Batch:
        images, _ = normalize_and_pad([e.image for e in examples], self.pixel_mean, self.pixel_std,
                                      self.size_divisibility)
        height, width = images.shape[-2:]
        targets = []
        for e in examples:
            masks = torch.zeros((len(e.labels), height, width), dtype=torch.bool)
            masks[:, : e.masks.shape[1], : e.masks.shape[2]] = e.masks
            targets.append({"labels": e.labels, "masks": masks})
        return Batch(images, targets, [e.key for e in examples])


def build_loader(dataset: Dataset, *, sampler: StreamSampler, collate: Callable[[list], Any], num_workers: int,
                 pin_memory: bool) -> DataLoader:
    """An endless DataLoader; each item is one micro-batch, in ``sampler`` order."""
    # Its own generator: starting an iterator must not draw from the global torch RNG, which dropout
    # uses (a resumed run starts its loader at another iteration). Sample randomness is in SampleKey.
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      pin_memory=pin_memory, prefetch_factor=2 if num_workers else None,
                      generator=torch.Generator().manual_seed(sampler.seed))
