"""The mmsegmentation layouts the official Cascade-CLIP configs read (its README, mmseg's dataset_prepare.md).

Outputs, beside the raw releases::

    VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}   read as released
    VOCdevkit/VOC2012/SegmentationClassAug/<stem>.png, ImageSets/Segmentation/aug.txt   from SBD
    VOCdevkit/VOC2010/SegmentationClassContext/<stem>.png   uint8: 0 background, k + 1 for PC-59 class k
    VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt   sorted stems
    coco_stuff164k/annotations/<split>2017/<stem>_labelTrainIds.png   uint8: 0..170, 255 ignore

Context: the labels of vocabseg's PC-59 conversion (``pascal.context_59``, from the released
``trainval/*.mat``) shifted up by one with unlabelled as 0, which is what mmseg's
``tools/convert_datasets/pascal_context.py`` writes through the Detail API. COCO-Stuff: the
stuffthingmaps unzipped into ``coco_stuff164k/annotations`` mapped to train ids with the table
of mmseg's ``tools/convert_datasets/coco_stuff164k.py`` (equal to vocabseg's COCO-Stuff table).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vocabseg.data.categories import raw_value_table
from vocabseg.data.convert.common import Report, apply_lut, convert_each, progress, read_raw, save_image
from vocabseg.data.convert.pascal import CONTEXT, VOC, _context_stems, _load_mat_label, context_59
from vocabseg.data.errors import DatasetError
from vocabseg.fileio import atomic_write
from vocabseg.text.builtin import get_vocabulary

COCO_STUFF = "coco_stuff164k"
TRAIN_IDS = "_labelTrainIds.png"


def context_59_mmseg(label_map: np.ndarray) -> np.ndarray:
    """459-label LabelMap -> uint8 mmseg PC-59 value: 0 background (and other labels), k + 1 for class k."""
    index = context_59(label_map).astype(np.int16)  # [H, W] 0..58, 255 unlabelled
    return np.where(index == 255, 0, index + 1).astype(np.uint8)


def _write_lines(path: Path, lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


SBD = "benchmark_RELEASE"  # the SBD release (Hariharan et al.), unpacked beside VOCdevkit


def sbd_label(mat_file: Path) -> np.ndarray:
    """SBD ``dataset/cls/<stem>.mat`` -> uint8 VOC-valued map (0 background, 1..20, 255 boundary)."""
    from scipy.io import loadmat

    return np.asarray(loadmat(mat_file)["GTcls"][0]["Segmentation"][0], dtype=np.uint8)


def prepare_cascade_voc_20(root: Path, *, show: bool = True) -> Report:
    """VOC 2012 val and train are read as released; the training set's SBD part (``aug``) is converted
    as mmseg's ``voc_aug.py`` does: SBD's class maps to ``SegmentationClassAug/<stem>.png`` and
    ``ImageSets/Segmentation/aug.txt`` = SBD train + val minus VOC train and val (9,118 images)."""
    report = Report()
    report.lines.append(f"cascade_voc_20 val/train: nothing to prepare, {root / VOC} is read as released")
    report.done += 1
    sbd = root / SBD / "dataset"
    if not (sbd / "cls").is_dir():
        report.split_missing("cascade_voc_20 trainaug (SBD part)", sbd / "cls",
                             "unpack benchmark.tgz (SBD) into the datasets root for the official training set")
        return report
    out_labels = root / VOC / "SegmentationClassAug"
    written, skipped = convert_each(sorted((sbd / "cls").glob("*.mat")), lambda src: out_labels / f"{src.stem}.png",
                                    lambda src, dst: save_image(sbd_label(src), dst),
                                    desc="SBD (mmseg SegmentationClassAug)", show=show)
    lists = root / VOC / "ImageSets" / "Segmentation"
    voc = {stem for split in ("train", "val") for stem in _read_lines(lists / f"{split}.txt")}
    sbd_stems = {stem for split in ("train", "val") for stem in _read_lines(sbd / f"{split}.txt")}
    _write_lines(lists / "aug.txt", sorted(sbd_stems - voc))
    report.split_done("cascade_voc_20 trainaug (SBD part)", written + 1, skipped, out_labels)
    return report


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the VOC 2012 and SBD releases list their splits there")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def prepare_cascade_context_59(root: Path, *, show: bool = True) -> Report:
    """Writes SegmentationClassContext and ImageSets/SegmentationContext as mmseg's converter does."""
    report = Report()
    out_labels = root / CONTEXT / "SegmentationClassContext"
    for split, stems in _context_stems(root).items():
        written = skipped = 0
        for stem in progress(sorted(stems), f"PASCAL Context 59 (mmseg) {split}", show):
            label = out_labels / f"{stem}.png"
            if label.exists():
                skipped += 1
                continue
            save_image(context_59_mmseg(_load_mat_label(root / CONTEXT / "trainval" / f"{stem}.mat")), label)
            written += 1
        listing = root / CONTEXT / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        _write_lines(listing, sorted(stems))
        report.split_done(f"cascade_context_59 {split}", written + 1, skipped, out_labels)
    return report


def prepare_cascade_coco_stuff_171(root: Path, *, show: bool = True) -> Report:
    """Writes ``<stem>_labelTrainIds.png`` beside each stuffthingmap in coco_stuff164k/annotations."""
    # raw value = COCO category id - 1; ids the 171 classes lack -> 255
    lut = np.asarray(raw_value_table(get_vocabulary("coco_stuff"), 256, offset=1), dtype=np.uint8)
    report = Report()
    for split in ("train", "val"):
        folder = root / COCO_STUFF / "annotations" / f"{split}2017"
        if not folder.is_dir():
            report.split_missing(f"cascade_coco_stuff_171 {split}", folder,
                                 "unzip stuffthingmaps_trainval2017.zip into it")
            continue
        sources = [p for p in folder.glob("*.png") if not p.name.endswith(TRAIN_IDS)]
        written, skipped = convert_each(
            sources, lambda src: src.with_name(src.stem + TRAIN_IDS),
            lambda src, dst: save_image(apply_lut(read_raw(src), lut, 255), dst),
            desc=f"COCO-Stuff (mmseg) {split}", show=show)
        report.split_done(f"cascade_coco_stuff_171 {split}", written, skipped, folder)
    return report
