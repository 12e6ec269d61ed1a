"""Datasets: readers of the official FC-CLIP layouts, preparation and checks.

* ``get_dataset(name, root)`` / ``list_datasets()``: registered splits
  (``DATASETS``) read into typed ``Record``s whose category indices follow the
  split's built-in vocabulary.
* ``load_image`` / ``load_panoptic`` / ``load_semantic`` / ``load_instances``:
  the files a record points to, as numpy arrays.
* ``prepare(name, root)``: the official conversions from the raw releases.
* ``check(name, root)``: one line per problem found on disk, with its fix.

Every dataset problem raises ``DatasetError`` (a ``ValueError``) with a
one-line message naming the file and the fix.
"""
from vocabseg.data.check import check
from vocabseg.data.errors import DatasetError
from vocabseg.data.io import (
    id_to_rgb,
    load_image,
    load_instances,
    load_panoptic,
    load_semantic,
    panoptic_to_semantic,
    read_label_map,
    rgb_to_id,
)
from vocabseg.data.prepare import PREPARERS, list_preparers, prepare
from vocabseg.data.records import (
    IGNORE_LABEL,
    TASKS,
    Dataset,
    InstanceAnnotation,
    InstanceLabel,
    PanopticLabel,
    Record,
    Segment,
    SemanticLabel,
)
from vocabseg.data.registry import DATASETS, get_dataset, get_spec, list_datasets, splits_of
from vocabseg.data.spec import SplitSpec

__all__ = [
    "DATASETS", "IGNORE_LABEL", "PREPARERS", "TASKS", "Dataset", "DatasetError", "InstanceAnnotation",
    "InstanceLabel", "PanopticLabel", "Record", "Segment", "SemanticLabel", "SplitSpec", "check",
    "get_dataset", "get_spec", "id_to_rgb", "list_datasets", "list_preparers", "load_image",
    "load_instances", "load_panoptic", "load_semantic", "panoptic_to_semantic", "prepare",
    "read_label_map", "rgb_to_id", "splits_of",
]  # fmt: skip
