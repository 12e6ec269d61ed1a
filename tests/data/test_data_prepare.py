"""prepare(): raw release -> the layout the readers expect, checked end to end."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import (
    H,
    W,
    write_ade20k_full_raw,
    write_ade20k_raw,
    write_cityscapes_panoptic,
    write_cityscapes_raw,
    write_coco_raw,
    write_coco_stuff_raw,
    write_mapillary,
    write_pascal_context_raw,
    write_pascal_voc_raw,
)

from vocabseg.data import DatasetError, check, get_dataset, load_instances, load_panoptic, load_semantic, prepare


def _assert_reads_like(name: str, root: Path, tiny) -> None:
    """The prepared split reads back to the tiny dataset's expectations."""
    for record in get_dataset(name, root):
        stem = Path(record.image).stem.replace("_leftImg8bit", "")
        if record.semantic is not None:
            np.testing.assert_array_equal(load_semantic(record.semantic), tiny.semantic[stem])
        if record.panoptic is not None:
            np.testing.assert_array_equal(load_panoptic(record.panoptic.png), tiny.panoptic[stem])
            got = sorted((s.id, s.category, s.iscrowd) for s in record.panoptic.segments)
            assert got == sorted(tiny.segments[stem])
        if record.instances is not None:
            assert sorted((a.category, a.iscrowd) for a in record.instances.annotations) == sorted(tiny.instances[stem])
    assert check(name, root) == []


def test_coco_semantic_from_panoptic(tmp_path: Path) -> None:
    tiny = write_coco_raw(tmp_path)
    lines = prepare("coco_panoptic", tmp_path, progress=False)
    assert any("skipped" in line and "panoptic_train2017.json" in line for line in lines)  # no train split here
    out = np.asarray(Image.open(tmp_path / "coco" / "panoptic_semseg_val2017" / "000000000139.png"))
    assert out.dtype == np.uint8 and out[5, 7] == 255 and out[0, 0] == 0 and out[0, 7] == 80
    _assert_reads_like("coco_panoptic_val", tmp_path, tiny)


def test_coco_stuff(tmp_path: Path) -> None:
    tiny = write_coco_stuff_raw(tmp_path)
    prepare("coco_stuff", tmp_path, progress=False)
    _assert_reads_like("coco_stuff_sem_seg_val", tmp_path, tiny)


def test_ade20k_150_semantic_panoptic_instance(tmp_path: Path) -> None:
    tiny = write_ade20k_raw(tmp_path)
    prepare("ade20k_150", tmp_path, progress=False)
    base = tmp_path / "ADEChallengeData2016"
    shifted = np.asarray(Image.open(base / "annotations_detectron2" / "validation" / "ADE_val_00000001.png"))
    assert shifted.dtype == np.uint8 and shifted[5, 4] == 255 and shifted[0, 0] == 0
    pan = json.loads((base / "ade20k_panoptic_val.json").read_text())
    assert pan["images"][0] == {"id": "ADE_val_00000001", "file_name": "ADE_val_00000001.jpg", "height": H, "width": W}
    assert len(pan["categories"]) == 150 and sum(c["isthing"] for c in pan["categories"]) == 100
    info = {s["id"]: s for s in pan["annotations"][0]["segments_info"]}
    assert info[7001]["bbox"] == [0, 2, 2, 4] and info[2001]["area"] == 8  # areas after the beds are painted
    ins = json.loads((base / "ade20k_instance_val.json").read_text())
    assert [a["category_id"] for a in ins["annotations"]] == [7, 7] and len(ins["categories"]) == 100
    for name in ("ade20k_panoptic_val", "ade20k_panoptic_train", "ade20k_sem_seg_val"):
        _assert_reads_like(name, tmp_path, tiny)
    masks = [m for _, m in load_instances(get_dataset("ade20k_panoptic_val", tmp_path)[0])]
    np.testing.assert_array_equal(masks[1], tiny.panoptic["ADE_val_00000001"] == 7002)


def test_ade20k_150_resumes_from_finished_pngs(tmp_path: Path) -> None:
    write_ade20k_raw(tmp_path)
    prepare("ade20k_150", tmp_path, progress=False)
    base = tmp_path / "ADEChallengeData2016"
    first = json.loads((base / "ade20k_panoptic_val.json").read_text())
    (base / "ade20k_panoptic_val.json").unlink()  # as if killed after the PNGs
    (base / "annotations_detectron2" / "validation" / "ADE_val_00000001.png").unlink()
    lines = prepare("ade20k_150", tmp_path, progress=False)
    assert "semantic validation: wrote 1 file(s)" in lines[1] and "semantic training: wrote 0" in lines[0]
    assert json.loads((base / "ade20k_panoptic_val.json").read_text()) == first


