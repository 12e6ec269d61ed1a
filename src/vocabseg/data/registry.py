"""The registered dataset splits: a plain dict of small functions.

Each function returns the ``SplitSpec`` of one split; ``get_dataset`` reads it.
Splits are named as in the official FC-CLIP registration, minus its
"openvocab_" prefix; their vocabularies are the built-in ones of the same
class order, so contiguous category indices line up with official results.
A split's ``prepare`` name (also its vocabulary's name) is the argument of
``vocabseg data prepare``. The ``cascade_*`` splits are the Cascade-CLIP zero-shot
benchmarks in the mmseg layouts of its official configs, with their official unseen
classes and mmseg's IoU rule.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vocabseg.data.errors import DatasetError
from vocabseg.data.readers import read_cityscapes, read_panoptic_json, read_semantic_folder
from vocabseg.data.records import Dataset, Record
from vocabseg.data.spec import SplitSpec, check_tasks
from vocabseg.errors import did_you_mean
from vocabseg.text.zero_shot import unseen_classes

_PAN_SEM_INS = ("panoptic", "semantic", "instance")
_SEM = ("semantic",)

# How to get each raw release; ROOT becomes the datasets root in messages.
_COCO = (
    "download the COCO 2017 images, annotations and panoptic annotations from https://cocodataset.org "
    "into ROOT/coco (unzip annotations/panoptic_*2017.zip next to them)"
)
_COCO_STUFF = (
    "download the COCO 2017 images (https://cocodataset.org) into ROOT/coco and unzip "
    "stuffthingmaps_trainval2017.zip (https://github.com/nightrome/cocostuff) into ROOT/coco/stuffthingmaps"
)
_ADE = (
    "download ADEChallengeData2016.zip and annotations_instance.tar from http://sceneparsing.csail.mit.edu "
    "and unpack them into ROOT/ADEChallengeData2016"
)
_ADE_FULL = "download ADE20K_2021_17_01 from https://groups.csail.mit.edu/vision/datasets/ADE20K and unzip it into ROOT"
_CONTEXT = (
    "untar VOCtrainval_03-May-2010.tar into ROOT, "
    "trainval.tar.gz (https://www.cs.stanford.edu/~roozbeh/pascal-context) "
    "into ROOT/VOCdevkit/VOC2010 and put trainval_merged.json there"
)
_VOC = "untar VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012) into ROOT"
_CITYSCAPES = (
    "download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com "
    "into ROOT/cityscapes"
)
_MAPILLARY = "download Mapillary Vistas v1.2 from https://www.mapillary.com/dataset/vistas into ROOT/mapillary_vistas"
_CONTEXT_MMSEG = (
    "untar VOCtrainval_03-May-2010.tar into ROOT and trainval.tar.gz "
    "(https://www.cs.stanford.edu/~roozbeh/pascal-context) into ROOT/VOCdevkit/VOC2010 with trainval_merged.json there"
)
_COCO_STUFF_MMSEG = (
    "unzip the COCO 2017 images into ROOT/coco_stuff164k/images and stuffthingmaps_trainval2017.zip "
    "(https://github.com/nightrome/cocostuff) into ROOT/coco_stuff164k/annotations"
)

_ADE_DIRS = {"train": "training", "val": "validation"}


def _coco_panoptic(split: str) -> SplitSpec:
    return SplitSpec(
        name=f"coco_panoptic_{split}", vocabulary="coco_panoptic", tasks=_PAN_SEM_INS, prepare="coco_panoptic",
        download=_COCO, read=read_panoptic_json, images=f"coco/{split}2017",
        panoptic_json=f"coco/annotations/panoptic_{split}2017.json", panoptic_dir=f"coco/panoptic_{split}2017",
        semantic_dir=f"coco/panoptic_semseg_{split}2017", instance_json=f"coco/annotations/instances_{split}2017.json",
        derived=("semantic",),
    )  # fmt: skip


def _coco_stuff(split: str) -> SplitSpec:
    return SplitSpec(
        name=f"coco_stuff_sem_seg_{split}", vocabulary="coco_stuff", tasks=_SEM, prepare="coco_stuff",
        download=_COCO_STUFF, read=read_semantic_folder, images=f"coco/{split}2017",
        semantic_dir=f"coco/stuffthingmaps_detectron2/{split}2017", derived=("semantic",),
    )  # fmt: skip


def _ade20k_panoptic(split: str) -> SplitSpec:
    base = "ADEChallengeData2016"
    return SplitSpec(
        name=f"ade20k_panoptic_{split}", vocabulary="ade20k_150", tasks=_PAN_SEM_INS, prepare="ade20k_150",
        download=_ADE, read=read_panoptic_json, images=f"{base}/images/{_ADE_DIRS[split]}",
        panoptic_json=f"{base}/ade20k_panoptic_{split}.json", panoptic_dir=f"{base}/ade20k_panoptic_{split}",
        semantic_dir=f"{base}/annotations_detectron2/{_ADE_DIRS[split]}",
        instance_json=f"{base}/ade20k_instance_{split}.json", derived=("panoptic", "semantic", "instance"),
        raw_semantic_dir=f"{base}/annotations/{_ADE_DIRS[split]}",
    )  # fmt: skip


def _ade20k_semantic(split: str) -> SplitSpec:
    base = "ADEChallengeData2016"
    return SplitSpec(
        name=f"ade20k_sem_seg_{split}", vocabulary="ade20k_150", tasks=_SEM, prepare="ade20k_150",
        download=_ADE, read=read_semantic_folder, images=f"{base}/images/{_ADE_DIRS[split]}",
        semantic_dir=f"{base}/annotations_detectron2/{_ADE_DIRS[split]}", derived=("semantic",),
        raw_semantic_dir=f"{base}/annotations/{_ADE_DIRS[split]}",
    )  # fmt: skip


def _ade20k_full(split: str) -> SplitSpec:
    base = "ADE20K_2021_17_01"
    return SplitSpec(
        name=f"ade20k_full_sem_seg_{split}", vocabulary="ade20k_847", tasks=_SEM, prepare="ade20k_847",
        download=_ADE_FULL, read=read_semantic_folder, images=f"{base}/images_detectron2/{_ADE_DIRS[split]}",
        semantic_dir=f"{base}/annotations_detectron2/{_ADE_DIRS[split]}", semantic_ext=".tif",
        ignore_value=65535, label_bits=16, derived=("images", "semantic"),
    )  # fmt: skip


def _pascal_context(classes: int, split: str) -> SplitSpec:
    big = classes == 459  # 459 classes do not fit uint8: 16-bit TIFF
    return SplitSpec(
        name=f"pascal_context_{classes}_sem_seg_{split}", vocabulary=f"pascal_context_{classes}", tasks=_SEM,
        prepare=f"pascal_context_{classes}", download=_CONTEXT, read=read_semantic_folder,
        images=f"pascal_ctx_d2/images/{_ADE_DIRS[split]}",
        semantic_dir=f"pascal_ctx_d2/annotations_ctx{classes}/{_ADE_DIRS[split]}",
        semantic_ext=".tif" if big else ".png", ignore_value=65535 if big else 255, label_bits=16 if big else 8,
        derived=("images", "semantic"),
    )  # fmt: skip


def _pascal_voc(classes: int, split: str) -> SplitSpec:
    return SplitSpec(
        name=f"pascal_voc_{classes}_sem_seg_{split}", vocabulary=f"pascal_voc_{classes}", tasks=_SEM,
        prepare=f"pascal_voc_{classes}", download=_VOC, read=read_semantic_folder,
        images=f"pascal_voc_d2/images/{_ADE_DIRS[split]}",
        semantic_dir=f"pascal_voc_d2/annotations_pascal{classes}/{_ADE_DIRS[split]}", derived=("images", "semantic"),
        raw_semantic_dir="VOCdevkit/VOC2012/SegmentationClass" if classes == 20 else None,  # VOC-21 keeps raw values
    )  # fmt: skip


# The official FC-CLIP evaluation configs test Cityscapes and Mapillary Vistas at 1024/2560.
HIGH_RES_TEST_SIZE = (1024, 2560)


def _cityscapes(split: str) -> SplitSpec:
    return SplitSpec(
        name=f"cityscapes_panoptic_{split}", vocabulary="cityscapes", tasks=_PAN_SEM_INS, prepare="cityscapes",
        download=_CITYSCAPES, read=read_cityscapes, images=f"cityscapes/leftImg8bit/{split}", image_ext=".png",
        panoptic_json=f"cityscapes/gtFine/cityscapes_panoptic_{split}.json",
        panoptic_dir=f"cityscapes/gtFine/cityscapes_panoptic_{split}", semantic_dir=f"cityscapes/gtFine/{split}",
        derived=("panoptic", "semantic", "instance"), test_size=HIGH_RES_TEST_SIZE,
    )  # fmt: skip


def _mapillary(split: str) -> SplitSpec:
    base = f"mapillary_vistas/{_ADE_DIRS[split]}"
    return SplitSpec(
        name=f"mapillary_vistas_panoptic_{split}", vocabulary="mapillary_vistas", tasks=("panoptic", "semantic"),
        prepare="mapillary_vistas", download=_MAPILLARY, read=read_panoptic_json, images=f"{base}/images",
        panoptic_json=f"{base}/panoptic/panoptic_2018.json", panoptic_dir=f"{base}/panoptic",
        semantic_dir=f"{base}/labels", ignore_value=65,  # Mapillary v1.2 labels: 0..64 classes, 65 unlabelled
        test_size=HIGH_RES_TEST_SIZE,
    )  # fmt: skip


def _cascade_voc_20(split: str) -> SplitSpec:
    voc = "VOCdevkit/VOC2012"
    return SplitSpec(
        name=f"cascade_voc_20_{split}", vocabulary="cascade_voc_20", tasks=_SEM, prepare="cascade_voc_20",
        download=_VOC, read=read_semantic_folder, images=f"{voc}/JPEGImages", semantic_dir=f"{voc}/SegmentationClass",
        split_file=f"{voc}/ImageSets/Segmentation/{split}.txt", reduce_zero_label=True,
        unseen=unseen_classes("cascade_voc_20"), iou_rule="mmseg",
    )  # fmt: skip


def _cascade_voc_20_trainaug() -> SplitSpec:
    """The official training set: VOC train (SegmentationClass, train.txt) then the SBD images that are
    in neither VOC split (SegmentationClassAug, aug.txt), as mmseg's two-part voc12aug dataset."""
    return replace(_cascade_voc_20("train"), name="cascade_voc_20_trainaug", read=read_voc_trainaug,
                   derived=("semantic",))


