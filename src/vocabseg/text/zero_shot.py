"""The official zero-shot splits: which classes of a benchmark are held out ("unseen") in training.

Class ids are indices into the built-in vocabulary of the same benchmark (its class order is the
dataset's and the official text-embedding rows'). The inductive models train on the other
("seen") classes only; the seen-only vocabularies ``<name>_seen`` are what they were trained on.
Source: the ``novel_class`` lists of the official Cascade-CLIP configs (same splits as ZegCLIP).
"""
from __future__ import annotations

from vocabseg.errors import VocabularyError
from vocabseg.text.vocabulary import Vocabulary

# VOC-20: pottedplant, sheep, sofa, train, tvmonitor (configs/voc_20/*.py novel_class).
CASCADE_VOC_20_UNSEEN: tuple[int, ...] = (15, 16, 17, 18, 19)
# Context-59: aeroplane, bed, bedclothes, boat, bottle, car, cloth, cow, keyboard, plate.
CASCADE_CONTEXT_59_UNSEEN: tuple[int, ...] = (0, 2, 3, 7, 9, 13, 17, 19, 31, 37)
# COCO-Stuff-171: cow, giraffe, suitcase, frisbee, skateboard, carrot, scissors, cardboard, clouds,
# grass, playingfield, river, road, tree, wall-concrete.
CASCADE_COCO_STUFF_171_UNSEEN: tuple[int, ...] = (19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160)

# full built-in vocabulary name -> its unseen class indices
UNSEEN_CLASSES: dict[str, tuple[int, ...]] = {
    "cascade_voc_20": CASCADE_VOC_20_UNSEEN,
    "cascade_context_59": CASCADE_CONTEXT_59_UNSEEN,
    "cascade_coco_stuff_171": CASCADE_COCO_STUFF_171_UNSEEN,
}

SEEN_SUFFIX = "_seen"  # "cascade_voc_20" -> "cascade_voc_20_seen", its seen classes only


def unseen_classes(vocabulary: str) -> tuple[int, ...]:
    """The official unseen class indices of a zero-shot benchmark's vocabulary, e.g. "cascade_voc_20"."""
    if vocabulary not in UNSEEN_CLASSES:
        raise VocabularyError(f"vocabulary {vocabulary!r} has no official zero-shot split; "
                              f"those that do: {', '.join(UNSEEN_CLASSES)}")
    return UNSEEN_CLASSES[vocabulary]


def seen_flags(num_classes: int, unseen: tuple[int, ...] | list[int]) -> list[bool]:
    """One flag per class, False for the ``unseen`` indices (the official split as a mask)."""
    bad = [i for i in unseen if not 0 <= i < num_classes]
    if bad:
        raise VocabularyError(f"unseen class index {bad[0]} is outside 0..{num_classes - 1}; "
                              "give indices into the vocabulary's classes")
    held_out = set(unseen)
    return [i not in held_out for i in range(num_classes)]


def seen_subset(vocab: Vocabulary, unseen: tuple[int, ...] | list[int]) -> Vocabulary:
    """The vocabulary without its ``unseen`` classes (order kept), named ``<name>_seen``."""
    flags = seen_flags(len(vocab), unseen)
    kept = tuple(c for c, seen in zip(vocab.classes, flags) if seen)
    return Vocabulary(name=vocab.name + SEEN_SUFFIX, classes=kept)
