"""The pure conversion functions, on arrays whose answer is known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from vocabseg.data import DatasetError
from vocabseg.data.convert.ade20k import instance_objects, panoptic_ids, segments_info, shift_semantic
from vocabseg.data.convert.ade20k_full import class_lut, decode_classes, resize_nearest, target_size
from vocabseg.data.convert.cityscapes import train_ids
from vocabseg.data.convert.coco import semantic_from_panoptic
from vocabseg.data.convert.common import apply_lut
from vocabseg.data.convert.pascal import context_59, context_459, voc_20, voc_21
from vocabseg.text.builtin import get_vocabulary


def test_ade20k_semantic_shift() -> None:
    raw = np.array([[0, 1, 150]], np.uint8)
    assert shift_semantic(raw).tolist() == [[255, 0, 149]]


def test_ade20k_instances_and_panoptic_ids() -> None:
    to_index = (-1, 7, 8)
    ins = np.zeros((2, 3, 3), np.uint8)
    ins[0, :2] = (1, 1, 0)  # bed, object 1
    ins[1, 0] = (2, 4, 0)  # instance class 2, object 4
    ins[1, 1:] = (1, 5, 0)
    ins[1, 2] = (2, 5, 0)  # object 5 spans two classes: dropped
    objects = instance_objects(ins, to_index)
    assert [(cls, int(mask.sum())) for cls, mask in objects] == [(7, 2), (8, 1)]
    sem = np.zeros((2, 3), np.uint8)  # shifted: wall everywhere
    ids = panoptic_ids(sem, objects, get_vocabulary("ade20k_150"))
    assert ids.tolist() == [[7001, 7001, 1], [8001, 1, 1]]
    info = {s["id"]: s for s in segments_info(ids)}
    assert info[1] == {"id": 1, "category_id": 0, "area": 3, "bbox": [1, 0, 2, 2], "iscrowd": 0}
    assert info[8001]["category_id"] == 8


def test_ade20k_thing_pixels_without_instance_are_void() -> None:
    sem = np.array([[7, 0]], np.uint8)  # bed (thing) from the semantic map only
    assert panoptic_ids(sem, [], get_vocabulary("ade20k_150")).tolist() == [[0, 1]]


def test_ade20k_full_decoding_and_resizing() -> None:
    seg = np.zeros((1, 2, 3), np.uint8)
    seg[0, 0] = (110, 162, 0)  # 11 * 256 + 162 = 2978 (wall)
    assert decode_classes(seg).tolist() == [[2978, 0]]
    raw = np.array([[2978, 312, 0, 5, 6655]])  # wall, building, none, not one of the 847, past every id
    assert apply_lut(raw, class_lut(), 65535).tolist() == [[0, 1, 65535, 65535, 65535]]
    assert target_size(512, 700) is None and target_size(600, 600) == (512, 512)
    assert target_size(1000, 600) == (853, 512) and target_size(520, 530) == (512, 522)
    label = np.arange(6).reshape(2, 3)
    assert resize_nearest(label, (1, 2)).tolist() == [[0, 1]]  # floor(dst * 1.5) -> columns 0, 1


def test_pascal_conversions() -> None:
    label_map = np.array([[0, 1, 2, 458, 459]], np.uint16)
    assert context_59(label_map).tolist() == [[255, 255, 0, 58, 255]]
    out = context_459(label_map)
    assert out.dtype == np.uint16 and out.tolist() == [[65535, 0, 1, 457, 458]]
    voc = np.array([[0, 1, 20, 255]], np.uint8)
    assert voc_21(voc).tolist() == [[0, 1, 20, 255]] and voc_20(voc).tolist() == [[255, 0, 19, 255]]


def test_cityscapes_train_ids() -> None:
    labels = np.array([[0, 1, 7, 24, 26, 33, 34]], np.uint8)
    assert train_ids(labels).tolist() == [[255, 255, 0, 11, 13, 18, 255]]


def test_coco_semantic_from_panoptic() -> None:
    ids = np.array([[0, 5, 6]])
    segments = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 200}]
    table = {1: 0, 200: 132}
    assert semantic_from_panoptic(ids, segments, table, "x.json").tolist() == [[255, 0, 132]]
    with pytest.raises(DatasetError, match="x.json: category id 12 is not in vocabulary"):
        semantic_from_panoptic(ids, [{"id": 5, "category_id": 12}], table, "x.json")
