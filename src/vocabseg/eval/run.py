"""Evaluate a predictor on a dataset split: sharded over ranks, resumable, one report.

Launch with ``torchrun --nproc_per_node N -m vocabseg.cli eval ...`` for several
processes: rank r evaluates records r, r + N, r + 2N, ... Each rank saves its
evaluator states and the indices it has done to ``output_dir/state/rank{r}.pt``
every ``checkpoint_every`` images, every ``checkpoint_seconds``, at the end and when an
error stops the loop (atomically; an image's gt is read before any evaluator takes it,
so a bad label file leaves them consistent), so a rerun with the same output folder
skips what is done; since evaluator states add up, the
resumed results equal those of an uninterrupted run. Rank 0 then merges every
rank's file and writes ``results.json`` and ``results.md``.

Category ids: gt and predictions both use the vocabulary's contiguous class
indices (the readers translate the dataset ids), so PQ, mIoU and AP equal the
official ones computed with dataset ids; gt segment areas come from the json, as
panopticapi reads them. Semantic gt pixels of IGNORE_LABEL are not evaluated.
Instances: the predictor keeps its ``instances_per_image`` (100) best, COCOeval
scores masks with up to 100 detections per image.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vocabseg import distributed as dist
from vocabseg.data import IGNORE_LABEL, Dataset, Record, load_panoptic, load_semantic
from vocabseg.data.io import load_instances
from vocabseg.distributed import rank_and_world
from vocabseg.errors import CheckpointError, ConfigError, DatasetError
from vocabseg.eval.evaluators import InstanceEvaluator, PanopticEvaluator, SemanticEvaluator
from vocabseg.eval.instance import encode_mask
from vocabseg.eval.panoptic import PanopticImage
from vocabseg.eval.report import format_markdown
from vocabseg.fileio import atomic_write
from vocabseg.models import TASKS
from vocabseg.text import Vocabulary, get_vocabulary
from vocabseg.text.zero_shot import seen_flags

__all__ = ["TASKS", "evaluate", "rank_and_world", "results_markdown", "state_path", "write_results"]

STATE_VERSION = 1
# Ranks wait at a barrier for the slowest one; a resumed rank may have much more left.
BARRIER_TIMEOUT = timedelta(hours=6)


# ---- evaluators and their inputs -------------------------------------------------------------------
def build_evaluators(vocab: Vocabulary, tasks: tuple[str, ...], seen: list[bool],
                     iou_rule: str = "detectron2") -> dict[str, Any]:
    """One evaluator per task, all keyed by contiguous class index (``iou_rule``: see eval.semantic)."""
    evaluators: dict[str, Any] = {}
    if "panoptic" in tasks:
        evaluators["panoptic"] = PanopticEvaluator(
            [{"id": i, "name": c.name, "isthing": int(c.is_thing)} for i, c in enumerate(vocab.classes)]
        )
    if "semantic" in tasks:
        evaluators["semantic"] = SemanticEvaluator(vocab.class_names, ignore_label=IGNORE_LABEL, seen=seen,
                                                   iou_rule=iou_rule)
    if "instance" in tasks:
        evaluators["instance"] = InstanceEvaluator(
            [{"id": i, "name": c.name} for i, c in enumerate(vocab.classes) if c.is_thing]
        )
    return evaluators


def panoptic_gt(record: Record) -> PanopticImage:
    if record.panoptic is None:
        raise DatasetError(f"image {record.image} has no panoptic labels; read the dataset with the panoptic task")
    segments = []
    for s in record.panoptic.segments:
        seg = {"id": s.id, "category_id": s.category, "iscrowd": int(s.iscrowd)}
        if s.area > 0:  # the json's area, trusted as panopticapi does; absent: counted in the PNG
            seg["area"] = s.area
        segments.append(seg)
    return PanopticImage(load_panoptic(record.panoptic.png), segments, record.image_id)


def instance_gt(record: Record) -> dict[str, Any]:
    """COCO gt of one image; segment-id instances (Cityscapes) become RLE."""
    if record.instances is None:
        raise DatasetError(f"image {record.image} has no instance annotations; read the dataset with the instance task")
    annotations = record.instances.annotations
    masks: list[np.ndarray] = []  # decoded only if some instance is a segment id
    if any(isinstance(a.segmentation, int) for a in annotations):
        masks = [m for _, m in load_instances(record)]
    coco = []
    for k, a in enumerate(annotations):
        segmentation = encode_mask(masks[k]) if isinstance(a.segmentation, int) else a.segmentation
        ann = {"category_id": a.category, "segmentation": segmentation, "iscrowd": int(a.iscrowd)}
        if a.area > 0:  # else computed from the mask, as COCOeval needs one
            ann["area"] = a.area
        coco.append(ann)
    return {"image_id": record.image_id, "height": record.height, "width": record.width, "annotations": coco}


def load_gt(evaluators: dict[str, Any], record: Record) -> dict[str, Any]:
    """Reads one record's gt for every evaluator, so that a bad label file raises before any is fed."""
    gt: dict[str, Any] = {}
    if "panoptic" in evaluators:
        gt["panoptic"] = panoptic_gt(record)
    if "semantic" in evaluators:
        if record.semantic is None:
            raise DatasetError(f"image {record.image} has no semantic labels; read the dataset with the semantic task")
        gt["semantic"] = load_semantic(record.semantic)
    if "instance" in evaluators:
        gt["instance"] = instance_gt(record)
    return gt


