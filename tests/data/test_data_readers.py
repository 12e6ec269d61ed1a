"""Readers: every registered val split, read from a tiny dataset in its real format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_datasets import H, Tiny, W, write_ade20k, write_cityscapes, write_coco, write_coco_raw, write_mapillary

from vocabseg.data import (
    DatasetError,
    get_dataset,
    load_image,
    load_instances,
    load_panoptic,
    load_semantic,
    panoptic_to_semantic,
)


def _stem(record) -> str:
    return Path(record.image).stem.replace("_leftImg8bit", "")


def test_every_split_reads_its_labels(prepared_split: tuple[str, Tiny]) -> None:
    name, tiny = prepared_split
    dataset = get_dataset(name, tiny.root)
    assert len(dataset) >= 1 and dataset.name == name
    assert len(dataset.get_vocabulary()) > 0
    for record in dataset:
        stem = _stem(record)
        assert (record.height, record.width) == (H, W)
        assert load_image(record.image).shape == (H, W, 3)
        if "semantic" in dataset.tasks:
            np.testing.assert_array_equal(load_semantic(record.semantic), tiny.semantic[stem])
        if "panoptic" in dataset.tasks:
            np.testing.assert_array_equal(load_panoptic(record.panoptic.png), tiny.panoptic[stem])
            got = sorted((s.id, s.category, s.iscrowd) for s in record.panoptic.segments)
            assert got == sorted(tiny.segments[stem])
        if "instance" in dataset.tasks:
            got = sorted((a.category, a.iscrowd) for a in record.instances.annotations)
            assert got == sorted(tiny.instances[stem])


def test_coco_records(tmp_path: Path) -> None:
    write_coco(tmp_path)
    dataset = get_dataset("coco_panoptic_val", tmp_path)
    assert dataset.vocabulary == "coco_panoptic" and dataset.tasks == ("panoptic", "semantic", "instance")
    record = dataset[0]
    assert record.image_id == 139 and record.image == tmp_path / "coco" / "val2017" / "000000000139.jpg"
    by_id = {s.id: s for s in record.panoptic.segments}
    assert by_id[1].is_thing and not by_id[2].is_thing and by_id[3].iscrowd
    assert by_id[2].area == 12  # as stated by the json
    # Semantic-from-panoptic on the fly agrees with the prepared semantic map.
    ids = load_panoptic(record.panoptic.png)
    np.testing.assert_array_equal(panoptic_to_semantic(ids, record.panoptic.segments), load_semantic(record.semantic))


def test_coco_instance_masks_decode(tmp_path: Path) -> None:
    tiny = write_coco(tmp_path)
    record = get_dataset("coco_panoptic_val", tmp_path, tasks={"instance"})[0]
    (person, person_mask), (car, car_mask) = load_instances(record)
    assert (person.category, car.category, car.iscrowd) == (0, 2, True)
    assert person_mask.shape == (H, W) and person_mask[:3, :4].mean() > 0.5 and not person_mask[3:].any()
    np.testing.assert_array_equal(car_mask, tiny.panoptic["000000000139"] == 3)  # uncompressed RLE crowd


def test_ade20k_instance_masks_are_the_beds(tmp_path: Path) -> None:
    tiny = write_ade20k(tmp_path)
    record = get_dataset("ade20k_panoptic_val", tmp_path)[0]
    masks = [mask for _, mask in load_instances(record)]
    ids = tiny.panoptic[_stem(record)]
    assert [m.sum() for m in masks] == [(ids == 7001).sum(), (ids == 7002).sum()]


def test_cityscapes_instances_come_from_the_panoptic_png(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)
    record = get_dataset("cityscapes_panoptic_val", tmp_path, tasks={"instance"})[0]
    assert record.panoptic is None and record.semantic is None
    pairs = load_instances(record)
    ids = load_panoptic(record.instances.source)
    assert [(a.category, a.iscrowd) for a, _ in pairs] == [(11, True), (13, False), (13, False)]
    for ann, mask in pairs:
        np.testing.assert_array_equal(mask, ids == ann.segmentation)
        assert ann.area == mask.sum()


def test_cityscapes_records_follow_city_folders(tmp_path: Path) -> None:
    write_cityscapes(tmp_path)
    record = get_dataset("cityscapes_panoptic_val", tmp_path)[0]
    assert record.image_id == "frankfurt_000000_000294"
    assert record.semantic.path.name == "frankfurt_000000_000294_gtFine_labelTrainIds.png"
    assert record.semantic.path.parent.name == "frankfurt"


def test_mapillary_ignore_value_is_65(tmp_path: Path) -> None:
    write_mapillary(tmp_path)
    record = get_dataset("mapillary_vistas_panoptic_val", tmp_path)[0]
    assert record.semantic.ignore_value == 65
    assert {s.category for s in record.panoptic.segments} == {0, 13}


def test_tasks_subset_needs_only_its_files(tmp_path: Path) -> None:
    write_coco_raw(tmp_path)  # no panoptic_semseg_val2017: semantic not prepared
    dataset = get_dataset("coco_panoptic_val", tmp_path, tasks={"panoptic"})
    assert dataset.tasks == ("panoptic",) and dataset[0].semantic is None and dataset[0].instances is None
    missing = r"2 of 2 semantic label maps are missing.*vocabseg data prepare coco_panoptic"
    with pytest.raises(DatasetError, match=missing):
        get_dataset("coco_panoptic_val", tmp_path)


def test_unknown_names_and_tasks_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        get_dataset("nope", tmp_path)
    with pytest.raises(DatasetError, match="has no instance labels"):
        get_dataset("ade20k_sem_seg_val", tmp_path, tasks={"instance"})


def test_missing_dataset_names_download_and_prepare(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        get_dataset("ade20k_panoptic_val", tmp_path)
    message = str(err.value)
    assert "ade20k_panoptic_val.json" in message and "vocabseg data prepare ade20k_150" in message
    assert "\n" not in message


def test_dataset_is_a_sequence(tmp_path: Path) -> None:
    write_coco(tmp_path)
    dataset = get_dataset("coco_panoptic_val", tmp_path)
    assert [r.image_id for r in dataset] == [139, 285] and dataset[-1].image_id == 285 and len(dataset[:1]) == 1
