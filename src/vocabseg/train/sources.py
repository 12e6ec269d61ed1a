"""Where training examples come from: files on disk, or synthetic shapes.

A source is a sequence of ``RawExample`` (image + panoptic id map + segments).
Semantic label maps become id maps too: each class present is one segment, so
one training pipeline serves panoptic and semantic data.

Formats (``data.format`` in a preset):

* ``registered``: a split of ``vocabseg.data`` (e.g. ``coco_panoptic_train``).
* ``panoptic_json``: any COCO-format panoptic folder (images, PNGs, json).
* ``semantic``: an image folder + a label-map folder (same file stems) + a class file.
* ``synthetic``: coloured shapes made on the fly (smoke tests, no download).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, overload

import numpy as np

from vocabseg.data.errors import DatasetError, read_json, require_dir, require_keys
from vocabseg.data.io import load_image, load_panoptic, load_semantic
from vocabseg.data.records import IGNORE_LABEL, Record, Segment, SemanticLabel
from vocabseg.text import VocabClass, Vocabulary, parse_vocabulary
from vocabseg.train.transforms import VOID_ID

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class RawExample(NamedTuple):
    """One example before augmentation."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    ids: np.ndarray  # [H, W] int64 segment ids, VOID_ID where unlabelled
    segments: tuple[Segment, ...]


class ExampleFiles(NamedTuple):
    """The files of one example: a panoptic PNG with its segments, or a label map."""

    image: Path
    panoptic_png: Path | None = None
    segments: tuple[Segment, ...] = ()
    label_map: SemanticLabel | None = None


def files_from_record(record: Record) -> ExampleFiles:
    """Adapts a ``vocabseg.data`` record (panoptic preferred over semantic)."""
    if record.panoptic is not None:
        return ExampleFiles(record.image, record.panoptic.png, record.panoptic.segments)
    if record.semantic is not None:
        return ExampleFiles(record.image, label_map=record.semantic)
    raise DatasetError(f"image {record.image} has neither panoptic nor semantic labels; "
                       "read the dataset with one of those tasks")


def has_targets(files: ExampleFiles) -> bool:
    """False for panoptic examples whose segments are all crowd (the official loader drops them)."""
    return files.label_map is not None or any(not s.iscrowd for s in files.segments)


def semantic_to_panoptic(classes: np.ndarray,
                         is_thing: Sequence[bool] | None = None) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """[H, W] class indices (IGNORE_LABEL = unlabelled) -> id map with one segment per class (id = class + 1).

    Args:
        is_thing: the vocabulary's thing flag of each class (None: every class stuff).
    """
    labelled = classes != IGNORE_LABEL
    ids = np.where(labelled, classes + 1, VOID_ID).astype(np.int64)
    present, areas = np.unique(classes[labelled], return_counts=True)
    return ids, tuple(Segment(int(c) + 1, int(c), is_thing=bool(is_thing[c]) if is_thing is not None else False,
                              iscrowd=False, area=int(n)) for c, n in zip(present, areas))


class ExampleSource(Sequence[RawExample]):
    """A sequence of training examples; subclasses give ``__len__`` and ``example(index)``."""

    def example(self, index: int) -> RawExample:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> RawExample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RawExample]: ...

    def __getitem__(self, index: int | slice) -> RawExample | Sequence[RawExample]:
        if isinstance(index, slice):
            return [self.example(i) for i in range(len(self))[index]]
        return self.example(index)


class FileSource(ExampleSource):
    """Examples read from disk, checked against the number of classes."""

    def __init__(self, files: Sequence[ExampleFiles], *, num_classes: int, is_thing: Sequence[bool] | None = None):
        """``is_thing``: the vocabulary's thing flag per class, for the segments of label maps (None: stuff)."""
        if not files:
            raise DatasetError("the training set has no image with a usable annotation; "
                               "check the data.* paths of the preset")
        self.files = list(files)
        self.num_classes = num_classes
        self.is_thing = None if is_thing is None else tuple(is_thing)

    def __len__(self) -> int:
        return len(self.files)

    def example(self, index: int) -> RawExample:
        files = self.files[index]
        image = load_image(files.image)
        if files.panoptic_png is not None:
            ids, segments = load_panoptic(files.panoptic_png), files.segments
            label_file = files.panoptic_png
        elif files.label_map is not None:
            ids, segments = self._semantic(files.label_map)
            label_file = files.label_map.path
        else:
            raise DatasetError(f"image {files.image} has neither a panoptic PNG nor a label map")
        if ids.shape != image.shape[:2]:
            raise DatasetError(f"label {label_file} is {ids.shape[1]}x{ids.shape[0]} but image {files.image} is "
                               f"{image.shape[1]}x{image.shape[0]}; they must be the same size: re-export the labels")
        return RawExample(image, ids, segments)

    def _semantic(self, label: SemanticLabel) -> tuple[np.ndarray, tuple[Segment, ...]]:
        classes = load_semantic(label)
        top = int(classes.max(initial=IGNORE_LABEL))
        if top >= self.num_classes:
            raise DatasetError(f"label map {label.path} holds class {top} but the vocabulary has {self.num_classes} "
                               "classes (0-based); list every class in data.vocabulary or set data.ignore_label")
        return semantic_to_panoptic(classes, self.is_thing)


