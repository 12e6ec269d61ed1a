"""Writing predictions to disk: overlay PNG, COCO panoptic PNG + JSON, label PNG, COCO RLE JSON.

Every file is written through ``vocabseg.fileio.atomic_write`` (a temporary name, then a
rename), so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from vocabseg.data.io import id_to_rgb
from vocabseg.fileio import atomic_write
from vocabseg.predictor import Prediction
from vocabseg.text import Vocabulary


def save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))


def save_json(path: Path, data) -> None:
    def write(p):
        with open(p, "w", encoding="utf-8") as f:
            json.dump(data, f)

    atomic_write(path, write)


def class_color(vocab: Vocabulary, index: int) -> tuple[int, int, int]:
    """The vocabulary's colour, else a stable colour derived from the class name."""
    color = vocab.classes[index].color
    if color is not None:
        r, g, b = color
        return r, g, b
    h = zlib.crc32(vocab.classes[index].name.encode())
    return (h & 255, (h >> 8) & 255, (h >> 16) & 255)


def overlay(image: np.ndarray, pred: Prediction, vocab: Vocabulary, alpha: float = 0.55) -> np.ndarray:
    """Image blended with class colours, each region labelled with its class name."""
    regions = _labelled_regions(pred)
    canvas = image.astype(np.float32).copy()
    for mask, class_index in regions:
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * np.array(class_color(vocab, class_index), np.float32)
    pil = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for mask, class_index in regions:
        ys, xs = np.nonzero(mask)
        if len(xs):
            draw.text((float(np.median(xs)), float(np.median(ys))), vocab.classes[class_index].name,
                      fill=(255, 255, 255))
    return np.asarray(pil)


def _labelled_regions(pred: Prediction) -> list[tuple[np.ndarray, int]]:
    if pred.panoptic is not None:
        return [(pred.panoptic == s.id, s.category) for s in pred.segments]
    if pred.semantic is not None:
        return [(pred.semantic == c, int(c)) for c in np.unique(pred.semantic) if c >= 0]  # -1: unassigned
    instances = _instances(pred)
    if instances is not None:
        masks, scores, classes = instances
        keep = scores >= 0.5
        return [(m, int(c)) for m, c in zip(masks[keep], classes[keep])]
    return []


def _instances(pred: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The instance masks, scores and classes, which the predictor fills together; None if not predicted."""
    if pred.instance_masks is None:
        return None
    if pred.instance_scores is None or pred.instance_classes is None:
        raise ValueError("the prediction has instance masks but no instance scores or classes")
    return pred.instance_masks, pred.instance_scores, pred.instance_classes


def categories_json(vocab: Vocabulary) -> list[dict]:
    return [{"id": i, "name": c.name, "isthing": int(c.is_thing), "color": list(class_color(vocab, i))}
            for i, c in enumerate(vocab.classes)]


def write_prediction(output_dir: Path, stem: str, image: np.ndarray, pred: Prediction, vocab: Vocabulary) -> list[Path]:
    """Writes every output of one image; returns the paths written (overlay last)."""
    written = []
    if pred.panoptic is not None:
        png = output_dir / "panoptic" / f"{stem}.png"
        save_png(png, id_to_rgb(pred.panoptic))
        segments = [{"id": s.id, "category_id": s.category, "iscrowd": 0, "isthing": int(s.is_thing),
                     "area": s.area, "score": s.score, "class_name": s.class_name} for s in pred.segments]
        save_json(output_dir / "panoptic" / f"{stem}.json",
                  {"file_name": png.name, "image_id": stem, "segments_info": segments,
                   "categories": categories_json(vocab)})
        written += [png, output_dir / "panoptic" / f"{stem}.json"]
    if pred.semantic is not None:
        dtype = np.uint8 if len(vocab) <= 255 else np.uint16  # the largest value marks unassigned pixels
        path = output_dir / "semantic" / f"{stem}.png"
        save_png(path, np.where(pred.semantic < 0, np.iinfo(dtype).max, pred.semantic).astype(dtype))
        written.append(path)
    if pred.instance_masks is not None:
        path = output_dir / "instance" / f"{stem}.json"
        save_json(path, instance_results(stem, pred))
        written.append(path)
    path = output_dir / f"{stem}_overlay.png"
    save_png(path, overlay(image, pred, vocab))
    return written + [path]


def instance_results(image_id, pred: Prediction) -> list[dict]:
    """COCO results format: one dict per instance with an RLE mask."""
    instances = _instances(pred)
    if instances is None:
        raise ValueError("the prediction has no instances; predict with the instance task")
    results = []
    for mask, score, cls in zip(*instances):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": image_id, "category_id": int(cls), "segmentation": rle, "score": float(score),
                        "class_name": pred.class_names[int(cls)]})
    return results
