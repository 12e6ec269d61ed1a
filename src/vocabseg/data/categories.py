"""Translating the category ids annotation files use into vocabulary indices.

A built-in vocabulary stores, per class, the ``dataset_id`` its dataset's files
use (COCO category ids, Cityscapes label ids, raw ADE20K-full ids, ...). The
contiguous index of a class is its position in the vocabulary.
"""
from __future__ import annotations

from vocabseg.data.errors import DatasetError
from vocabseg.text.vocabulary import Vocabulary

# PASCAL Context: label ids (1-based, as in the 459-class `LabelMap` of the
# VOC2010/trainval/*.mat files) of the 59 classes of PC-59, in PC-59 class order.
# The official PC-59 conversion keeps exactly these; other labels are ignored.
PASCAL_CONTEXT_59_IN_459 = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98,
    104, 105, 113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260,
    284, 295, 296, 308, 324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415, 416,
    420, 424, 427, 440, 445, 454, 458,
)  # fmt: skip

# ADE20K instance annotations (annotations_instance/*.png) number their 100
# classes 1..100 in the order the thing classes appear in the 150-class list.
ADE20K_INSTANCE_CLASSES = 100


def index_by_dataset_id(vocabulary: Vocabulary) -> dict[int, int]:
    """dataset_id -> contiguous index; a class without dataset_id uses its index."""
    table = {}
    for index, cls in enumerate(vocabulary.classes):
        table[index if cls.dataset_id is None else cls.dataset_id] = index
    return table


def lookup(table: dict[int, int], dataset_id: int, where: str, vocabulary: str) -> int:
    """Contiguous index of ``dataset_id``; unknown ids raise naming ``where``."""
    try:
        return table[int(dataset_id)]
    except KeyError:
        raise DatasetError(
            f"{where}: category id {dataset_id} is not in vocabulary {vocabulary!r}; "
            "the annotations are from another dataset or version: download the release the docs name"
        ) from None


def ade20k_instance_to_index(vocabulary: Vocabulary) -> tuple[int, ...]:
    """ADE20K instance class (1..100) -> 150-class index; entry 0 is unused (-1).

    Args:
        vocabulary: The "ade20k_150" vocabulary.
    """
    things = [i for i, cls in enumerate(vocabulary.classes) if cls.is_thing]
    if len(things) != ADE20K_INSTANCE_CLASSES:
        raise DatasetError(
            f"vocabulary {vocabulary.name!r} has {len(things)} thing classes; ADE20K instance "
            f"annotations need the 150-class vocabulary with {ADE20K_INSTANCE_CLASSES}"
        )
    return (-1, *things)


def raw_value_table(
    vocabulary: Vocabulary, size: int, offset: int = 0, ignore: int = 255
) -> tuple[int, ...]:
    """Lookup table raw value -> contiguous index for maps storing ``dataset_id - offset``.

    Args:
        vocabulary: Classes whose ``dataset_id``s the raw values encode.
        size: Number of raw values (e.g. 256 for uint8 maps).
        offset: Subtracted from dataset ids to get raw values (1 for COCO-Stuff,
            whose maps store ``category_id - 1``).
        ignore: Output for raw values of no class.

    Returns:
        ``size`` ints.
    """
    table = [ignore] * size
    for dataset_id, index in index_by_dataset_id(vocabulary).items():
        raw = dataset_id - offset
        if 0 <= raw < size:
            table[raw] = index
    return tuple(table)