def vocabulary_from_categories(categories: list[dict], where: Path) -> Vocabulary:
    """A vocabulary in the order of a panoptic json's categories (ids kept as dataset_id)."""
    classes = []
    for cat in categories:
        require_keys(cat, ("id", "name"), f"a category of {where}", "give every category an id and a name")
        classes.append(VocabClass(names=(str(cat["name"]),), is_thing=bool(cat.get("isthing", 1)),
                                  dataset_id=int(cat["id"])))
    return Vocabulary(name=Path(where).stem, classes=tuple(classes))


def read_panoptic_folder(*, images: Path, panoptic_dir: Path, panoptic_json: Path,
                         vocabulary: Vocabulary | None) -> tuple[list[ExampleFiles], Vocabulary]:
    """Examples of a COCO-format panoptic folder.

    Args:
        vocabulary: class order to use, matched on the json's category ids
            (``VocabClass.dataset_id``); None builds it from the json's categories.
    """
    fix = "point data.images, data.panoptic_dir and data.panoptic_json at a COCO-format panoptic dataset"
    data = read_json(Path(panoptic_json), fix)
    require_keys(data, ("images", "annotations", "categories"), f"panoptic json {panoptic_json}", fix)
    vocabulary = vocabulary or vocabulary_from_categories(data["categories"], Path(panoptic_json))
    table = {c.dataset_id if c.dataset_id is not None else i: i for i, c in enumerate(vocabulary.classes)}
    names = {img["id"]: img["file_name"] for img in data["images"]}
    things = [c.is_thing for c in vocabulary.classes]
    examples = [_panoptic_example(ann, names, table, things, Path(images), Path(panoptic_dir), Path(panoptic_json))
                for ann in data["annotations"]]
    pngs = [e.panoptic_png for e in examples if e.panoptic_png is not None]  # every example has one
    _require_files([e.image for e in examples] + pngs, fix)
    return examples, vocabulary


def _panoptic_example(ann: dict, names: dict, table: dict[int, int], things: list[bool], images: Path,
                      panoptic_dir: Path, where: Path) -> ExampleFiles:
    require_keys(ann, ("image_id", "file_name", "segments_info"), f"an annotation in {where}", "export the json again")
    if ann["image_id"] not in names:
        raise DatasetError(f"{where}: image {ann['image_id']} is annotated but not listed in 'images'; "
                           "export the json again")
    segments = []
    for seg in ann["segments_info"]:
        if seg["category_id"] not in table:
            raise DatasetError(f"{where}: category id {seg['category_id']} is not in the vocabulary; "
                               "set data.vocabulary to the classes of this dataset "
                               "(or leave it empty to use the json's)")
        category = table[seg["category_id"]]
        segments.append(Segment(int(seg["id"]), category, is_thing=things[category],
                                iscrowd=bool(seg.get("iscrowd", 0)), area=int(seg.get("area", 0))))
    return ExampleFiles(images / names[ann["image_id"]], panoptic_dir / ann["file_name"], tuple(segments))


def read_label_folder(*, images: Path, labels: Path, ignore_label: int) -> list[ExampleFiles]:
    """Examples of an image folder and a label-map folder (``<stem>.png`` or ``.tif``; value = class index)."""
    fix = "point data.images and data.labels at the image and label-map folders"
    image_files = sorted(p for p in require_dir(Path(images), fix).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    require_dir(Path(labels), fix)
    examples = []
    for image in image_files:
        candidates = (Path(labels) / (image.stem + ext) for ext in (".png", ".tif"))
        label = next((path for path in candidates if path.is_file()), None)
        if label is None:
            raise DatasetError(f"image {image} has no label map {Path(labels) / (image.stem + '.png')}; "
                               "give every image a label map with the same file stem")
        examples.append(ExampleFiles(image, label_map=SemanticLabel(path=label, ignore_value=ignore_label)))
    return examples


def _require_files(paths: list[Path], fix: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(paths)} files are missing, e.g. {missing[0]}; {fix}")


SHAPES_VOCABULARY = "red square; green disc; grey floor [stuff]"
_SHAPE_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [128, 128, 128]], dtype=np.uint8)  # per class


class SyntheticShapes(ExampleSource):
    """Images of a grey floor with a red square and/or a green disc; deterministic per index.

    Class 0 "red square" and 1 "green disc" are things, 2 "grey floor" is stuff.
    """

    vocabulary = parse_vocabulary(SHAPES_VOCABULARY, name="synthetic_shapes")

    def __init__(self, *, num_images: int, size: int, seed: int = 0):
        self.num_images, self.size, self.seed = num_images, size, seed

    def __len__(self) -> int:
        return self.num_images

    def example(self, index: int) -> RawExample:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        size = self.size
        ids = np.full((size, size), 3, dtype=np.int64)  # segment 3 = the floor
        yy, xx = np.mgrid[:size, :size]
        things = [0, 1] if index % 3 == 0 else [index % 3 - 1]  # both shapes, or only one
        for cls in things:
            half = int(rng.integers(size // 8, size // 4))
            cy, cx = (int(v) for v in rng.integers(half, size - half, size=2))
            if cls == 0:  # a square
                inside = (abs(yy - cy) < half) & (abs(xx - cx) < half)
            else:  # a disc
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 < half**2
            ids[inside] = cls + 1  # segment id = class + 1
        image = _SHAPE_COLOURS[ids - 1]  # [H, W, 3]: the colour of each pixel's class
        present, areas = np.unique(ids, return_counts=True)
        classes = self.vocabulary.classes
        return RawExample(image, ids, tuple(Segment(int(i), int(i) - 1, is_thing=classes[int(i) - 1].is_thing,
                                                    iscrowd=False, area=int(n)) for i, n in zip(present, areas)))
