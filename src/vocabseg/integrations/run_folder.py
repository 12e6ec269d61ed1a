"""Reading a `vocabseg predict` folder back: its vocabulary (run.json), done images (run.done), per-image files.

Only the images listed in run.done count: their files are all written (an interrupted image
is not listed). Each comes back as a :class:`~vocabseg.predictor.Prediction`, so every
exporter converts one type whether it reads a folder or a live predictor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from vocabseg.data.io import rgb_to_id
from vocabseg.errors import ConfigError
from vocabseg.predictor import Prediction
from vocabseg.runs import DONE_FILE, RUN_FILE, read_done, read_run
from vocabseg.segments import Segment
from vocabseg.text import VocabClass, Vocabulary


@dataclass
class RunFolder:
    """A predict run folder: what it was made with and which images are complete."""

    path: Path
    vocabulary: Vocabulary
    tasks: list[str]
    stems: list[str]  # images in run.done, sorted

    def image_size(self, stem: str) -> tuple[int, int]:
        """(height, width) of an image, read from its overlay's header."""
        with Image.open(self.path / f"{stem}_overlay.png") as overlay:
            return overlay.height, overlay.width

    def overlay_path(self, stem: str) -> Path:
        return self.path / f"{stem}_overlay.png"

    def panoptic_png(self, stem: str) -> Path:
        return self.path / "panoptic" / f"{stem}.png"

    def instance_results(self, stem: str) -> list[dict]:
        """The stem's instances as written: COCO results dicts with RLE masks (vocabulary indices)."""
        return json.loads((self.path / "instance" / f"{stem}.json").read_text(encoding="utf-8"))

    def prediction(self, stem: str, tasks: tuple[str, ...] | None = None) -> Prediction:
        """The stem's results as written, of ``tasks`` (default: every task of the run)."""
        tasks = tuple(self.tasks) if tasks is None else tasks
        height, width = self.image_size(stem)
        pred = Prediction(height, width, self.vocabulary.class_names)
        if "semantic" in tasks:
            pred.semantic = _read_semantic(self.path / "semantic" / f"{stem}.png", len(self.vocabulary))
        if "panoptic" in tasks:
            pred.panoptic, pred.segments = _read_panoptic(self.path / "panoptic", stem)
        if "instance" in tasks:
            masks, scores, classes = _decode_instances(self.instance_results(stem), height, width)
            pred.instance_masks, pred.instance_scores, pred.instance_classes = masks, scores, classes
        return pred


def read_run_folder(path: str | Path) -> RunFolder:
    """Reads run.json and run.done of a folder written by `vocabseg predict`.

    Raises:
        ConfigError: not a folder, no run.json (not a run folder), or a run.json without a vocabulary.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder; give the --output folder of a `vocabseg predict` run")
    run = read_run(path)
    if run is None:
        raise ConfigError(f"{path} has no {RUN_FILE}: it is not a `vocabseg predict` output folder")
    identity = run.get("identity") if isinstance(run, dict) else None
    if not isinstance(identity, dict) or not identity.get("vocabulary") or not identity.get("tasks"):
        raise ConfigError(f"{path / RUN_FILE} names no vocabulary or tasks; rerun `vocabseg predict --overwrite`")
    stems = sorted(stem for stem in read_done(path) if (path / f"{stem}_overlay.png").is_file())
    if not stems:
        raise ConfigError(f"{path / DONE_FILE} lists no finished image; run `vocabseg predict` to the end first")
    return RunFolder(path, parse_classes(identity["vocabulary"]), list(identity["tasks"]), stems)


def parse_classes(lines: list[str]) -> Vocabulary:
    """run.json's classes (``"name / synonym [stuff]"``) -> a Vocabulary in the same order."""
    classes = []
    for line in lines:
        stuff = line.endswith(" [stuff]")
        names = line.removesuffix(" [stuff]").split(" / ")
        classes.append(VocabClass(tuple(names), is_thing=not stuff))
    return Vocabulary("run", tuple(classes))


def _read_semantic(path: Path, num_classes: int) -> np.ndarray:
    """[H, W] int32 class indices, -1 where the PNG holds its dtype's largest value (unassigned)."""
    labels = np.asarray(Image.open(path))
    unassigned = np.iinfo(np.uint8 if num_classes <= 255 else np.uint16).max
    return np.where(labels == unassigned, -1, labels).astype(np.int32)


def _read_panoptic(folder: Path, stem: str) -> tuple[np.ndarray, list[Segment]]:
    ids = rgb_to_id(np.asarray(Image.open(folder / f"{stem}.png").convert("RGB"))).astype(np.int32)  # [H, W]
    info = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    segments = [Segment(s["id"], s["category_id"], bool(s["isthing"]), area=s["area"], score=s.get("score"),
                        class_name=s.get("class_name")) for s in info["segments_info"]]
    return ids, segments


def _decode_instances(results: list[dict], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, H, W] bool masks, [N] float32 scores, [N] int64 classes of COCO results dicts."""
    masks = np.zeros((len(results), height, width), bool)
    for k, result in enumerate(results):
        masks[k] = mask_utils.decode(result["segmentation"]).astype(bool)
    scores = np.array([r["score"] for r in results], np.float32)
    classes = np.array([r["category_id"] for r in results], np.int64)
    return masks, scores, classes
