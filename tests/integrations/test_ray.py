"""The Ray Data adapter on a local two-CPU Ray cluster, against `Predictor.predict` and `vocabseg predict`."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from vocabseg.integrations.run_folder import read_run_folder

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray cluster starts in ~10 s

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "label_folder_ray.py"


@pytest.fixture(scope="module")
def local_ray(text_cache):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report (no network here)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_semantic_maps_equal_predict_and_the_run_folder(local_ray, checkpoint, vocab, photos, predictor, run_folder,
                                                         tmp_path):
    spec = importlib.util.spec_from_file_location("label_folder_ray", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main([str(photos[0].parent), "--model", str(checkpoint), "--vocab", vocab, "--tasks", "semantic",
                  "panoptic", "instance", "--output", str(tmp_path / "labels"), "--actors", "2",
                  "--cpus-per-actor", "0.5", "--threads", "1"])  # a CPU left for reading and writing
    rows = sorted(ray.data.read_parquet(str(tmp_path / "labels")).take_all(), key=lambda row: row["path"])
    assert [Path(row["path"]).name for row in rows] == [p.name for p in photos]
    run = read_run_folder(run_folder)
    for row, photo in zip(rows, photos):
        pred = predictor.predict(str(photo), task=("semantic", "panoptic", "instance"))
        written = run.prediction(photo.stem)  # `vocabseg predict --task all` of the same image
        np.testing.assert_array_equal(row["semantic"], pred.semantic)
        np.testing.assert_array_equal(row["semantic"], written.semantic)
        np.testing.assert_array_equal(row["panoptic"], pred.panoptic)
        assert [s["id"] for s in json.loads(row["segments"])] == [s.id for s in pred.segments]
        instances = json.loads(row["instances"])
        assert [i["category_id"] for i in instances] == pred.instance_classes.tolist()
        assert [i["segmentation"] for i in instances] == [i["segmentation"] for i in run.instance_results(photo.stem)]
        assert json.loads(row["class_names"]) == ["cat", "dog", "road", "sky"]
        assert (row["height"], row["width"]) == pred.semantic.shape
    assert max(np.unique(row["semantic"]).size for row in rows) > 1  # not one class everywhere