def process_image(evaluators: dict[str, Any], record: Record, pred) -> None:
    """Feeds one record's gt and its Prediction to every evaluator (all gt is read first)."""
    feed_image(evaluators, record, load_gt(evaluators, record), pred)


def feed_image(evaluators: dict[str, Any], record: Record, gt: dict[str, Any], pred) -> None:
    """Feeds gt from :func:`load_gt` and the record's Prediction to every evaluator."""
    if "panoptic" in evaluators:
        segments = [{"id": s.id, "category_id": s.category} for s in pred.segments if s.area > 0]
        evaluators["panoptic"].process(gt["panoptic"], PanopticImage(pred.panoptic, segments, record.image_id))
    if "semantic" in evaluators:
        evaluators["semantic"].process(gt["semantic"], pred.semantic)
    if "instance" in evaluators:
        masks = {"masks": pred.instance_masks, "category_ids": pred.instance_classes, "scores": pred.instance_scores}
        evaluators["instance"].process(gt["instance"], masks)


# ---- state files -----------------------------------------------------------------------------------------
def _to_saveable(obj: Any) -> Any:
    """numpy -> torch, so the file loads with ``torch.load(weights_only=True)``."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_saveable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_saveable(v) for v in obj)
    return obj


def _from_saved(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _from_saved(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_saved(v) for v in obj]
    return obj


def state_path(output_dir: str | Path, rank: int) -> Path:
    return Path(output_dir) / "state" / f"rank{rank}.pt"


def save_state(path: Path, run: dict[str, Any], done: list[int], evaluators: dict[str, Any]) -> None:
    payload = {"version": STATE_VERSION, "run": run, "done": list(done),
               "states": {task: _to_saveable(ev.state_dict()) for task, ev in evaluators.items()}}  # fmt: skip
    atomic_write(path, lambda p: torch.save(payload, p))


def load_state(path: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """A rank's saved state, None if absent; a state of another run raises."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}); "
                              f"delete {path.parent} to start the evaluation over") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("run") != run:
        theirs = {k: v for k, v in state.get("run", {}).items() if run.get(k) != v} if isinstance(state, dict) else {}
        raise CheckpointError(
            f"{path} holds another evaluation (differs in {sorted(theirs) or 'version'}: {theirs}); "
            f"use another --output, or --overwrite (or delete {path.parent}) to start over"
        )
    state["states"] = _from_saved(state["states"])
    return state


def _run_identity(predictor, dataset: Dataset, tasks: tuple[str, ...], world_size: int) -> dict[str, Any]:
    """What a saved state must match to be resumed: data, tasks, sharding and model."""
    params = [p.detach().reshape(-1)[:4].float() for p in predictor.model.parameters()]
    sample = torch.cat(params).cpu().numpy()  # a few values of every tensor; note: one device sync
    digest = hashlib.sha256(json.dumps(predictor.describe(), sort_keys=True, default=str).encode() + sample.tobytes())
    return {"dataset": dataset.name, "num_records": len(dataset), "vocabulary": dataset.vocabulary,
            "tasks": list(tasks), "world_size": world_size, "model": digest.hexdigest()[:16]}  # fmt: skip


@dataclass
class RankState:
    """One rank's progress: its evaluators and the record indices they hold."""

    path: Path  # output_dir/state/rank{r}.pt
    run: dict[str, Any]  # what the saved file must match, see _run_identity
    evaluators: dict[str, Any]
    done: list[int]

    @classmethod
    def resume(cls, path: Path, run: dict[str, Any], evaluators: dict[str, Any], shard: list[int]) -> RankState:
        """Loads the saved progress into fresh ``evaluators`` (none saved: nothing done)."""
        saved = load_state(path, run)
        done = list(saved["done"]) if saved else []
        extra = sorted(set(done) - set(shard))
        if extra:
            raise CheckpointError(
                f"{path} has images beyond this --limit (record {extra[0]}); "
                f"evaluate at least {max(extra) + 1} records or delete {path.parent}"
            )
        for task, evaluator in evaluators.items():
            evaluator.merge([saved["states"][task]] if saved else [])
        return cls(path, run, evaluators, done)

    def save(self) -> None:
        save_state(self.path, self.run, self.done, self.evaluators)


