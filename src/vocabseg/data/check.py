"""``check(name, root)``: every problem of a dataset on disk, one line each.

Catches the usual traps before an evaluation silently scores garbage: derived
files never prepared (e.g. ADE20K semantic maps missing or not shifted, the
official FC-CLIP issues #31/#37), panoptic archives not unzipped, label maps
of the wrong mode or dtype, label values outside the vocabulary, category ids
unknown to the vocabulary, images without annotations and json fields missing.
Each line says what is wrong and how to fix it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vocabseg.data.errors import DatasetError
from vocabseg.data.io import load_panoptic
from vocabseg.data.readers import read_panoptic_json
from vocabseg.data.records import PanopticLabel, Record, SemanticLabel
from vocabseg.data.registry import get_spec, splits_of
from vocabseg.data.spec import SplitSpec
from vocabseg.text.builtin import get_vocabulary

_8BIT_MODES = ("L", "P")
_16BIT_MODES = ("I;16", "I;16L", "I;16B")


def check(name: str, root: str | Path, *, sample: int | None = 50) -> list[str]:
    """Lists the problems of a split, or of a family's validation splits.

    Args:
        name: A split ("ade20k_panoptic_val") or a family ("ade20k_150").
        root: The datasets root.
        sample: Number of files per kind whose contents are opened (evenly
            spread); None opens all. Existence is always checked for all.

    Returns:
        One line per problem (file, what is wrong, the fix); empty if none.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"folder {root} not found; pass the folder that holds the dataset folders as --root"]
    problems: dict[str, str] = {}  # the problem without its "split: " prefix -> line
    for split in splits_of(name):
        for line in _check_split(get_spec(split), root, sample):
            problems.setdefault(line.split(": ", 1)[1], line)  # splits of a family share files: report once
    return list(problems.values())


def _check_split(spec: SplitSpec, root: Path, sample: int | None) -> list[str]:
    problems = _check_layout(spec, root)
    if problems:
        return problems  # contents cannot be read without the folders
    for task in spec.tasks:  # one task at a time, so one problem does not hide the others
        try:
            records = spec.read(spec, root, frozenset({task}))
        except DatasetError as e:
            problems.append(f"{spec.name} ({task}): {e}")
            continue
        problems += _check_contents(spec, root, task, _spread(records, sample))
        if task == "panoptic" and spec.read is read_panoptic_json:
            problems += _unlisted_images(spec, root, records)
    return problems


def _check_layout(spec: SplitSpec, root: Path) -> list[str]:
    wanted = [  # (kind, relative path, is a folder)
        ("images", spec.images, True), ("panoptic", spec.panoptic_dir, True), ("semantic", spec.semantic_dir, True),
        ("panoptic", spec.panoptic_json, False), ("instance", spec.instance_json, False),
    ]  # fmt: skip
    top = root / Path(spec.images).parts[0]  # e.g. ROOT/coco: nothing of the dataset is there
    if not top.is_dir():
        return [f"{spec.name}: folder {top} not found; {spec.fix('release', root)}"]
    problems = []
    for kind, relative, is_dir in wanted:
        path = spec.path(root, relative)
        if path is None or (path.is_dir() if is_dir else path.is_file()):
            continue
        fix = spec.fix(kind, root)
        archive = path.parent / "annotations" / f"{path.name}.zip"  # COCO ships panoptic PNGs zipped in annotations/
        if archive.is_file():
            fix = f"unzip {archive} into {path.parent}"
        problems.append(f"{spec.name}: {'folder' if is_dir else 'file'} {path} not found; {fix}")
    return problems


def _spread(records: list[Record], sample: int | None) -> list[Record]:
    if sample is None or len(records) <= sample:
        return records
    picks = np.linspace(0, len(records) - 1, sample).round().astype(int)
    return [records[i] for i in picks]


def _check_contents(spec: SplitSpec, root: Path, task: str, records: list[Record]) -> list[str]:
    problems = []
    for record in records:
        if task == "panoptic" and record.panoptic is not None:
            problems += _check_panoptic(spec, root, record, record.panoptic)
        elif task == "semantic" and record.semantic is not None:
            problems += _check_semantic(spec, root, record, record.semantic)
    return problems


def _check_panoptic(spec: SplitSpec, root: Path, record: Record, label: PanopticLabel) -> list[str]:
    png = label.png
    try:
        ids = load_panoptic(png)
    except DatasetError as e:
        return [f"{spec.name}: {e}"]
    problems = _size_problem(spec, record, ids.shape, png)
    listed = {s.id for s in label.segments}
    unlisted = sorted(set(np.unique(ids).tolist()) - listed - {0})
    if unlisted:
        problems.append(
            f"{spec.name}: panoptic PNG {png} has segment ids {unlisted[:5]} that its json does not list; "
            f"the PNGs and the json are from different runs: delete both and {spec.fix('panoptic', root)}"
        )
    return problems


def _check_semantic(spec: SplitSpec, root: Path, record: Record, label: SemanticLabel) -> list[str]:
    path = label.path
    fix = spec.fix("semantic", root)
    with Image.open(path) as img:
        mode = img.mode
        values = np.asarray(img)
    modes = _16BIT_MODES if spec.label_bits == 16 else _8BIT_MODES
    if mode not in modes:
        expected = "16-bit (mode I;16)" if spec.label_bits == 16 else "8-bit single-channel (mode L or P)"
        return [f"{spec.name}: label map {path} has mode {mode}, expected {expected}; delete it and {fix}"]
    problems = _size_problem(spec, record, values.shape, path)
    source = spec.path(root, spec.raw_semantic_dir)
    if source is not None and (source / path.name).is_file() and np.array_equal(_raw(source / path.name), values):
        return problems + [
            f"{spec.name}: label map {path} equals the raw {source / path.name}: it was copied, not converted "
            f"(not shifted); delete {path.parent} and {fix}"
        ]
    top = len(get_vocabulary(spec.vocabulary)) + int(spec.reduce_zero_label)  # raw values 0..C with reduce_zero_label
    bad = np.unique(values[(values >= top) & (values != spec.ignore_value)])
    if bad.size:
        problems.append(
            f"{spec.name}: label map {path} has values {bad[:5].tolist()} outside 0..{top - 1} and the "
            f"ignore value {spec.ignore_value}; it was not converted (or is from another dataset): delete it and {fix}"
        )
    return problems


def _raw(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _size_problem(spec: SplitSpec, record: Record, shape: tuple[int, ...], path: Path) -> list[str]:
    if tuple(shape[:2]) == (record.height, record.width):
        return []
    return [
        f"{spec.name}: {path} is {shape[0]}x{shape[1]} but image {record.image} is "
        f"{record.height}x{record.width}; they are from different releases"
    ]


def _unlisted_images(spec: SplitSpec, root: Path, records: list[Record]) -> list[str]:
    """Images in the image folder that no annotation of the json covers."""
    listed = {r.image.name for r in records}
    extra = sorted(p.name for p in (root / spec.images).glob(f"*{spec.image_ext}") if p.name not in listed)
    if not extra:
        return []
    return [
        f"{spec.name}: {len(extra)} image(s) in {root / spec.images} have no annotation in "
        f"{spec.path(root, spec.panoptic_json)}, e.g. {extra[0]}; "
        "the images and annotations are from different splits or releases"
    ]
