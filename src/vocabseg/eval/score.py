"""Scoring prediction files saved by any model against a prepared dataset's ground truth."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vocabseg.data import IGNORE_LABEL, Dataset, get_dataset, get_spec, load_semantic
from vocabseg.errors import ConfigError, DatasetError
from vocabseg.eval.evaluators import SemanticEvaluator
from vocabseg.eval.from_files import evaluate_instance_files, evaluate_panoptic_files
from vocabseg.eval.readers import read_label_png
from vocabseg.models import TASKS
from vocabseg.text import get_vocabulary, seen_mask
from vocabseg.text.zero_shot import seen_flags


def score_files(dataset_name: str, root: str | Path, *, panoptic_json: str | Path | None = None,
                panoptic_dir: str | Path | None = None, semantic_dir: str | Path | None = None,
                instance_json: str | Path | None = None, pred_ignore: int = 255,
                train_vocabulary: str = "coco_panoptic") -> dict[str, Any]:
    """Scores predictions saved in the standard formats against a split's ground truth.

    Args:
        dataset_name: registered split, e.g. "ade20k_panoptic_val".
        root: the datasets root.
        panoptic_json: COCO panoptic prediction json (dataset category ids);
            its PNGs in ``panoptic_dir`` (default: the json path without ``.json``).
        semantic_dir: one label PNG per image, ``<image stem>.png``, holding
            contiguous class indices; ``pred_ignore`` marks unpredicted pixels.
        instance_json: COCO results json (dataset category ids, RLE masks).
        train_vocabulary: the model's training vocabulary, for the seen/unseen split of a dataset
            without an official one (the ``cascade_*`` splits have theirs).

    Returns:
        ``{"dataset", "vocabulary", "num_images", "tasks", <task>: results}``.
    """
    wanted = {t for t, given in zip(TASKS, (panoptic_json, semantic_dir, instance_json)) if given}
    if not wanted:
        raise ConfigError("nothing to score: pass --panoptic-json, --semantic-dir and/or --instance-json")
    spec, root = get_spec(dataset_name), Path(root)
    dataset = get_dataset(dataset_name, root, tasks=wanted)  # checks the gt files, with their fixes
    results: dict[str, Any] = {"dataset": dataset.name, "vocabulary": dataset.vocabulary,
                               "num_images": len(dataset), "tasks": [t for t in TASKS if t in wanted]}  # fmt: skip
    if panoptic_json:
        results["panoptic"] = evaluate_panoptic_files(
            spec.required_path(root, spec.panoptic_json, "panoptic json"), panoptic_json,
            spec.required_path(root, spec.panoptic_dir, "panoptic PNG folder"), panoptic_dir,
        )
    if semantic_dir:
        results["semantic"] = _score_semantic(dataset, Path(semantic_dir), pred_ignore, train_vocabulary)
    if instance_json:
        if spec.instance_json is None:
            raise ConfigError(f"dataset {dataset.name} has no COCO instances json to score against; "
                              "use `vocabseg eval`")
        results["instance"] = evaluate_instance_files(root / spec.instance_json, instance_json)
    return results


def _score_semantic(dataset: Dataset, pred_dir: Path, pred_ignore: int, train_vocabulary: str) -> dict[str, Any]:
    vocab = dataset.get_vocabulary()
    # the split's official zero-shot split if it has one, else the overlap with the training vocabulary
    seen = (seen_flags(len(vocab), dataset.unseen) if dataset.unseen is not None
            else seen_mask(vocab, get_vocabulary(train_vocabulary)))
    evaluator = SemanticEvaluator(vocab.class_names, ignore_label=IGNORE_LABEL, seen=seen,
                                  iou_rule=dataset.iou_rule)  # fmt: skip
    for record in dataset:
        pred = read_label_png(pred_dir / f"{record.image.stem}.png")  # [H, W] int64
        pred[pred == pred_ignore] = IGNORE_LABEL  # unpredicted: a miss for its gt class
        if record.semantic is None:
            raise DatasetError(f"image {record.image} has no semantic labels; read the dataset with the semantic task")
        try:
            evaluator.process(load_semantic(record.semantic), pred)
        except ValueError as e:
            raise DatasetError(f"{pred_dir / (record.image.stem + '.png')}: {e}") from None
    return evaluator.evaluate()
