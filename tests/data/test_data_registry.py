"""The registry of splits, and the id tables tying datasets to vocabularies."""
from __future__ import annotations

from pathlib import Path

import pytest

from vocabseg.data import DATASETS, PREPARERS, DatasetError, get_spec, list_datasets, splits_of
from vocabseg.data.categories import PASCAL_CONTEXT_59_IN_459, ade20k_instance_to_index, raw_value_table
from vocabseg.text.builtin import get_vocabulary, list_vocabularies

REQUIRED = [
    "ade20k_panoptic_val", "coco_panoptic_val", "coco_panoptic_train", "cityscapes_panoptic_val",
    "mapillary_vistas_panoptic_val", "ade20k_full_sem_seg_val", "pascal_context_59_sem_seg_val",
    "pascal_context_459_sem_seg_val", "pascal_voc_20_sem_seg_val", "pascal_voc_21_sem_seg_val",
    "coco_stuff_sem_seg_val",
]  # fmt: skip


def test_required_splits_are_registered() -> None:
    assert set(REQUIRED) <= set(list_datasets()) and list_datasets() == sorted(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_spec_is_consistent(name: str) -> None:
    spec = get_spec(name)
    assert spec.name == name and spec.vocabulary in list_vocabularies() and spec.prepare in PREPARERS
    assert set(spec.tasks) <= {"panoptic", "semantic", "instance"}
    assert ("panoptic" in spec.tasks) == (spec.panoptic_json is not None)
    assert spec.label_bits == 16 if len(get_vocabulary(spec.vocabulary)) > 255 else spec.label_bits == 8
    assert spec.ignore_value >= len(get_vocabulary(spec.vocabulary))


def test_expected_vocabularies() -> None:
    pairs = {n: get_spec(n).vocabulary for n in REQUIRED}
    assert pairs["ade20k_full_sem_seg_val"] == "ade20k_847" and pairs["cityscapes_panoptic_val"] == "cityscapes"
    assert pairs["pascal_voc_20_sem_seg_val"] == "pascal_voc_20" and pairs["coco_stuff_sem_seg_val"] == "coco_stuff"


def test_splits_of_family_and_unknown_names() -> None:
    assert splits_of("ade20k_150") == ["ade20k_panoptic_val", "ade20k_sem_seg_val"]
    assert splits_of("coco_panoptic_train") == ["coco_panoptic_train"]
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        splits_of("nope")
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        get_spec("nope")


def test_fix_mentions_root() -> None:
    spec = get_spec("ade20k_panoptic_val")
    assert spec.fix("panoptic", Path("/d")) == "run `vocabseg data prepare ade20k_150 --root /d`"
    assert "/d/ADEChallengeData2016" in spec.fix("images", Path("/d"))


def test_ade20k_instance_classes_match_the_official_table() -> None:
    # First and last rows of the official ade20k_instance_catid_mapping.txt (1-based 150 ids).
    table = ade20k_instance_to_index(get_vocabulary("ade20k_150"))
    assert len(table) == 101 and table[1] == 8 - 1 and table[2] == 9 - 1 and table[100] == 150 - 1
    with pytest.raises(DatasetError, match="thing classes"):
        ade20k_instance_to_index(get_vocabulary("pascal_voc_20"))


def test_pascal_context_59_ids_name_the_same_classes() -> None:
    pc59, pc459 = get_vocabulary("pascal_context_59"), get_vocabulary("pascal_context_459")
    assert len(PASCAL_CONTEXT_59_IN_459) == 59 == len(pc59)
    same = [set(a.names) & set(pc459.classes[i - 1].names) for a, i in zip(pc59.classes, PASCAL_CONTEXT_59_IN_459)]
    assert sum(map(bool, same)) >= 58  # "computer case" vs "computer" only differ in their prompts


def test_raw_value_table_coco_stuff() -> None:
    table = raw_value_table(get_vocabulary("coco_stuff"), 256, offset=1)
    assert table[0] == 0 and table[11] == 255 and table[12] == 11 and table[181] == 170 and table[255] == 255


@pytest.mark.parametrize(("typed", "meant"), [("ade20k_semseg_val", "ade20k_sem_seg_val"),
                                              ("COCO-panoptic-val", "coco_panoptic_val"),
                                              ("cascade_voc20_val", "cascade_voc_20_val")])
def test_a_mistyped_dataset_gets_did_you_mean(typed, meant, capsys) -> None:
    from vocabseg.cli import main

    with pytest.raises(DatasetError, match=f"did you mean '{meant}'"):
        get_spec(typed)
    assert main(["eval", "--model", "fcclip_rn50_coco", "--dataset", typed, "--data-root", "nowhere",
                 "--output", "nowhere/out"]) == 2  # refused before any model loads
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"did you mean '{meant}'?" in err[0]
    with pytest.raises(DatasetError, match="did you mean 'ade20k_sem_seg_val'"):
        splits_of("ade20k_semseg_val")
