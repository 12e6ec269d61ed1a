"""Periodic benchmark evaluation during training (eval.* keys) through the benchmark evaluators."""
from __future__ import annotations

import json

import pytest
from tiny_datasets import write_ade20k

from vocabseg.cli.train import run_training
from vocabseg.data import DatasetError


def test_training_evaluates_on_a_benchmark_and_keeps_best(tiny_config, tmp_path):
    write_ade20k(tmp_path / "datasets")
    config = tiny_config("solver.max_iter=2", "solver.eval_period=1", "solver.best_metric=semantic/pACC",
                         "eval.dataset=ade20k_panoptic_val", f"eval.root={tmp_path / 'datasets'}",
                         "eval.tasks=[panoptic, semantic]", "model.arch.num_queries=10")
    trainer = run_training(config)
    results = json.loads((tmp_path / "run" / "eval" / "iter_0000002" / "results.json").read_text())
    assert {"panoptic", "semantic"} <= set(results)
    assert trainer.best is not None and trainer.best["metric"] == "semantic/pACC"
    assert trainer.best["value"] == pytest.approx(max(
        json.loads((tmp_path / "run" / "eval" / f"iter_{i:07d}" / "results.json").read_text())["semantic"]["pACC"]
        for i in (1, 2)))
    assert (tmp_path / "run" / "best.pth").exists()


def test_missing_eval_dataset_stops_before_training(tiny_config, tmp_path):
    config = tiny_config("solver.max_iter=1", "eval.dataset=ade20k_panoptic_val", f"eval.root={tmp_path / 'none'}")
    with pytest.raises(DatasetError):
        run_training(config)
    assert not (tmp_path / "run" / "last.pth").exists()
