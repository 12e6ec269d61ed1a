"""End-to-end `evaluate` on a tiny ADE20K-format split with a tiny random-weight model.

Invariants pinned: an oracle predictor (gt as prediction) scores 100; an interrupted
and resumed run, and a 2-process torchrun, give the numbers of one uninterrupted run.
Every run uses one CPU thread, as torchrun's workers do, so the predictions agree bitwise;
the metrics agree to float rounding (partial sums of several ranks or of a resumed state
are added in another order).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_datasets.common import compressed_rle, id_to_rgb, image, segment_info, write_jpg, write_json, write_png

from vocabseg.data import get_dataset, load_panoptic, load_semantic
from vocabseg.errors import CheckpointError, ConfigError
from vocabseg.eval.run import evaluate, state_path
from vocabseg.predictor import Prediction, Predictor
from vocabseg.segments import Segment
from vocabseg.testing import save_tiny_checkpoint
from vocabseg.text import TextEmbeddingCache, get_vocabulary

SPLIT = "ade20k_panoptic_val"
BASE = "ADEChallengeData2016"
# ADE20K-150 indices (= dataset ids): stuff wall (seen in COCO), earth (unseen);
# things person (seen), painting (unseen), car (seen).
WALL, EARTH, PERSON, PAINTING, CAR = 0, 13, 12, 22, 20
NUM_IMAGES, SIZE = 5, (40, 56)


def write_tiny_ade(root: Path, n: int = NUM_IMAGES) -> None:
    """``n`` images in the prepared ADE20K-150 panoptic layout: json + PNGs, label maps, instances json."""
    base = root / BASE
    vocab = get_vocabulary("ade20k_150")
    categories = [{"id": i, "name": c.name, "isthing": int(c.is_thing)} for i, c in enumerate(vocab.classes)]
    rng = np.random.default_rng(0)
    images, annotations, objects = [], [], []
    for k in range(n):
        stem = f"ADE_val_{k + 1:08d}"
        h, w = SIZE
        ids, cats = np.zeros((h, w), np.int64), {}
        split = int(rng.integers(h // 3, 2 * h // 3))
        ids[:split], ids[split:], cats[1], cats[2] = 1, 2, WALL, EARTH  # two stuff bands
        for sid, cat in zip((3, 4, 5), (PERSON, PAINTING, CAR)[: 1 + k % 3]):
            y, x = int(rng.integers(0, h - 12)), int(rng.integers(0, w - 12))
            ids[y : y + 12, x : x + 12] = sid
            cats[sid] = cat
        ids[:, :2] = 0  # a VOID strip
        cats = {s: c for s, c in cats.items() if (ids == s).any()}
        write_jpg(base / "images" / "validation" / f"{stem}.jpg", image(k, h, w))
        write_png(base / "ade20k_panoptic_val" / f"{stem}.png", id_to_rgb(ids))
        semantic = np.full((h, w), 255, np.uint8)
        for sid, cat in cats.items():
            semantic[ids == sid] = cat
        write_png(base / "annotations_detectron2" / "validation" / f"{stem}.png", semantic)
        images.append({"id": stem, "file_name": f"{stem}.jpg", "height": h, "width": w})
        infos = [segment_info(ids, sid, cat) for sid, cat in cats.items()]
        annotations.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": infos})
        for info in infos:
            if vocab.classes[info["category_id"]].is_thing:
                objects.append({**info, "id": len(objects) + 1, "image_id": stem,
                                "segmentation": compressed_rle(ids == info["id"])})  # fmt: skip
    write_json(base / "ade20k_panoptic_val.json",
               {"images": images, "annotations": annotations, "categories": categories})
    things = [c for c in categories if c["isthing"]]
    write_json(base / "ade20k_instance_val.json", {"images": images, "annotations": objects, "categories": things})


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny model (see tests/conftest.py)


@pytest.fixture(scope="module")
def text_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "vocabseg_text_cache"  # shared by the test modules of a session


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=0, min_size=64, max_size=128)


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_tiny_ade(root)
    return root


@pytest.fixture(scope="module")
def dataset(ade_root):
    return get_dataset(SPLIT, ade_root)


@pytest.fixture(scope="module")
def predictor(checkpoint, text_cache_dir) -> Predictor:
    return Predictor.from_pretrained(str(checkpoint), text_cache=TextEmbeddingCache(text_cache_dir), progress=False)


@pytest.fixture(scope="module")
def reference(predictor, dataset, tmp_path_factory) -> tuple[dict, Path]:
    """(results, output folder) of one uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference")
    return evaluate(predictor, dataset, output_dir=out, progress=False), out


