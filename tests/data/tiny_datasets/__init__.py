"""Tiny datasets in each dataset's real on-disk format, for tests.

``write_<family>_raw(root)`` writes the raw release (the input of
``vocabseg.data.prepare``); ``write_<family>(root)`` writes the prepared layout
the readers expect (raw files included where the readers use them). Each
returns a ``Tiny`` with what reading must give per image stem: contiguous
semantic maps (IGNORE = -1), panoptic id maps, (id, class index, iscrowd)
segments and (class index, iscrowd) instances.

Import as ``tiny_datasets`` with tests/data on ``sys.path`` (pytest puts it there
for tests in tests/data; elsewhere use ``sys.path.insert`` or pytest's ``pythonpath``).
"""
from .ade20k import write_ade20k, write_ade20k_full, write_ade20k_full_raw, write_ade20k_raw
from .cityscapes import write_cityscapes, write_cityscapes_panoptic, write_cityscapes_raw, write_mapillary
from .coco import write_coco, write_coco_raw, write_coco_stuff, write_coco_stuff_raw
from .common import IGNORE, H, Tiny, W
from .mmseg import write_cascade_coco_stuff, write_cascade_coco_stuff_raw, write_cascade_context, write_cascade_voc
from .pascal import (
    expected_context,
    expected_voc,
    write_pascal_context,
    write_pascal_context_raw,
    write_pascal_voc,
    write_pascal_voc_raw,
)

# registry split name -> writer of its prepared layout (val splits)
PREPARED_WRITERS = {
    "coco_panoptic_val": write_coco,
    "coco_stuff_sem_seg_val": write_coco_stuff,
    "ade20k_panoptic_val": write_ade20k,
    "ade20k_sem_seg_val": write_ade20k,
    "ade20k_full_sem_seg_val": write_ade20k_full,
    "pascal_context_59_sem_seg_val": lambda root: write_pascal_context(root, 59),
    "pascal_context_459_sem_seg_val": lambda root: write_pascal_context(root, 459),
    "pascal_voc_20_sem_seg_val": lambda root: write_pascal_voc(root, 20),
    "pascal_voc_21_sem_seg_val": lambda root: write_pascal_voc(root, 21),
    "cityscapes_panoptic_val": write_cityscapes,
    "mapillary_vistas_panoptic_val": write_mapillary,
    "cascade_voc_20_val": write_cascade_voc,
    "cascade_context_59_val": write_cascade_context,
    "cascade_coco_stuff_171_val": write_cascade_coco_stuff,
}

__all__ = [
    "H", "IGNORE", "PREPARED_WRITERS", "Tiny", "W", "expected_context", "expected_voc", "write_ade20k",
    "write_ade20k_full", "write_ade20k_full_raw", "write_ade20k_raw", "write_cityscapes",
    "write_cityscapes_panoptic", "write_cityscapes_raw", "write_coco", "write_coco_raw", "write_coco_stuff",
    "write_coco_stuff_raw", "write_mapillary", "write_pascal_context", "write_pascal_context_raw",
    "write_pascal_voc", "write_pascal_voc_raw", "write_cascade_voc", "write_cascade_context",
    "write_cascade_coco_stuff", "write_cascade_coco_stuff_raw",
]  # fmt: skip