def test_ade20k_847_resizes_and_writes_16_bit(tmp_path: Path) -> None:
    tiny = write_ade20k_full_raw(tmp_path)
    prepare("ade20k_847", tmp_path, progress=False)
    base = tmp_path / "ADE20K_2021_17_01"
    with Image.open(base / "annotations_detectron2" / "training" / "ADE_train_00000001.tif") as img:
        assert img.mode == "I;16" and img.size == (522, 512)  # shorter side 520 -> 512
        label = np.asarray(img)
    assert set(np.unique(label)) == {2, 65535} and (label[:255] == 2).all() and (label[257:] == 65535).all()
    with Image.open(base / "images_detectron2" / "training" / "ADE_train_00000001.jpg") as img:
        assert img.size == (522, 512)
    _assert_reads_like("ade20k_full_sem_seg_val", tmp_path, tiny)


@pytest.mark.parametrize("classes", [59, 459])
def test_pascal_context(tmp_path: Path, classes: int) -> None:
    tiny = write_pascal_context_raw(tmp_path, classes)
    prepare(f"pascal_context_{classes}", tmp_path, progress=False)
    _assert_reads_like(f"pascal_context_{classes}_sem_seg_val", tmp_path, tiny)
    _assert_reads_like(f"pascal_context_{classes}_sem_seg_train", tmp_path, tiny)


@pytest.mark.parametrize("classes", [20, 21])
def test_pascal_voc(tmp_path: Path, classes: int) -> None:
    tiny = write_pascal_voc_raw(tmp_path, classes)
    prepare(f"pascal_voc_{classes}", tmp_path, progress=False)
    _assert_reads_like(f"pascal_voc_{classes}_sem_seg_val", tmp_path, tiny)
    _assert_reads_like(f"pascal_voc_{classes}_sem_seg_train", tmp_path, tiny)


def test_cityscapes_without_cityscapesscripts_names_the_package(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write_cityscapes_raw(tmp_path)
    monkeypatch.setitem(sys.modules, "cityscapesscripts", None)  # import fails as if not installed
    with pytest.raises(DatasetError, match=r"pip install cityscapesscripts$"):
        prepare("cityscapes", tmp_path, progress=False)
    assert (tmp_path / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png").is_file()


def test_cityscapes_with_cityscapesscripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = write_cityscapes_raw(tmp_path)
    calls = []

    def convert2panoptic(cityscapesPath=None, outputFolder=None, useTrainId=False):  # noqa: N803  (its API)
        calls.append((cityscapesPath, outputFolder))
        write_cityscapes_panoptic(Path(cityscapesPath))

    module = types.ModuleType("cityscapesscripts.preparation.createPanopticImgs")
    module.convert2panoptic = convert2panoptic
    for name in ("cityscapesscripts", "cityscapesscripts.preparation"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    prepare("cityscapes", tmp_path, progress=False)
    prepare("cityscapes", tmp_path, progress=False)  # outputs exist: not converted again
    assert calls == [(str(tmp_path / "cityscapes" / "gtFine"),) * 2]
    _assert_reads_like("cityscapes_panoptic_val", tmp_path, tiny)


def test_mapillary_needs_nothing(tmp_path: Path) -> None:
    write_mapillary(tmp_path)
    assert "nothing to prepare" in prepare("mapillary_vistas", tmp_path, progress=False)[0]


def test_second_run_skips_everything(tmp_path: Path) -> None:
    write_pascal_voc_raw(tmp_path)
    prepare("pascal_voc_21", tmp_path, progress=False)
    lines = prepare("pascal_voc_21", tmp_path, progress=False)
    assert all("wrote 0 file(s)" in line for line in lines)


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_coco_stuff_raw(tmp_path)
    from vocabseg import fileio

    written = []

    def crash(src: str, dst: str) -> None:
        written.append(Path(src).name)
        raise KeyboardInterrupt  # interrupted between writing the temp file and renaming it

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare("coco_stuff", tmp_path, progress=False)
    out_dir = tmp_path / "coco" / "stuffthingmaps_detectron2" / "val2017"
    assert len(written) == 1 and written[0].startswith(".000000000139.png.")  # a hidden temp file was written
    assert list(out_dir.iterdir()) == []  # nothing under the final name, and the temp file is removed
    monkeypatch.undo()
    assert "val: wrote 1 file(s)" in prepare("coco_stuff", tmp_path, progress=False)[1]


def test_prepare_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset family 'nope'"):
        prepare("nope", tmp_path)
    with pytest.raises(DatasetError, match=r"nothing to prepare for ade20k_150: .*annotations/training not found"):
        prepare("ade20k_150", tmp_path, progress=False)
    with pytest.raises(DatasetError, match="index_ade20k.pkl not found"):
        prepare("ade20k_847", tmp_path, progress=False)
    with pytest.raises(DatasetError, match="trainval_merged.json not found"):
        prepare("pascal_context_59", tmp_path, progress=False)
    with pytest.raises(DatasetError, match="not found; pass the folder"):
        prepare("coco_stuff", tmp_path / "missing")