# ---- results ---------------------------------------------------------------------------------------------
def _json_safe(obj: Any) -> Any:
    """NaN (a metric with no gt) -> null, so results.json is standard JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def write_results(output_dir: str | Path, results: dict[str, Any]) -> None:
    """``results.json`` (every figure, NaN as null) and ``results.md`` (summary + per-class tables)."""
    output_dir = Path(output_dir)
    text = json.dumps(_json_safe(results), indent=1)
    atomic_write(output_dir / "results.json", lambda p: p.write_text(text + "\n", encoding="utf-8"))
    atomic_write(output_dir / "results.md", lambda p: p.write_text(results_markdown(results), encoding="utf-8"))


def results_markdown(results: dict[str, Any]) -> str:
    title = f"# {results.get('dataset', 'evaluation')}"
    if "num_images" in results:
        title += f": {results['num_images']} images, vocabulary {results.get('vocabulary')}"
    parts = [title]
    for task in TASKS:
        if task in results:
            parts.append(f"## {task.capitalize()}\n\n{format_markdown(results[task])}")
    return "\n\n".join(parts) + "\n"


def _gather(output_dir: Path, run: dict[str, Any], shards: list[list[int]], tasks, vocab, seen,
            iou_rule: str) -> dict[str, Any]:
    """Rank 0: merges the state files of every rank and computes the metrics."""
    merged = build_evaluators(vocab, tasks, seen, iou_rule)
    for rank, shard in enumerate(shards):
        path = state_path(output_dir, rank)
        state = load_state(path, run)
        done = set(state["done"]) if state else set()
        if done != set(shard):
            raise CheckpointError(f"{path} covers {len(done)} of the {len(shard)} images of rank {rank}; "
                                  "rerun to finish")
        for task, evaluator in merged.items():
            evaluator.merge([state["states"][task]] if state else [])
    return {task: evaluator.evaluate() for task, evaluator in merged.items()}


# ---- the evaluation loop -----------------------------------------------------------------------------------
def evaluate(predictor, dataset: Dataset, *, tasks: tuple[str, ...] | list[str] | None = None,
             output_dir: str | Path, limit: int | None = None, progress: bool = True,
             checkpoint_every: int = 50, checkpoint_seconds: float = 60.0,
             test_size: tuple[int, int] | None = None,
             text_embeddings: str | Path | None = None) -> dict[str, Any]:
    """Evaluates ``predictor`` on ``dataset`` as the model family's official evaluation does.

    The dataset's vocabulary is used, or the family's official class strings for it (OVSeg),
    with the family's per-benchmark settings (OVSeg's ensemble weight) for this run only.

    Args:
        predictor: a ``vocabseg.predictor.Predictor``; its vocabulary is replaced, the benchmark's
            settings and test size apply for the run only.
        dataset: records from ``vocabseg.data.get_dataset``.
        tasks: subset of the dataset's tasks; default all it has labels for.
        output_dir: where ``state/``, ``results.json`` and ``results.md`` go; rerunning
            with the same folder resumes.
        limit: evaluate the first ``limit`` records only.
        progress: show a progress bar (rank 0).
        checkpoint_every: images between two saves of this rank's state.
        checkpoint_seconds: also save the state once this long has passed since the last save.
        test_size: test resize (shortest edge, longest edge cap); default the split's official
            one (``dataset.test_size``, e.g. 1024/2560 for Cityscapes), else the predictor's.

    Returns:
        ``{"dataset", "vocabulary", "num_images", "tasks", <task>: evaluator results}``
        (percent, with ``per_class``) on rank 0; ``{}`` on the other ranks.
    """
    tasks = _check_tasks(dataset, tasks)
    vocabulary, overrides = _benchmark_setup(predictor, dataset, test_size)
    before = {key: _current_setting(predictor, key) for key in overrides}
    predictor.with_settings(overrides)  # restored on the way out
    output_dir = Path(output_dir)
    rank, world_size = rank_and_world()
    created_group = dist.join_from_env(backend="gloo", timeout=BARRIER_TIMEOUT)  # only barriers are needed
    try:
        vocab = predictor.set_vocabulary(vocabulary, progress=progress and rank == 0, text_embeddings=text_embeddings)
        seen = seen_classes(predictor, dataset, vocab)
        count = len(dataset) if limit is None else min(limit, len(dataset))
        shards = [list(range(r, count, world_size)) for r in range(world_size)]
        run = _run_identity(predictor, dataset, tasks, world_size)
        evaluators = build_evaluators(vocab, tasks, seen, dataset.iou_rule)
        state = RankState.resume(state_path(output_dir, rank), run, evaluators, shards[rank])
        _evaluate_shard(predictor, dataset, tasks, shards[rank], state, show=progress and rank == 0,
                        checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds)  # fmt: skip
        dist.barrier()  # every rank's state file is complete
        results = {}
        if rank == 0:
            metrics = _gather(output_dir, run, shards, tasks, vocab, seen, dataset.iou_rule)
            results = {"dataset": dataset.name, "vocabulary": dataset.vocabulary, "num_images": count,
                       "tasks": list(tasks), **metrics}  # fmt: skip
            write_results(output_dir, results)
        dist.barrier()  # no rank leaves before the results exist
        return results
    finally:
        predictor.with_settings(before)
        if created_group:
            dist.cleanup()


def seen_classes(predictor, dataset: Dataset, vocab: Vocabulary) -> list[bool]:
    """Which classes count as seen in the seen/unseen/hIoU figures.

    A split with an official zero-shot split (``dataset.unseen``) uses it, whatever the model was
    trained on, so the figures are the benchmark's (also in the cross-dataset protocol, where the
    papers report mIoU); otherwise a class is seen if it overlaps the model's training vocabulary.
    """
    if dataset.unseen is not None:
        return seen_flags(len(vocab), dataset.unseen)
    return predictor.classifier.seen.tolist()


def _benchmark_setup(predictor, dataset: Dataset, test_size: tuple[int, int] | None) -> tuple[Vocabulary, dict]:
    """The vocabulary and setting overrides of the benchmark's official evaluation for this model.

    The family may name its own official class strings and settings for the benchmark (OVSeg:
    its class strings and ensemble weight); the test size is the caller's, else the split's.
    """
    official, overrides = predictor.family.benchmark_overrides(dataset.vocabulary, predictor.train_vocabulary.name)
    size = test_size or dataset.test_size
    if size is not None:
        overrides = {**overrides, "min_size": size[0], "max_size": size[1]}
    return (get_vocabulary(official) if official else dataset.get_vocabulary()), overrides


def _current_setting(predictor, key: str) -> Any:
    settings = predictor.settings
    return getattr(settings.inference if hasattr(settings.inference, key) else settings.family, key)


def _check_tasks(dataset: Dataset, tasks) -> tuple[str, ...]:
    """The requested tasks in canonical order; default all the dataset was read with."""
    if tasks is None:
        return tuple(dataset.tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    missing = [t for t in tasks if t not in dataset.tasks]
    if missing or not tasks:
        raise ConfigError(f"dataset {dataset.name} has labels for {', '.join(dataset.tasks)} only, "
                         f"not {', '.join(missing) or 'no task'}")
    return tuple(t for t in TASKS if t in tasks)


def _evaluate_shard(predictor, dataset: Dataset, tasks: tuple[str, ...], shard: list[int], state: RankState, *,
                    show: bool, checkpoint_every: int, checkpoint_seconds: float) -> None:
    """Runs the records of ``shard`` not done yet, saving ``state`` as it goes and when an error stops it."""
    done = set(state.done)
    todo = [i for i in shard if i not in done]
    bar = tqdm(total=len(shard), initial=len(shard) - len(todo), desc=f"eval {dataset.name}", unit="img",
               disable=not show)
    consistent, since_save = True, 0  # consistent: the evaluators hold exactly the images in state.done
    saved_at = time.monotonic()
    try:
        for index in todo:
            record = dataset[index]
            pred = predictor.predict(record.image, task=tasks)
            gt = load_gt(state.evaluators, record)  # a bad label file raises here, evaluators untouched
            consistent = False
            feed_image(state.evaluators, record, gt, pred)
            state.done.append(index)
            consistent, since_save = True, since_save + 1
            bar.update()
            if since_save >= checkpoint_every or time.monotonic() - saved_at >= checkpoint_seconds:
                state.save()
                since_save, saved_at = 0, time.monotonic()
    finally:
        bar.close()
        # Also on an error (a bad label file, a crash): unless one stopped an evaluator mid-image.
        if consistent and (since_save or not state.path.is_file()):
            state.save()
