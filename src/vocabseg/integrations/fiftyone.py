"""FiftyOne: vocabseg results as FiftyOne labels, on a dataset or from a run folder (extra `[fiftyone]`).

    predictor = Predictor.from_pretrained("fcclip_rn50_coco")
    predictor.set_vocabulary("car; person; road [stuff]")
    apply_predictor(dataset, predictor, tasks=("panoptic", "instance"))   # fields vocabseg_panoptic, ...
    dataset = import_run_folder("out/", images="photos/")                 # a `vocabseg predict` folder

Fields, for ``label_field="vocabseg"``:

- ``vocabseg_semantic``: ``fo.Segmentation``, mask value = class index + 1 (0: unassigned), with
  the dataset's ``mask_targets`` naming each value;
- ``vocabseg_instances``: ``fo.Detections``, one per non-empty instance mask (label, confidence,
  the mask cropped to its box, ``bounding_box`` [x, y, w, h] relative to the image);
- panoptic as both: ``vocabseg_panoptic`` (``fo.Detections``, one per segment, with ``segment_id``
  and ``is_thing``) and ``vocabseg_panoptic_segmentation`` (``fo.Segmentation`` of the segments' classes).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vocabseg.errors import VocabularyError
from vocabseg.integrations import require
from vocabseg.predictor import Prediction


def to_labels(pred: Prediction, label_field: str = "vocabseg") -> dict[str, Any]:
    """Field name -> FiftyOne label of each task the prediction has (see the module's list)."""
    fo = require("fiftyone", "fiftyone")
    labels: dict[str, Any] = {}
    if pred.semantic is not None:
        labels[f"{label_field}_semantic"] = fo.Segmentation(mask=class_mask(pred.semantic, len(pred.class_names)))
    if pred.instance_masks is not None:
        assert pred.instance_classes is not None and pred.instance_scores is not None  # filled together
        labels[f"{label_field}_instances"] = fo.Detections(detections=[
            detection(mask, pred.class_names[int(c)], confidence=float(s))
            for mask, c, s in zip(pred.instance_masks, pred.instance_classes, pred.instance_scores) if mask.any()])
    if pred.panoptic is not None:
        labels[f"{label_field}_panoptic"] = fo.Detections(detections=[
            detection(pred.panoptic == s.id, pred.class_names[s.category], confidence=s.score, segment_id=s.id,
                      is_thing=s.is_thing) for s in pred.segments])
        semantic = np.full(pred.panoptic.shape, -1, np.int32)
        for s in pred.segments:
            semantic[pred.panoptic == s.id] = s.category
        labels[f"{label_field}_panoptic_segmentation"] = fo.Segmentation(
            mask=class_mask(semantic, len(pred.class_names)))
    return labels


def class_mask(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[H, W] class indices (-1: unassigned) -> FiftyOne's mask values: index + 1, 0 for unassigned."""
    return (labels.astype(np.int64) + 1).astype(np.uint8 if num_classes < 255 else np.uint16)


def mask_targets(class_names: Sequence[str]) -> dict[int, str]:
    """The ``mask_targets`` of :func:`class_mask`'s values."""
    return {index + 1: name for index, name in enumerate(class_names)}


def detection(mask: np.ndarray, label: str, **attributes: Any) -> Any:
    """An ``fo.Detection`` of a full-image [H, W] mask (not empty): the mask cropped to its box, the box
    relative to the image ([x, y, w, h] in [0, 1])."""
    fo = require("fiftyone", "fiftyone")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = mask.shape
    box = [left / width, top / height, (right - left) / width, (bottom - top) / height]
    return fo.Detection(label=label, bounding_box=[float(v) for v in box], mask=mask[top:bottom, left:right].copy(),
                        **attributes)


def full_mask(det: Any, height: int, width: int) -> np.ndarray:
    """[H, W] bool: a detection's box-cropped mask placed back in the image (the inverse of :func:`detection`)."""
    x, y, w, h = det.bounding_box
    left, top = round(x * width), round(y * height)
    full = np.zeros((height, width), bool)
    crop = det.get_mask().astype(bool)
    full[top:top + crop.shape[0], left:left + crop.shape[1]] = crop[:round(h * height), :round(w * width)]
    return full


def apply_predictor(dataset: Any, predictor: Any, *, tasks: Sequence[str] = ("panoptic",),
                    label_field: str = "vocabseg", progress: bool = False) -> None:
    """Segments every sample's image with ``predictor`` (its vocabulary set) and stores the labels.

    Sets ``dataset.mask_targets`` for the segmentation fields so FiftyOne names the mask values.
    """
    vocab = predictor.vocabulary
    if vocab is None:
        raise VocabularyError("no vocabulary set: call predictor.set_vocabulary(...) before apply_predictor")
    for sample in dataset.iter_samples(autosave=True, progress=progress):
        for field, label in to_labels(predictor.predict(sample.filepath, task=tuple(tasks)), label_field).items():
            sample[field] = label
    _set_mask_targets(dataset, label_field, vocab.class_names)


def import_run_folder(run_folder: str | Path, *, images: str | Path | None = None, name: str | None = None,
                      label_field: str = "vocabseg", persistent: bool = False) -> Any:
    """A FiftyOne dataset of a `vocabseg predict` folder's finished images (run.done) with their labels.

    Args:
        images: the folder the run's images came from (matched by file stem); default: each
            sample's media is the run's overlay (the image's size, colours drawn on it).
        name: the dataset's name (default: FiftyOne picks one).
        persistent: keep the dataset in FiftyOne's database after the process exits.
    """
    fo = require("fiftyone", "fiftyone")
    from vocabseg.integrations.coco import image_file_names
    from vocabseg.integrations.run_folder import read_run_folder

    run = read_run_folder(run_folder)
    root = run.path if images is None else Path(images)
    file_names = image_file_names(run, None if images is None else root)
    samples = []
    for stem in run.stems:
        pred = run.prediction(stem)
        sample = fo.Sample(filepath=str((root / file_names[stem]).resolve()), vocabseg_stem=stem,
                           metadata=fo.ImageMetadata(width=pred.width, height=pred.height))
        for field, label in to_labels(pred, label_field).items():
            sample[field] = label
        samples.append(sample)
    dataset = fo.Dataset(name, persistent=persistent)
    dataset.add_samples(samples, progress=False)
    _set_mask_targets(dataset, label_field, run.vocabulary.class_names)
    return dataset


def _set_mask_targets(dataset: Any, label_field: str, class_names: Sequence[str]) -> None:
    targets = dict(dataset.mask_targets)
    for suffix in ("semantic", "panoptic_segmentation"):
        if dataset.has_field(f"{label_field}_{suffix}"):
            targets[f"{label_field}_{suffix}"] = mask_targets(class_names)
    dataset.mask_targets = targets  # the setter saves the dataset