def read_voc_trainaug(spec: SplitSpec, root: Path, tasks: frozenset[str]) -> list[Record]:
    voc = "VOCdevkit/VOC2012"
    sbd = replace(spec, semantic_dir=f"{voc}/SegmentationClassAug", split_file=f"{voc}/ImageSets/Segmentation/aug.txt")
    return read_semantic_folder(spec, root, tasks) + read_semantic_folder(sbd, root, tasks)


def _cascade_context_59(split: str) -> SplitSpec:
    voc = "VOCdevkit/VOC2010"
    return SplitSpec(
        name=f"cascade_context_59_{split}", vocabulary="cascade_context_59", tasks=_SEM,
        prepare="cascade_context_59", download=_CONTEXT_MMSEG, read=read_semantic_folder, images=f"{voc}/JPEGImages",
        semantic_dir=f"{voc}/SegmentationClassContext", split_file=f"{voc}/ImageSets/SegmentationContext/{split}.txt",
        reduce_zero_label=True, derived=("semantic",), unseen=unseen_classes("cascade_context_59"), iou_rule="mmseg",
    )  # fmt: skip


def _cascade_coco_stuff_171(split: str) -> SplitSpec:
    return SplitSpec(
        name=f"cascade_coco_stuff_171_{split}", vocabulary="cascade_coco_stuff_171", tasks=_SEM,
        prepare="cascade_coco_stuff_171", download=_COCO_STUFF_MMSEG, read=read_semantic_folder,
        images=f"coco_stuff164k/images/{split}2017", semantic_dir=f"coco_stuff164k/annotations/{split}2017",
        semantic_ext="_labelTrainIds.png", derived=("semantic",), unseen=unseen_classes("cascade_coco_stuff_171"),
        iou_rule="mmseg",
    )  # fmt: skip


