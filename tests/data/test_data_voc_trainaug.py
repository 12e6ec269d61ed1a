"""Cascade-CLIP's VOC training set: VOC train + the SBD images in neither VOC split (mmseg's voc12aug)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from tiny_datasets import write_cascade_voc
from tiny_datasets.common import H, W, image, write_jpg, write_palette_png
from tiny_datasets.mmseg import VOC_OTHER, VOC_VAL

from vocabseg.data import get_dataset, load_semantic, prepare

VOC = Path("VOCdevkit") / "VOC2012"
SBD_ONLY, SBD_IN_VOC_VAL = "2008_000123", VOC_VAL  # SBD also annotates VOC val images: they must stay out


def _write_sbd(root: Path, stems: dict[str, int]) -> None:
    """SBD's release: dataset/cls/<stem>.mat (GTcls.Segmentation) and its train/val lists."""
    cls = root / "benchmark_RELEASE" / "dataset" / "cls"
    cls.mkdir(parents=True)
    for stem, value in stems.items():
        label = np.full((H, W), value, dtype=np.uint8)
        label[0, :] = 255  # SBD has no boundary class but may hold 255; kept as ignore
        savemat(cls / f"{stem}.mat", {"GTcls": {"Segmentation": label, "CategoriesPresent": np.array([value])}})
    (cls.parent / "train.txt").write_text(f"{SBD_ONLY}\n")
    (cls.parent / "val.txt").write_text(f"{SBD_IN_VOC_VAL}\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_cascade_voc(tmp_path)
    # VOC train: the second image of the tiny VOC folder
    (tmp_path / VOC / "ImageSets" / "Segmentation" / "train.txt").write_text(f"{VOC_OTHER}\n")
    write_jpg(tmp_path / VOC / "JPEGImages" / f"{SBD_ONLY}.jpg", image(50))
    _write_sbd(tmp_path, {SBD_ONLY: 12, SBD_IN_VOC_VAL: 3})
    return tmp_path


def test_prepare_converts_sbd_and_lists_only_new_images(root: Path) -> None:
    prepare("cascade_voc_20", root, progress=False)
    aug = root / VOC / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == sorted([SBD_ONLY, SBD_IN_VOC_VAL])
    assert (root / VOC / "ImageSets" / "Segmentation" / "aug.txt").read_text() == f"{SBD_ONLY}\n"
    prepare("cascade_voc_20", root, progress=False)  # a rerun keeps what is there
    assert (root / VOC / "ImageSets" / "Segmentation" / "aug.txt").read_text() == f"{SBD_ONLY}\n"


def test_trainaug_reads_voc_train_then_the_sbd_part_with_reduce_zero_label(root: Path) -> None:
    prepare("cascade_voc_20", root, progress=False)
    dataset = get_dataset("cascade_voc_20_trainaug", root)
    assert [record.image_id for record in dataset] == [VOC_OTHER, SBD_ONLY]
    sbd = load_semantic(dataset[1].semantic)
    assert (sbd[1:] == 11).all() and (sbd[0] < 0).all()  # raw 12 (dog) -> class 11; 255 ignored
    assert dataset.unseen == (15, 16, 17, 18, 19)


def test_trainaug_without_sbd_names_what_to_unpack(tmp_path: Path) -> None:
    write_cascade_voc(tmp_path)
    (tmp_path / VOC / "ImageSets" / "Segmentation" / "train.txt").write_text(f"{VOC_OTHER}\n")
    lines = prepare("cascade_voc_20", tmp_path, progress=False)
    assert any("benchmark.tgz (SBD)" in line for line in lines)
    write_palette_png(tmp_path / VOC / "SegmentationClass" / "unused.png", np.zeros((H, W), np.uint8))
    with pytest.raises(Exception, match="aug.txt|SegmentationClassAug"):
        get_dataset("cascade_voc_20_trainaug", tmp_path)
