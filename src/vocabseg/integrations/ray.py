"""Ray Data: label a dataset of images on a cluster, one Predictor per actor (``pip install "vocabseg[ray]"``).

    ds = ray.data.read_images("photos/", include_paths=True, mode="RGB")
    ds = ds.map_batches(VocabsegPredictor, fn_constructor_kwargs={"model": "fcclip_rn50_coco",
                        "vocabulary": "car; person; road [stuff]", "tasks": ("semantic", "panoptic")},
                        batch_size=4, compute=ray.data.ActorPoolStrategy(size=4), num_gpus=0.5)
    ds.write_parquet("labels/")

or :func:`label_dataset` with the same arguments. Each actor loads the model and embeds the
vocabulary once, in ``__init__``; ``num_gpus`` (a fraction lets actors share a GPU) and
``batch_size`` (images per ``map_batches`` call) are the usual Ray arguments. The output rows
are plain columns (see :func:`prediction_columns`), so Parquet, pandas or any Ray sink takes them.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from vocabseg.integrations import require
from vocabseg.predictor import Prediction

IMAGE_COLUMN = "image"  # ray.data.read_images' column of HxWx3 uint8 arrays


class VocabsegPredictor:
    """A callable class for ``Dataset.map_batches``: one :class:`~vocabseg.Predictor` per Ray actor.

    Args:
        model: zoo name, checkpoint path or ``hf-hub:`` name (as ``vocabseg predict --model``).
        vocabulary: built-in name, file or inline ``"car; person; road [stuff]"``; embedded once per actor.
        tasks: any of ``"semantic"``, ``"panoptic"``, ``"instance"``.
        weights: checkpoint file for a zoo name (each node must see it).
        device: None: ``cuda`` when the actor was given a GPU (``num_gpus``), else ``cpu``.
        batch_size: images per forward pass inside one ``map_batches`` call (1: the official
            per-image results, as ``vocabseg predict --batch-size 1``).
        inference: test-time settings, e.g. ``{"min_size": 640}``.
        num_threads: torch threads of a CPU actor (None: torch's default, i.e. Ray's OMP_NUM_THREADS).
        image_column: the column holding the images; every other input column is passed through.
    """

    def __init__(self, model: str, vocabulary: str, *, tasks: Sequence[str] = ("semantic",),
                 weights: str | None = None, device: str | None = None, batch_size: int = 1,
                 inference: dict[str, Any] | None = None, num_threads: int | None = None,
                 image_column: str = IMAGE_COLUMN):
        import torch

        from vocabseg.predictor import Predictor

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.predictor = Predictor.from_pretrained(model, weights=weights, device=device, inference=inference,
                                                   progress=False)
        self.predictor.set_vocabulary(vocabulary, progress=False)
        self.tasks, self.batch_size, self.image_column = tuple(tasks), batch_size, image_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A numpy batch with an image column -> the other columns plus the prediction columns."""
        images = [np.asarray(image, np.uint8) for image in batch[self.image_column]]
        preds = self.predictor.predict(images, task=self.tasks, batch_size=self.batch_size)
        ids = batch["path"] if "path" in batch else np.arange(len(images))
        out = {name: column for name, column in batch.items() if name != self.image_column}
        rows = [prediction_columns(pred, image_id=str(i)) for pred, i in zip(preds, ids)]
        for name in rows[0] if rows else ():
            out[name] = _column([row[name] for row in rows])
        return out


def prediction_columns(pred: Prediction, image_id: str = "") -> dict[str, Any]:
    """One output row of a prediction, with the tasks it has.

    ``height``, ``width``; ``semantic`` [H, W] int32 class indices; ``panoptic`` [H, W] int32 segment
    ids (0: none) with ``segments`` (JSON list: id, category_id, isthing, area, score, class_name);
    ``instances`` (JSON list of COCO results with RLE ``segmentation``, as ``vocabseg predict``
    writes them); ``class_names`` (JSON list: the vocabulary's names by index).
    """
    from vocabseg.outputs import instance_results

    row: dict[str, Any] = {"height": pred.height, "width": pred.width}
    if pred.semantic is not None:
        row["semantic"] = pred.semantic.astype(np.int32)
    if pred.panoptic is not None:
        row["panoptic"] = pred.panoptic.astype(np.int32)
        row["segments"] = json.dumps([
            {"id": s["id"], "category_id": s["category"], "isthing": int(s["is_thing"]), "area": s["area"],
             "score": s["score"], "class_name": s["class_name"]} for s in map(asdict, pred.segments)])
    if pred.instance_masks is not None:
        row["instances"] = json.dumps(instance_results(image_id, pred))
    row["class_names"] = json.dumps(pred.class_names)
    return row


def label_dataset(dataset: Any, model: str, vocabulary: str, *, actors: int = 1, num_gpus: float = 0.0,
                  num_cpus: float = 1.0, batch_size: int = 1, **predictor_kwargs: Any) -> Any:
    """``dataset.map_batches`` with a pool of ``actors`` :class:`VocabsegPredictor` actors.

    Args:
        dataset: a ``ray.data.Dataset`` with an image column (``ray.data.read_images``).
        actors: actors in the pool, each holding one model.
        num_gpus: GPU share of each actor (0.5: two actors per GPU; 0: CPU).
        num_cpus: CPUs reserved per actor. Leave some for the read and write tasks: an actor pool
            holding every CPU of the cluster starves them and the dataset never finishes.
        batch_size: images per ``map_batches`` call, and per forward pass.
        **predictor_kwargs: the other arguments of :class:`VocabsegPredictor` (tasks, weights, inference, ...).
    """
    ray = require("ray", "ray")
    return dataset.map_batches(
        VocabsegPredictor, fn_constructor_kwargs={"model": model, "vocabulary": vocabulary,
                                                  "batch_size": batch_size, **predictor_kwargs},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus,
        num_cpus=num_cpus)


def _column(values: list[Any]) -> np.ndarray:
    """A column of per-row values: scalars and strings as they are, arrays one per row (any shapes)."""
    if not any(isinstance(v, np.ndarray) for v in values):
        return np.array(values)
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # not column[:] = values: equal shapes would broadcast
        column[index] = value
    return column