DATASETS: dict[str, Callable[[], SplitSpec]] = {
    "coco_panoptic_train": lambda: _coco_panoptic("train"),
    "coco_panoptic_val": lambda: _coco_panoptic("val"),
    "coco_stuff_sem_seg_train": lambda: _coco_stuff("train"),
    "coco_stuff_sem_seg_val": lambda: _coco_stuff("val"),
    "ade20k_panoptic_train": lambda: _ade20k_panoptic("train"),
    "ade20k_panoptic_val": lambda: _ade20k_panoptic("val"),
    "ade20k_sem_seg_train": lambda: _ade20k_semantic("train"),
    "ade20k_sem_seg_val": lambda: _ade20k_semantic("val"),
    "ade20k_full_sem_seg_train": lambda: _ade20k_full("train"),
    "ade20k_full_sem_seg_val": lambda: _ade20k_full("val"),
    "pascal_context_59_sem_seg_train": lambda: _pascal_context(59, "train"),
    "pascal_context_59_sem_seg_val": lambda: _pascal_context(59, "val"),
    "pascal_context_459_sem_seg_train": lambda: _pascal_context(459, "train"),
    "pascal_context_459_sem_seg_val": lambda: _pascal_context(459, "val"),
    "pascal_voc_20_sem_seg_train": lambda: _pascal_voc(20, "train"),
    "pascal_voc_20_sem_seg_val": lambda: _pascal_voc(20, "val"),
    "pascal_voc_21_sem_seg_train": lambda: _pascal_voc(21, "train"),
    "pascal_voc_21_sem_seg_val": lambda: _pascal_voc(21, "val"),
    "cityscapes_panoptic_train": lambda: _cityscapes("train"),
    "cityscapes_panoptic_val": lambda: _cityscapes("val"),
    "mapillary_vistas_panoptic_train": lambda: _mapillary("train"),
    "mapillary_vistas_panoptic_val": lambda: _mapillary("val"),
    # Cascade-CLIP zero-shot benchmarks in the mmseg layouts of its official configs
    "cascade_voc_20_trainaug": _cascade_voc_20_trainaug,
    "cascade_voc_20_val": lambda: _cascade_voc_20("val"),
    "cascade_context_59_train": lambda: _cascade_context_59("train"),
    "cascade_context_59_val": lambda: _cascade_context_59("val"),
    "cascade_coco_stuff_171_train": lambda: _cascade_coco_stuff_171("train"),
    "cascade_coco_stuff_171_val": lambda: _cascade_coco_stuff_171("val"),
}


