"""The FiftyOne adapter against a real FiftyOne dataset in FiftyOne's bundled MongoDB (no network)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

from vocabseg.cli import main

# Read when fiftyone is imported: no usage tracking, a throwaway database (its mongod is stopped at exit).
_DATABASE = tempfile.mkdtemp(prefix="vocabseg-fiftyone-")
atexit.register(shutil.rmtree, _DATABASE, ignore_errors=True)  # runs after FiftyOne's own exit hook
os.environ.update(FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_DIR=_DATABASE)
os.environ.pop("FIFTYONE_DATABASE_URI", None)
fo = pytest.importorskip("fiftyone")

from vocabseg.integrations.fiftyone import apply_predictor, full_mask, import_run_folder  # noqa: E402

TASKS = ("semantic", "panoptic", "instance")
NAMES = {1: "cat", 2: "dog", 3: "road", 4: "sky"}


def _check_labels(sample, pred) -> int:
    """Asserts the sample's vocabseg fields equal the prediction; returns how many masks it compared."""
    np.testing.assert_array_equal(sample["vocabseg_semantic"].get_mask().astype(np.int64) - 1, pred.semantic)
    kept = [k for k in range(len(pred.instance_masks)) if pred.instance_masks[k].any()]
    detections = sample["vocabseg_instances"].detections
    assert len(detections) == len(kept) > 0
    for det, k in zip(detections, kept):
        np.testing.assert_array_equal(full_mask(det, pred.height, pred.width), pred.instance_masks[k])
        assert det.label == pred.class_names[pred.instance_classes[k]]
        assert det.confidence == pytest.approx(float(pred.instance_scores[k]))
        x, y, w, h = det.bounding_box
        assert 0 <= x < x + w <= 1 + 1e-9 and 0 <= y < y + h <= 1 + 1e-9
    segments = sample["vocabseg_panoptic"].detections
    assert [d.segment_id for d in segments] == [s.id for s in pred.segments]
    for det, segment in zip(segments, pred.segments):
        np.testing.assert_array_equal(full_mask(det, pred.height, pred.width), pred.panoptic == segment.id)
    classes = sample["vocabseg_panoptic_segmentation"].get_mask().astype(np.int64) - 1
    for segment in pred.segments:
        assert (classes[pred.panoptic == segment.id] == segment.category).all()
    assert (classes[pred.panoptic == 0] == -1).all()
    return 1 + len(kept) + len(segments)


@pytest.fixture(scope="module")
def expected(predictor, photos):
    return {photo.stem: predictor.predict(str(photo), task=TASKS) for photo in photos}


def test_apply_predictor_gives_segmentation_and_detections_equal_to_vocabseg(predictor, photos, expected):
    dataset = fo.Dataset()
    assert not dataset.persistent
    dataset.add_samples([fo.Sample(filepath=str(photo)) for photo in photos])
    apply_predictor(dataset, predictor, tasks=TASKS)
    dataset.reload()
    assert dataset.mask_targets == {"vocabseg_semantic": NAMES, "vocabseg_panoptic_segmentation": NAMES}
    assert isinstance(dataset.first()["vocabseg_semantic"], fo.Segmentation)
    assert isinstance(dataset.first()["vocabseg_instances"], fo.Detections)
    compared = sum(_check_labels(sample, expected[os.path.splitext(os.path.basename(sample.filepath))[0]])
                   for sample in dataset.iter_samples())
    assert compared > 20
    dataset.delete()


def test_run_folder_imports_with_the_same_labels(run_folder, photos, expected):
    dataset = import_run_folder(run_folder, images=photos[0].parent)
    assert sorted(dataset.values("filepath")) == [str(photo.resolve()) for photo in photos]
    assert dataset.mask_targets["vocabseg_semantic"] == NAMES
    for sample in dataset.iter_samples():
        assert (sample.metadata.height, sample.metadata.width) == expected[sample["vocabseg_stem"]].semantic.shape
        _check_labels(sample, expected[sample["vocabseg_stem"]])
    without_images = import_run_folder(run_folder)  # media: the run's overlays
    assert sorted(os.path.basename(p) for p in without_images.values("filepath")) == [
        f"{photo.stem}_overlay.png" for photo in photos]
    dataset.delete()
    without_images.delete()


def test_fiftyones_coco_importer_loads_the_coco_export(run_folder, photos, expected, tmp_path):
    labels = tmp_path / "labels.json"
    assert main(["-q", "export-labels", str(run_folder), "--format", "coco", "--output", str(labels),
                 "--images", str(photos[0].parent)]) == 0
    dataset = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path=str(photos[0].parent),
                                  labels_path=str(labels), label_types="segmentations", label_field="coco")
    assert len(dataset) == 3
    for sample in dataset.iter_samples():
        pred = expected[os.path.splitext(os.path.basename(sample.filepath))[0]]
        kept = [k for k in range(len(pred.instance_masks)) if pred.instance_masks[k].any()]
        detections = sample["coco"].detections
        assert len(detections) == len(kept)
        for det, k in zip(detections, kept):
            np.testing.assert_array_equal(full_mask(det, pred.height, pred.width), pred.instance_masks[k])
            assert det.label == pred.class_names[pred.instance_classes[k]]
    dataset.delete()