class Wrapped:
    """A predictor whose ``predict`` is replaced; everything else is the real one's."""

    def __init__(self, inner: Predictor, predict):
        self._inner, self.predict = inner, predict

    def __getattr__(self, name):
        return getattr(self._inner, name)


def oracle_prediction(record, vocab) -> Prediction:
    """The record's gt as a Prediction: panoptic segments, semantic map, non-crowd instances."""
    ids = load_panoptic(record.panoptic.png).astype(np.int32)
    pred = Prediction(record.height, record.width, vocab.class_names, panoptic=ids)
    pred.segments = [Segment(s.id, s.category, s.is_thing, area=int((ids == s.id).sum()), score=1.0,
                             class_name=vocab.classes[s.category].name)
                     for s in record.panoptic.segments]  # fmt: skip
    pred.semantic = np.maximum(load_semantic(record.semantic), 0).astype(np.int32)  # ignored pixels: any class
    things = [s for s in record.panoptic.segments if s.is_thing and not s.iscrowd]
    pred.instance_masks = np.stack([ids == s.id for s in things]) if things else np.zeros((0, *ids.shape), bool)
    pred.instance_scores = np.ones(len(things), np.float32)
    pred.instance_classes = np.array([s.category for s in things], np.int64)
    return pred


def test_results_hold_every_metric_and_per_class_table(reference, dataset):
    results, out = reference
    assert results["num_images"] == NUM_IMAGES and results["tasks"] == ["panoptic", "semantic", "instance"]
    pan, sem, ins = results["panoptic"], results["semantic"], results["instance"]
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "N"} <= set(pan) and len(pan["per_class"]) == 150
    assert {"mIoU", "fwIoU", "mACC", "pACC"} <= set(sem) and len(sem["per_class"]) == 150
    assert {"AP", "AP50", "AP75"} <= set(ins) and len(ins["per_class"]) == 100  # thing classes only
    # Seen/unseen split of the dataset's classes against the model's COCO training vocabulary.
    seen, unseen = sem["mIoU_seen"], sem["mIoU_unseen"]
    assert not math.isnan(seen) and not math.isnan(unseen)
    assert sem["hIoU"] == pytest.approx(0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen))
    saved = json.loads((out / "results.json").read_text())
    assert saved["semantic"]["per_class"]["wall"]["IoU"] == pytest.approx(sem["per_class"]["wall"]["IoU"])
    assert saved["semantic"]["per_class"]["sky"]["IoU"] is None  # NaN (no gt) is stored as null
    markdown = (out / "results.md").read_text()
    assert "## Panoptic" in markdown and "## Semantic" in markdown and "## Instance" in markdown
    assert "| earth |" in markdown and "hIoU" in markdown
    assert not list(out.rglob("*.part"))


def test_oracle_predictions_score_100(predictor, dataset, tmp_path):
    vocab = dataset.get_vocabulary()
    by_image = {r.image: r for r in dataset}
    oracle = Wrapped(predictor, lambda image, task: oracle_prediction(by_image[image], vocab))
    results = evaluate(oracle, dataset, output_dir=tmp_path, progress=False)
    assert results["panoptic"]["PQ"] == pytest.approx(100.0) and results["panoptic"]["N"] == 5
    assert results["semantic"]["mIoU"] == pytest.approx(100.0) and results["semantic"]["hIoU"] == pytest.approx(100.0)
    assert results["instance"]["AP"] == pytest.approx(100.0)


def test_interrupted_then_resumed_run_equals_uninterrupted(predictor, dataset, reference, tmp_path):
    calls = []

    def crash_after_two(image, task):
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        calls.append(image)
        return predictor.predict(image, task=task)

    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(Wrapped(predictor, crash_after_two), dataset, output_dir=tmp_path, progress=False, checkpoint_every=10)
    # saved on the way out, although no checkpoint was due
    assert torch.load(state_path(tmp_path, 0), weights_only=True)["done"] == [0, 1]
    assert not (tmp_path / "results.json").exists()

    calls.clear()
    results = evaluate(Wrapped(predictor, crash_after_two), dataset, output_dir=tmp_path, progress=False, limit=4)
    assert len(calls) == 2 and results["num_images"] == 4  # images 2 and 3 only

    results = evaluate(predictor, dataset, output_dir=tmp_path, progress=False, checkpoint_every=1)
    assert_same_results(results, reference[0])
    assert_same_results(saved_results(tmp_path), saved_results(reference[1]))
    assert saved_detections(tmp_path) == saved_detections(reference[1])  # the very same predictions


