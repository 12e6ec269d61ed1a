"""The mmseg-layout Cascade-CLIP splits: split lists, reduce_zero_label, preparation and checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import (
    expected_context,
    write_cascade_coco_stuff_raw,
    write_cascade_context,
    write_cascade_voc,
    write_pascal_context_raw,
)
from tiny_datasets.mmseg import CONTEXT_VAL, VOC_VAL
from tiny_datasets.pascal import CONTEXT_TRAIN

from vocabseg.data import DatasetError, check, get_dataset, get_spec, load_semantic, prepare, splits_of
from vocabseg.text.zero_shot import UNSEEN_CLASSES

SPLITS = {"cascade_voc_20_val": "cascade_voc_20", "cascade_context_59_val": "cascade_context_59",
          "cascade_coco_stuff_171_val": "cascade_coco_stuff_171"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_split_carries_its_zero_shot_protocol(name: str) -> None:
    spec = get_spec(name)
    assert spec.vocabulary == SPLITS[name] and spec.unseen == UNSEEN_CLASSES[SPLITS[name]]
    assert spec.iou_rule == "mmseg" and spec.test_size is None  # the model's own 512 short side applies
    assert spec.reduce_zero_label == (name != "cascade_coco_stuff_171_val")
    assert splits_of(SPLITS[name]) == [name]


def test_voc_reads_only_the_split_list_and_reduces_zero_label(tmp_path: Path) -> None:
    write_cascade_voc(tmp_path)
    dataset = get_dataset("cascade_voc_20_val", tmp_path)
    assert [r.image_id for r in dataset] == [VOC_VAL]  # the other JPEG is not in val.txt
    assert dataset.unseen == (15, 16, 17, 18, 19) and dataset.iou_rule == "mmseg"
    labels = load_semantic(dataset[0].semantic)
    assert sorted(np.unique(labels).tolist()) == [-1, 0, 15, 19]  # 0 and 255 ignored, 1 -> 0, 16 -> 15, 20 -> 19


def test_missing_split_list_names_the_file(tmp_path: Path) -> None:
    write_cascade_context(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2010" / "ImageSets" / "SegmentationContext" / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"SegmentationContext/val.txt not found.*vocabseg data prepare"):
        get_dataset("cascade_context_59_val", tmp_path)


def test_a_listed_image_that_is_missing_is_reported(tmp_path: Path) -> None:
    write_cascade_voc(tmp_path)
    (tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{VOC_VAL}.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 1 images of the split list are missing"):
        get_dataset("cascade_voc_20_val", tmp_path)


def test_check_flags_values_beyond_the_reduced_range(tmp_path: Path) -> None:
    write_cascade_voc(tmp_path)
    assert check("cascade_voc_20_val", tmp_path) == []  # raw 20 is a class (tvmonitor) before the shift
    label = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{VOC_VAL}.png"
    Image.fromarray(np.full((6, 8), 21, np.uint8)).save(label)
    problems = check("cascade_voc_20_val", tmp_path)
    assert len(problems) == 1 and "values [21] outside 0..20" in problems[0]


def test_prepare_context_writes_the_mmseg_layout(tmp_path: Path) -> None:
    write_pascal_context_raw(tmp_path, 59)
    lines = prepare("cascade_context_59", tmp_path, progress=False)
    assert len(lines) == 2
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    assert (voc / "ImageSets" / "SegmentationContext" / "val.txt").read_text() == f"{CONTEXT_VAL}\n"
    raw = np.asarray(Image.open(voc / "SegmentationClassContext" / f"{CONTEXT_VAL}.png"))
    assert sorted(np.unique(raw).tolist()) == [0, 1, 59]  # background, aeroplane, wood
    dataset = get_dataset("cascade_context_59_val", tmp_path)
    np.testing.assert_array_equal(load_semantic(dataset[0].semantic), expected_context(59))  # as the d2 layout
    assert check("cascade_context_59_val", tmp_path) == []
    assert [r.image_id for r in get_dataset("cascade_context_59_train", tmp_path)] == [CONTEXT_TRAIN]


def test_prepare_coco_stuff_writes_train_ids(tmp_path: Path) -> None:
    tiny = write_cascade_coco_stuff_raw(tmp_path)
    with pytest.raises(DatasetError):
        get_dataset("cascade_coco_stuff_171_val", tmp_path)  # not converted yet
    prepare("cascade_coco_stuff_171", tmp_path, progress=False)
    dataset = get_dataset("cascade_coco_stuff_171_val", tmp_path)
    assert len(dataset) == 1  # the raw maps are not images of the split
    np.testing.assert_array_equal(load_semantic(dataset[0].semantic), tiny.semantic[dataset[0].image_id])
    assert prepare("cascade_coco_stuff_171", tmp_path, progress=False)[-1].endswith("1 already done")  # resumable


def test_prepare_voc_has_nothing_to_do(tmp_path: Path) -> None:
    assert "nothing to prepare" in prepare("cascade_voc_20", tmp_path, progress=False)[0]
