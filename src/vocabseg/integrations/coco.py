"""COCO JSON of a `vocabseg predict` folder: instances as object annotations, panoptic as one panoptic file.

Category ids are vocabulary index + 1 (COCO and FiftyOne start at 1; the run folder's own files
use the index). Image entries point at the original images when their folder is given (matched
by file stem), else at the overlays in the run folder (same size as the images). Instances with
an empty mask are left out: they have no box for a labelling tool to show.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from vocabseg.errors import ConfigError
from vocabseg.fileio import atomic_write
from vocabseg.images import expand_inputs
from vocabseg.integrations.run_folder import RunFolder, read_run_folder

FORMATS = ("instance", "panoptic")


def export_coco(run_path: str | Path, output: str | Path, *, task: str | None = None,
                images: str | Path | None = None) -> dict[str, Any]:
    """Writes the COCO JSON of a run folder's ``task`` (default: instance if predicted, else panoptic) to
    ``output`` atomically; returns what it wrote: ``{"task", "images", "annotations", "categories"}`` counts.

    Raises:
        ConfigError: not a run folder, the task was not predicted, or an image is missing from ``images``.
    """
    run = read_run_folder(run_path)
    task = task or ("instance" if "instance" in run.tasks else "panoptic")
    if task not in FORMATS:
        raise ConfigError(f"--task {task}: COCO export takes instance or panoptic (semantic maps have no objects)")
    if task not in run.tasks:
        raise ConfigError(f"{run.path} has no {task} results (its tasks: {', '.join(run.tasks)}); "
                          f"rerun `vocabseg predict --task {task}` or choose --task {' or '.join(run.tasks)}")
    file_names = image_file_names(run, None if images is None else Path(images))
    labels = instances_json(run, file_names) if task == "instance" else panoptic_json(run, file_names)
    text = json.dumps(labels)
    atomic_write(output, lambda p: p.write_text(text, encoding="utf-8"))
    return {"task": task, "images": len(labels["images"]), "annotations": _count(labels, task),
            "categories": len(labels["categories"])}


def image_file_names(run: RunFolder, images: Path | None) -> dict[str, str]:
    """stem -> ``file_name`` of its COCO image entry: relative to ``images``, or the run folder's overlay."""
    if images is None:
        return {stem: run.overlay_path(stem).name for stem in run.stems}
    if not images.is_dir():
        raise ConfigError(f"--images {images} is not a folder; give the folder the run's images came from")
    by_stem = {path.stem: path for path in expand_inputs([str(images)])}
    missing = [stem for stem in run.stems if stem not in by_stem]
    if missing:
        raise ConfigError(f"--images {images} has no image named {missing[0]}.* ({len(missing)} of the run's "
                          f"{len(run.stems)} missing); give the folder the run was made from")
    return {stem: by_stem[stem].relative_to(images).as_posix() for stem in run.stems}


def categories(run: RunFolder) -> list[dict[str, Any]]:
    return [{"id": index + 1, "name": c.name, "supercategory": "thing" if c.is_thing else "stuff",
             "isthing": int(c.is_thing)} for index, c in enumerate(run.vocabulary.classes)]


def instances_json(run: RunFolder, file_names: dict[str, str]) -> dict[str, Any]:
    """COCO object annotations: RLE segmentation, bbox [x, y, w, h], area and score per non-empty instance."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, stem in enumerate(run.stems, start=1):
        height, width = run.image_size(stem)
        images.append({"id": image_id, "file_name": file_names[stem], "height": height, "width": width})
        for result in run.instance_results(stem):
            rle = result["segmentation"]
            area = int(mask_utils.area(rle))
            if area == 0:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(result["category_id"]) + 1, "segmentation": rle, "area": area,
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
                                "score": float(result["score"])})
    return {"info": _info(run, "instance"), "images": images, "annotations": annotations,
            "categories": categories(run)}


def panoptic_json(run: RunFolder, file_names: dict[str, str]) -> dict[str, Any]:
    """One COCO panoptic JSON: per image the PNG's name (in RUN_FOLDER/panoptic) and its segments_info."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, stem in enumerate(run.stems, start=1):
        pred = run.prediction(stem, ("panoptic",))
        assert pred.panoptic is not None
        images.append({"id": image_id, "file_name": file_names[stem], "height": pred.height, "width": pred.width})
        segments = []
        for s in pred.segments:
            mask = pred.panoptic == s.id  # [H, W]
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            bbox = [0, 0, 0, 0] if rows.size == 0 else [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                                                        int(rows[-1] - rows[0] + 1)]
            segments.append({"id": s.id, "category_id": s.category + 1, "iscrowd": 0, "area": int(mask.sum()),
                             "bbox": bbox, "score": s.score})
        annotations.append({"image_id": image_id, "file_name": run.panoptic_png(stem).name,
                            "segments_info": segments})
    return {"info": _info(run, "panoptic"), "images": images, "annotations": annotations,
            "categories": categories(run)}


def _info(run: RunFolder, task: str) -> dict[str, Any]:
    where = " (PNGs in the run folder's panoptic/)" if task == "panoptic" else ""
    return {"description": f"vocabseg predict {task} results of {run.path.name}{where}"}


def _count(labels: dict[str, Any], task: str) -> int:
    if task == "instance":
        return len(labels["annotations"])
    return sum(len(a["segments_info"]) for a in labels["annotations"])
