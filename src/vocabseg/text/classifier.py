"""The text classifier: a vocabulary's embeddings as one object of tensors.

Built once per vocabulary (``TextClassifier.build``), moved with ``.to(device)`` and passed to
a model as one argument. It also owns the seen/unseen split against the model's training
vocabulary, so that rule lives in one place.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from vocabseg.errors import VocabularyError
from vocabseg.text.cache import TextEmbeddings
from vocabseg.text.vocabulary import Vocabulary, seen_mask


@dataclass(frozen=True)
class TextClassifier:
    """Per-synonym CLIP text embeddings of K classes."""

    embeddings: torch.Tensor  # [T, D] unit-norm, one row per synonym, classes in order
    synonym_index: torch.Tensor  # [K, S] long: the rows of each class, short rows padded with the first
    seen: torch.Tensor  # [K] bool: the class overlaps the model's training vocabulary
    class_names: tuple[str, ...]  # K display names

    @classmethod
    def build(cls, text: TextEmbeddings, vocabulary: Vocabulary, train_vocabulary: Vocabulary | None = None,
              device: torch.device | str | None = None) -> TextClassifier:
        """From cached embeddings; ``train_vocabulary`` None marks every class unseen."""
        seen = seen_mask(vocabulary, train_vocabulary) if train_vocabulary is not None else [False] * len(vocabulary)
        return cls(embeddings=text.embeddings, synonym_index=synonym_index(list(text.synonym_counts)),
                   seen=torch.tensor(seen, dtype=torch.bool), class_names=tuple(vocabulary.class_names)).to(device)

    @classmethod
    def from_file(cls, path: str | os.PathLike, vocabulary: Vocabulary, train_vocabulary: Vocabulary | None,
                  *, width: int, device: torch.device | str | None = None) -> TextClassifier:
        """Precomputed class embeddings [K, width] from a ``.npy`` file (e.g. Cascade-CLIP's official fp16
        files), one row per class in vocabulary order, used exactly as stored (no renormalisation)."""
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise VocabularyError(f"{path}: not a readable .npy array ({error}); give a [classes, width] .npy "
                                  "file") from None
        if array.ndim != 2 or array.shape[1] != width or not np.issubdtype(array.dtype, np.floating):
            raise VocabularyError(f"{path}: embeddings of shape {list(array.shape)} ({array.dtype}), but this model "
                                  f"needs float [classes, {width}]: embed the vocabulary with this model's CLIP")
        if array.shape[0] != len(vocabulary):
            raise VocabularyError(f"{path}: {array.shape[0]} rows but the vocabulary has {len(vocabulary)} classes; "
                                  "give the vocabulary the file was made for (one row per class, same order)")
        seen = seen_mask(vocabulary, train_vocabulary) if train_vocabulary is not None else [False] * len(vocabulary)
        embeddings = torch.from_numpy(array.astype(np.float32))  # fp16 -> fp32 is exact
        return cls(embeddings=embeddings, synonym_index=torch.arange(len(vocabulary))[:, None],
                   seen=torch.tensor(seen, dtype=torch.bool), class_names=tuple(vocabulary.class_names)).to(device)

    @property
    def num_classes(self) -> int:
        return int(self.synonym_index.shape[0])

    def to(self, device: torch.device | str | None) -> TextClassifier:
        if device is None:
            return self
        return replace(self, embeddings=self.embeddings.to(device), synonym_index=self.synonym_index.to(device),
                       seen=self.seen.to(device))

    def logits(self, regions: torch.Tensor, logit_scale: torch.Tensor | None = None, void: torch.Tensor | None = None,
               *, scale: float | None = None) -> torch.Tensor:
        """Cosine-similarity logits of region embeddings, max over each class's synonyms.

        Args:
            regions: [B, Q, D] region embeddings in CLIP space (any norm).
            logit_scale: scalar log-temperature; its exp is clamped at 100 like CLIP's.
            void: [1, D] unit-norm "no object" embedding, appended as the last column.
            scale: a fixed multiplier instead of ``logit_scale`` (OVSeg uses 100).

        Returns:
            [B, Q, K] logits, or [B, Q, K + 1] with the void column last.
        """
        weights = self.embeddings if void is None else torch.cat([self.embeddings.to(void), void], dim=0)
        if scale is not None:
            multiplier: torch.Tensor | float = scale
        elif logit_scale is not None:
            multiplier = torch.clamp(logit_scale.exp(), max=100)
        else:
            raise TypeError("TextClassifier.logits needs logit_scale or scale")
        logits = multiplier * F.normalize(regions, dim=-1) @ weights.T  # [B, Q, T (+ 1)]
        per_class = logits[..., self.synonym_index].max(-1).values  # [B, Q, K]
        return per_class if void is None else torch.cat([per_class, logits[..., -1:]], dim=-1)


def synonym_index(synonym_counts: list[int]) -> torch.Tensor:
    """Row indices [K, S_max] gathering each class's synonyms from the flat embeddings.

    Short rows are padded with the class's first synonym: a repeat does not change a max.
    """
    width = max(synonym_counts)
    rows, start = [], 0
    for count in synonym_counts:
        rows.append(list(range(start, start + count)) + [start] * (width - count))
        start += count
    return torch.tensor(rows, dtype=torch.long)
