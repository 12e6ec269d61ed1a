"""Mined pairs as training samples: the official CLIP training transform, seeded per stream position.

Each sample is randomly resized-cropped (area 0.9-1.0 of the crop, aspect 3/4-4/3, bicubic;
the mask nearest) back to the CLIP input size, as open_clip's training transform does. The
random draws come from the sample's ``SampleKey.seed``, so the same stream position gets the
same crop however many processes train.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torch.utils.data import Dataset

from vocabseg.errors import DatasetError
from vocabseg.train.data import SampleKey
from vocabseg.train.ovseg.mining.pairs import Pair


class PairSample(NamedTuple):
    image: torch.Tensor  # [3, S, S] CLIP-normalised
    mask: torch.Tensor  # [1, S, S] region mask in {0, 1}
    noun: str
    position: int


class PairBatch(NamedTuple):
    images: torch.Tensor  # [B, 3, S, S]
    masks: torch.Tensor  # [B, 1, S, S]
    nouns: list[str]
    positions: list[int]


class PairDataset(Dataset):
    """Augmented (crop, mask, noun) samples of a pair folder, indexed by ``SampleKey``."""

    def __init__(self, pairs: list[Pair], root: str | Path, *, size: int, scale: tuple[float, float]):
        self.pairs, self.root, self.size, self.scale = pairs, Path(root), size, scale

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey) -> PairSample:
        pair = self.pairs[key.index]
        image, mask = self._read(pair)  # [3, h, w] float 0-255, [1, h, w]
        top, left, height, width = crop_box(image.shape[-2:], scale=self.scale, rng=np.random.default_rng(key.seed))
        image = image[:, top:top + height, left:left + width]
        mask = mask[:, top:top + height, left:left + width]
        size = (self.size, self.size)
        image = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 255)
        mask = F.interpolate(mask[None], size=size, mode="nearest")[0]
        return PairSample(clip_normalise(image), mask, pair.noun, key.position)

    def _read(self, pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with Image.open(self.root / pair.crop) as crop, Image.open(self.root / pair.mask) as mask:
                image = np.asarray(crop.convert("RGB"))
                region = np.asarray(mask.convert("L")) > 127
        except OSError as error:
            raise DatasetError(f"{self.root}: cannot read the pair of {pair.image} ({error}); "
                               "re-mine that image") from None
        return torch.from_numpy(image.copy()).permute(2, 0, 1).float(), torch.from_numpy(region)[None].float()


def crop_box(shape: tuple[int, int] | torch.Size, *, scale: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop of ``scale`` area and 3/4-4/3 aspect (10 tries, then all)."""
    height, width = int(shape[0]), int(shape[1])
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def clip_normalise(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] 0-255 -> CLIP-normalised."""
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1) * 255
    return (image - mean) / std


def collate_pairs(samples: list[PairSample]) -> PairBatch:
    return PairBatch(torch.stack([s.image for s in samples]), torch.stack([s.mask for s in samples]),
                     [s.noun for s in samples], [s.position for s in samples])