def test_bad_label_map_keeps_the_images_before_it(predictor, ade_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(ade_root, root)
    label = root / BASE / "annotations_detectron2" / "validation" / "ADE_val_00000003.png"
    good = label.read_bytes()
    label.write_bytes(b"not a png")  # the 3rd record's label map is broken
    dataset, out, calls = get_dataset(SPLIT, root), tmp_path / "out", []

    def predict(image, task):
        calls.append(image)
        return predictor.predict(image, task=task)

    with pytest.raises(Exception):  # noqa: B017 - whatever the PNG reader raises
        evaluate(Wrapped(predictor, predict), dataset, output_dir=out, progress=False, limit=4)
    assert torch.load(state_path(out, 0), weights_only=True)["done"] == [0, 1]

    label.write_bytes(good)
    calls.clear()
    results = evaluate(Wrapped(predictor, predict), dataset, output_dir=out, progress=False, limit=4)
    assert len(calls) == 2 and results["num_images"] == 4  # resumed at the fixed image


def test_state_is_saved_at_a_time_interval(predictor, dataset, tmp_path):
    saved = []

    def predict(image, task):
        path = state_path(tmp_path, 0)
        saved.append(torch.load(path, weights_only=True)["done"] if path.is_file() else None)
        return predictor.predict(image, task=task)

    evaluate(Wrapped(predictor, predict), dataset, output_dir=tmp_path, progress=False, limit=3,
             checkpoint_every=100, checkpoint_seconds=0.0)  # fmt: skip
    assert saved == [None, [0], [0, 1]]


def test_test_size_applies_to_the_run_only(predictor, dataset, tmp_path):
    sizes = []

    def predict(image, task):
        sizes.append((predictor.inference.min_size, predictor.inference.max_size))
        return predictor.predict(image, task=task)

    results = evaluate(Wrapped(predictor, predict), dataset, output_dir=tmp_path, progress=False, limit=2,
                       test_size=(32, 64))
    assert results["num_images"] == 2 and sizes == [(32, 64)] * 2
    assert (predictor.inference.min_size, predictor.inference.max_size) == (64, 128)  # the checkpoint's again


def test_state_of_another_run_is_refused(predictor, dataset, reference, tmp_path):
    shutil.copytree(reference[1] / "state", tmp_path / "state")
    with pytest.raises(CheckpointError, match="delete .*state"):
        evaluate(predictor, dataset, tasks=["semantic"], output_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(predictor, dataset, tasks=["panoptc"], output_dir=tmp_path, progress=False)


@pytest.mark.slow  # two torchrun processes (~20 s)
def test_two_processes_match_one(checkpoint, ade_root, reference, text_cache_dir, tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    out = tmp_path / "two"
    command = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "vocabseg.cli", "eval",
               "--model", str(checkpoint), "--dataset", SPLIT, "--data-root", str(ade_root), "--output", str(out),
               "--no-progress"]  # fmt: skip
    env = {**os.environ, "VOCABSEG_CACHE": str(text_cache_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PQ" in done.stdout  # rank 0 prints the summary
    assert sorted(p.name for p in (out / "state").iterdir()) == ["rank0.pt", "rank1.pt"]
    assert_same_results(saved_results(out), saved_results(reference[1]))
    assert saved_detections(out) == saved_detections(reference[1])


def saved_results(output_dir: Path) -> dict:
    return json.loads((output_dir / "results.json").read_text())


def saved_detections(output_dir: Path) -> list[tuple]:
    """Every instance prediction in the state files of a run, in a canonical order."""
    found = []
    for path in sorted((output_dir / "state").glob("rank*.pt")):
        for r in torch.load(path, weights_only=True)["states"]["instance"]["results"]:
            found.append((r["image_id"], r["category_id"], r["score"], r["segmentation"]["counts"]))
    return sorted(found)


def assert_same_results(ours, reference, where: str = "results") -> None:
    """Same keys, counts and names; floats equal to a relative 1e-9 (NaN where the reference has NaN)."""
    if isinstance(reference, dict):
        assert ours.keys() == reference.keys(), where
        for key in reference:
            assert_same_results(ours[key], reference[key], f"{where}[{key!r}]")
    elif isinstance(reference, (list, tuple)):
        assert len(ours) == len(reference), where
        for i, (a, b) in enumerate(zip(ours, reference)):
            assert_same_results(a, b, f"{where}[{i}]")
    elif isinstance(reference, numbers.Real) and not isinstance(reference, numbers.Integral):
        assert ours == pytest.approx(reference, rel=1e-9, abs=1e-12, nan_ok=True), where
    else:
        assert ours == reference, where
