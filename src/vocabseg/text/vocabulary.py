"""Vocabulary types: what the user asks the model to find.

A vocabulary is an ordered list of classes; a class has one or more names
(synonyms), the first being its display name. Class order defines the class
index the model predicts, so built-in vocabularies keep the official order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VocabClass:
    """One class of a vocabulary."""

    names: tuple[str, ...]  # display name first, then synonyms; all are prompted
    is_thing: bool = True  # countable object (instances) vs. amorphous stuff region
    dataset_id: int | None = None  # id used in the dataset's annotation files, if any
    color: tuple[int, int, int] | None = None  # RGB for visualisation, if the dataset fixes one

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Vocabulary:
    """An ordered, named list of classes."""

    name: str
    classes: tuple[VocabClass, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def thing_mask(self) -> list[bool]:
        return [c.is_thing for c in self.classes]


def seen_mask(vocab: Vocabulary, train_vocab: Vocabulary) -> list[bool]:
    """Marks the classes of ``vocab`` that the model saw during training.

    This is FC-CLIP's "category overlapping" rule: a class counts as seen when
    any of its names equals any name of any training class (exact string
    match, no case folding). Seen classes lean on the in-vocabulary classifier
    at inference, unseen ones on the frozen CLIP (out-of-vocabulary) one.

    Args:
        vocab: The vocabulary the model is asked to segment.
        train_vocab: The vocabulary the model was trained on.

    Returns:
        One flag per class of ``vocab``, in class order.
    """
    train_names = {name for c in train_vocab.classes for name in c.names}
    return [not train_names.isdisjoint(c.names) for c in vocab.classes]


def join_synonyms(vocab: Vocabulary) -> Vocabulary:
    """The vocabulary with each class's names joined into one name ("road, route").

    OVSeg prompts a class with its whole official string rather than one prompt per synonym.
    """
    classes = tuple(dataclasses.replace(c, names=(", ".join(c.names),)) for c in vocab.classes)
    return Vocabulary(vocab.name, classes)
