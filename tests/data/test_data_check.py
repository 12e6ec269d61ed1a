"""check(): each trap gives one line naming the file and the fix."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tiny_datasets import (
    H,
    Tiny,
    W,
    write_ade20k,
    write_ade20k_full,
    write_ade20k_raw,
    write_coco,
    write_mapillary,
    write_pascal_voc,
)

from vocabseg.data import check

ADE = "ADEChallengeData2016"


def _one(problems: list[str], *needles: str) -> str:
    """The single problem line, after asserting it mentions every needle."""
    assert len(problems) == 1, problems
    line = problems[0]
    assert "\n" not in line
    for needle in needles:
        assert needle in line, line
    return line


def test_prepared_datasets_are_clean(prepared_split: tuple[str, Tiny]) -> None:
    name, tiny = prepared_split
    assert check(name, tiny.root) == []


def test_family_name_checks_its_val_splits(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    assert check("ade20k_150", tmp_path) == []
    (tmp_path / ADE / "ade20k_instance_val.json").unlink()
    _one(check("ade20k_150", tmp_path), "ade20k_instance_val.json not found", "vocabseg data prepare ade20k_150")


def test_unprepared_ade20k_semantic_is_reported(tmp_path: Path) -> None:
    """FC-CLIP issues #31/#37: evaluating before running the prepare script."""
    write_ade20k_raw(tmp_path)
    line = _one(check("ade20k_sem_seg_val", tmp_path), "annotations_detectron2/validation not found")
    assert line.endswith(f"run `vocabseg data prepare ade20k_150 --root {tmp_path}`")


def test_unshifted_ade20k_semantic_is_reported(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    src, dst = tmp_path / ADE / "annotations" / "validation", tmp_path / ADE / "annotations_detectron2" / "validation"
    shutil.rmtree(dst)
    shutil.copytree(src, dst)  # copied instead of converted
    _one(check("ade20k_sem_seg_val", tmp_path), "copied, not converted", "vocabseg data prepare ade20k_150")


def test_panoptic_png_must_be_rgb(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    png = tmp_path / ADE / "ade20k_panoptic_val" / "ADE_val_00000001.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(png)
    _one(check("ade20k_panoptic_val", tmp_path), str(png), "has mode L, expected RGB")


def test_847_labels_must_be_16_bit(tmp_path: Path) -> None:
    write_ade20k_full(tmp_path)
    tif = tmp_path / "ADE20K_2021_17_01" / "annotations_detectron2" / "validation" / "ADE_val_00000001.tif"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tif, format="TIFF")
    _one(check("ade20k_full_sem_seg_val", tmp_path), str(tif), "mode L, expected 16-bit", "prepare ade20k_847")


def test_label_values_out_of_range(tmp_path: Path) -> None:
    write_pascal_voc(tmp_path, 20)
    png = tmp_path / "pascal_voc_d2" / "annotations_pascal20" / "validation" / "2007_000033.png"
    Image.fromarray(np.full((H, W), 20, np.uint8)).save(png)  # 20 is the 21-class numbering
    _one(check("pascal_voc_20_sem_seg_val", tmp_path), str(png), "values [20] outside 0..19")


def test_mapillary_v2_labels_are_out_of_range(tmp_path: Path) -> None:
    write_mapillary(tmp_path)
    png = tmp_path / "mapillary_vistas" / "validation" / "labels" / "abcDEF123.png"
    Image.fromarray(np.full((H, W), 100, np.uint8)).save(png)  # v2.0 has 124 classes
    _one(check("mapillary_vistas_panoptic_val", tmp_path), "values [100] outside 0..64", "ignore value 65")


def test_unknown_category_id(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    path = tmp_path / ADE / "ade20k_panoptic_val.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 999
    path.write_text(json.dumps(data))
    _one(check("ade20k_panoptic_val", tmp_path), "category id 999 is not in vocabulary 'ade20k_150'")


def test_missing_json_field(tmp_path: Path) -> None:
    write_coco(tmp_path)
    path = tmp_path / "coco" / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    del data["annotations"][1]["segments_info"]
    path.write_text(json.dumps(data))
    # Every task reads the annotations; the shared problem is reported once.
    _one(check("coco_panoptic_val", tmp_path), "lacks field(s) segments_info", "panoptic_val2017.json")


def test_truncated_json(tmp_path: Path) -> None:
    write_coco(tmp_path)
    path = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text()[:50])
    _one(check("coco_panoptic_val", tmp_path), "(instance)", "is not valid JSON", "truncated")


def test_images_without_annotations(tmp_path: Path) -> None:
    write_coco(tmp_path)
    Image.new("RGB", (W, H)).save(tmp_path / "coco" / "val2017" / "000000999999.jpg")
    _one(check("coco_panoptic_val", tmp_path), "1 image(s)", "no annotation", "000000999999.jpg")


def test_missing_images_and_labels(tmp_path: Path) -> None:
    write_coco(tmp_path)
    (tmp_path / "coco" / "val2017" / "000000000285.jpg").unlink()
    _one(check("coco_panoptic_val", tmp_path), "1 of 2 images are missing", "000000000285.jpg")


def test_zipped_coco_panoptic_pngs(tmp_path: Path) -> None:
    write_coco(tmp_path)
    shutil.rmtree(tmp_path / "coco" / "panoptic_val2017")
    (tmp_path / "coco" / "annotations" / "panoptic_val2017.zip").write_bytes(b"PK")
    _one(check("coco_panoptic_val", tmp_path), "panoptic_val2017 not found", "unzip")


def test_panoptic_png_and_json_disagree(tmp_path: Path) -> None:
    write_ade20k(tmp_path)
    png = tmp_path / ADE / "ade20k_panoptic_val" / "ADE_val_00000001.png"
    Image.fromarray(np.full((H, W, 3), 9, np.uint8)).save(png)
    _one(check("ade20k_panoptic_val", tmp_path), "segment ids [592137]", "does not list")


def test_label_size_differs_from_image(tmp_path: Path) -> None:
    write_pascal_voc(tmp_path, 21)
    png = tmp_path / "pascal_voc_d2" / "annotations_pascal21" / "validation" / "2007_000033.png"
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(png)
    _one(check("pascal_voc_21_sem_seg_val", tmp_path), "is 7x8 but image", "different releases")


def test_missing_root(tmp_path: Path) -> None:
    _one(check("coco_panoptic_val", tmp_path / "nope"), "not found; pass the folder")
