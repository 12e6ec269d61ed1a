"""Periodic benchmark evaluation during training, through the benchmark evaluators."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vocabseg.data import get_dataset
from vocabseg.eval.run import evaluate
from vocabseg.models import ModelFamily, Settings
from vocabseg.text import TextEmbeddingCache, Vocabulary
from vocabseg.train.config import EvalSection
from vocabseg.train.loop import EvalFn


def benchmark_eval_fn(section: EvalSection, *, family: ModelFamily, model_config: Any, settings: Settings,
                      train_vocabulary: str | Vocabulary, device: torch.device, output_dir: str | Path,
                      text_cache: str | None = None) -> EvalFn | None:
    """An eval hook scoring the model on ``section.dataset``; None when no dataset is configured.

    The dataset is opened now, so a missing or unprepared folder stops the run before training.
    Metrics are returned as ``"<task>/<metric>"`` (e.g. ``panoptic/PQ``, ``semantic/mIoU``).
    """
    if not section.dataset:
        return None
    tasks = set(section.tasks) if section.tasks else None
    dataset = get_dataset(section.dataset, section.root, tasks=tasks)

    def run(model, iteration: int) -> dict[str, float]:
        from vocabseg.predictor import Predictor

        network = getattr(model, "module", model)  # unwrap DistributedDataParallel
        predictor = Predictor(network, model_config, settings, family=family, train_vocabulary=train_vocabulary,
                              device=device, text_cache=TextEmbeddingCache(text_cache))
        folder = Path(output_dir) / "eval" / f"iter_{iteration:07d}"
        results = evaluate(predictor, dataset, tasks=section.tasks, output_dir=folder, limit=section.limit,
                           progress=False)
        return {f"{task}/{name}": value for task, metrics in results.items() if isinstance(metrics, dict)
                for name, value in metrics.items() if isinstance(value, (int, float))}

    return run