def list_datasets() -> list[str]:
    """Registered split names, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> SplitSpec:
    """The ``SplitSpec`` of a registered split (no file is touched)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r};{_suggestion(name, list_datasets())} registered: "
                           f"{', '.join(list_datasets())}")
    return DATASETS[name]()


def get_dataset(name: str, root: str | Path, *, tasks: set[str] | None = None) -> Dataset:
    """Reads a registered split from the datasets root.

    Args:
        name: A name from ``list_datasets()``, e.g. "ade20k_panoptic_val".
        root: The folder holding the dataset folders (coco/, ADEChallengeData2016/, ...).
        tasks: Subset of the split's tasks to read labels for; default all. Files
            of other tasks need not exist.

    Returns:
        The split's records.

    Raises:
        DatasetError: If a needed file is missing or malformed; the message names
            the file and the fix.
    """
    spec = get_spec(name)
    wanted = check_tasks(spec, tasks)
    records = spec.read(spec, Path(root), wanted)
    ordered = tuple(t for t in spec.tasks if t in wanted)
    return Dataset(name=name, vocabulary=spec.vocabulary, tasks=ordered, root=Path(root), records=tuple(records),
                   test_size=spec.test_size, unseen=spec.unseen, iou_rule=spec.iou_rule)


def splits_of(name: str) -> list[str]:
    """A split name itself, or the validation splits of a prepare (family) name."""
    if name in DATASETS:
        return [name]
    splits = [n for n in list_datasets() if n.endswith("_val") and get_spec(n).prepare == name]
    if not splits:
        families = sorted({get_spec(n).prepare for n in DATASETS})
        raise DatasetError(f"unknown dataset {name!r};{_suggestion(name, [*list_datasets(), *families])} use a split "
                           f"({', '.join(list_datasets())}) or a family ({', '.join(families)})")
    return splits


def _suggestion(name: str, known: list[str]) -> str:
    """`` did you mean 'x'?`` for a near miss of a known name (case and dashes aside), else ""."""
    close = did_you_mean(name.lower().replace("-", "_"), known)
    return f" did you mean {close!r}?" if close else ""
