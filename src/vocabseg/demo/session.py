"""What the demo page does, without the page: load models on first use, segment, write the downloads.

Kept free of Gradio so it is tested directly; ``app.py`` only lays out the page and calls
:meth:`DemoSession.segment`. A user's mistake (no image, an empty or unknown vocabulary, weights
that are not on this machine) becomes a one-line message for the page, never a traceback.
"""
from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vocabseg.errors import CheckpointError, ConfigError, ImageError, VocabsegError, first_line
from vocabseg.images import load_image

logger = logging.getLogger(__name__)

# Mode switch -> the precision setting of fast mode (issue 11).
MODES = {"exact": "fp32", "fast": "fast"}
TABLE_HEADERS = ["class", "score", "area (px)", "area (%)"]
Progress = Callable[[float, str], None]  # fraction done, what is happening


@dataclass(frozen=True)
class ModelSource:
    """One entry of the model picker: what ``Predictor.from_pretrained`` gets."""

    label: str
    name_or_path: str
    weights: str | None = None
    clip_weights: str | None = None


_HERE, _MAYBE, _MISSING = 0, 1, 2  # a model's weights: on this machine, maybe in the hub cache, not here


@dataclass(frozen=True)
class ModelChoice:
    """What the page shows for a picked model."""

    tasks: tuple[str, ...]  # the tasks its model gives (the task picker's choices)
    task: str  # the one selected: the model's own output
    message: str  # one line: ready, or why it cannot run and how to fix that
    loaded: bool  # whether the model loaded (a click on Segment will run)


@dataclass
class DemoResult:
    """What the page shows after one run."""

    overlay: np.ndarray | None = None  # [H, W, 3] uint8 with labels and legend
    rows: list[list[Any]] = field(default_factory=list)  # TABLE_HEADERS per segment or class
    files: list[str] = field(default_factory=list)  # downloads: panoptic PNG + JSON, labels PNG + JSON, RLE, overlay
    message: str = ""  # one line for the page: what was done, or what to fix


class DemoSession:
    """Models loaded on first use (kept), a vocabulary per run, outputs written under ``output_root``."""

    def __init__(self, sources: list[ModelSource], *, device: str = "cpu", settings: dict | None = None,
                 output_root: str | Path | None = None):
        if not sources:
            raise ConfigError("the demo needs at least one model: --checkpoint PATH, --model NAME [--weights PATH]")
        self.sources = {s.label: s for s in sources}
        self.device, self.settings = device, dict(settings or {})
        self.output_root = Path(output_root or tempfile.mkdtemp(prefix="vocabseg-demo-"))
        self._predictors: dict[str, Any] = {}
        self._runs = 0

    def opening(self) -> tuple[str, ModelChoice]:
        """The model the page opens on and its choice: the first that loads, those whose weights are on this
        machine tried first, so the first click works. None loads: the first model, with the reason."""
        order = sorted(self.sources, key=self._availability)  # stable: the command line's order within a rank
        for label in order:
            if self._availability(label) == _MISSING:
                break
            choice = self.choose(label)
            if choice.loaded:
                return label, choice
        return order[0], self.choose(order[0])

    def choose(self, label: str) -> ModelChoice:
        """What the page shows when ``label`` is picked: the tasks its model gives, its own output (the
        family's first task) selected. The model is loaded (and kept) to know them; one that cannot load
        keeps the tasks its family is known to give, with the one-line reason."""
        try:
            family = self.predictor(label).family
        except (VocabsegError, OSError) as error:
            tasks = self._known_tasks(label)
            return ModelChoice(tasks, tasks[0], f"**Error**: {first_line(error)}", loaded=False)
        return ModelChoice(family.tasks, family.tasks[0],
                           f"**Ready**: {label} ({family.title}; gives {', '.join(family.tasks)})", loaded=True)

    def _known_tasks(self, label: str) -> tuple[str, ...]:
        """The tasks of a model known without loading it (a zoo name's family), else every task."""
        from vocabseg.models import TASKS, get_family
        from vocabseg.zoo import get_variant, list_models

        if label in self.sources and self.sources[label].name_or_path in list_models():
            return get_family(get_variant(self.sources[label].name_or_path).family).tasks
        return tuple(TASKS)

    def _availability(self, label: str) -> int:
        """How likely a model is to load: its weights on this machine, maybe in the hub cache, or missing."""
        from vocabseg.downloads import cache_dir
        from vocabseg.zoo import get_variant, list_models

        source = self.sources[label]
        if label in self._predictors:
            return _HERE
        if source.weights:
            return _HERE if Path(source.weights).exists() else _MISSING
        if source.name_or_path in list_models():
            spec = get_variant(source.name_or_path).weights
            return _HERE if spec is not None and (cache_dir() / spec.filename).exists() else _MISSING
        if source.name_or_path.startswith("hf-hub:"):
            return _MAYBE
        return _HERE if Path(source.name_or_path).exists() else _MISSING

    def predictor(self, label: str) -> Any:
        """The model of a picker entry, loaded once; a missing or unreadable checkpoint raises CheckpointError."""
        if label not in self._predictors:
            if label not in self.sources:
                raise ConfigError(f"unknown model {label!r}; pick one of: {', '.join(self.sources)}")
            self._predictors[label] = _load(self.sources[label], self.device, self.settings)
        return self._predictors[label]

    def segment(self, image: np.ndarray | None, vocabulary: str, model: str, task: str, mode: str = "exact",
                progress: Progress | None = None) -> DemoResult:
        """One run of the page; never raises for a user's mistake (the result's message says what to fix)."""
        report = progress or (lambda fraction, text: None)
        try:
            return self._segment(image, vocabulary, model, task, mode, report)
        except (VocabsegError, OSError) as error:
            return DemoResult(message=f"**Error**: {first_line(error)}")

    def _segment(self, image: np.ndarray | None, vocabulary: str, model: str, task: str, mode: str,
                 report: Progress) -> DemoResult:
        from vocabseg.outputs import overlay

        array = _check_image(image)
        if not vocabulary or not vocabulary.strip():
            raise ConfigError("type the classes to find, e.g. 'cat; dog; grass [stuff]', or pick a built-in "
                              "vocabulary")
        report(0.05, f"loading {model}")
        predictor = self.predictor(model)
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; pick one of: {', '.join(MODES)}")
        predictor.with_settings({"precision": MODES[mode]})
        report(0.2, "building text embeddings (cached after the first time)")
        started = time.perf_counter()
        vocab = predictor.set_vocabulary(vocabulary.strip())  # a tqdm bar for large vocabularies (the page shows it)
        report(0.5, f"segmenting ({len(vocab)} classes)")
        family = predictor.family
        if task != "all" and task not in family.tasks:
            raise ConfigError(f"{family.title} models give {', '.join(family.tasks)} output, not {task}: "
                              "pick one of those tasks")
        # Every output the family gives, for the downloads; the page shows the chosen task's.
        pred = predictor.predict(array, task=tuple(family.tasks))
        shown = pred if task == "all" else only_task(pred, task)
        report(0.9, "writing the downloads")
        picture = overlay(array, shown, vocab)  # [H, W, 3]: shown on the page and offered as overlay.png
        files = self._write(array, pred, picture, vocab)
        seconds = time.perf_counter() - started
        rows = segment_rows(shown, vocab)
        note = f"{len(rows)} segment(s) of {len(vocab)} class(es) in {seconds:.1f} s" if rows else (
            f"nothing found for these {len(vocab)} class(es); try other words or another task")
        return DemoResult(picture, rows, files, f"**Done**: {note}")

    def _write(self, image: np.ndarray, pred: Any, picture: np.ndarray, vocab: Any) -> list[str]:
        """The outputs under plain names in a folder per run (the page lists files by name only)."""
        from vocabseg.outputs import save_png, write_prediction

        self._runs += 1
        folder = self.output_root / f"run{self._runs:04d}"
        *written, all_tasks_overlay = write_prediction(folder / "files", "result", image, pred, vocab)
        all_tasks_overlay.unlink()  # the page's overlay (the chosen task's) is the one offered
        files = []
        for path in written:
            target = folder / DOWNLOAD_NAMES[path.relative_to(folder / "files").as_posix()]
            path.replace(target)
            files.append(str(target))
        save_png(folder / "overlay.png", picture)
        return [*files, str(folder / "overlay.png")]


# write_prediction's layout -> the names offered for download
DOWNLOAD_NAMES = {"panoptic/result.png": "panoptic.png", "panoptic/result.json": "panoptic.json",
                  "semantic/result.png": "semantic_labels.png", "semantic/result.json": "semantic_classes.json",
                  "instance/result.json": "instances_rle.json"}


def only_task(pred: Any, task: str) -> Any:
    """The prediction with the other tasks' fields cleared (the overlay and table follow what is left)."""
    keep_instances = task == "instance"
    return replace(pred, semantic=pred.semantic if task == "semantic" else None,
                   panoptic=pred.panoptic if task == "panoptic" else None,
                   segments=pred.segments if task == "panoptic" else [],
                   instance_masks=pred.instance_masks if keep_instances else None,
                   instance_scores=pred.instance_scores if keep_instances else None,
                   instance_classes=pred.instance_classes if keep_instances else None)


def _load(source: ModelSource, device: str, settings: dict) -> Any:
    from vocabseg.predictor import Predictor

    weights = source.weights or _cached_official(source.name_or_path)
    try:
        return Predictor.from_pretrained(source.name_or_path, weights=weights, clip_weights=source.clip_weights,
                                         device=device, inference=settings, progress=False)
    except CheckpointError as error:
        raise CheckpointError(f"{source.label}: {first_line(error)}") from None


def _cached_official(name: str) -> str | None:
    """The cached official weights of a zoo name; without them, the one-line error saying how to supply them.

    The demo never starts a download of its own (gigabytes, mid-page): the user fetches or passes them.
    """
    from vocabseg.downloads import cache_dir
    from vocabseg.zoo import get_variant, list_models

    if name not in list_models():
        return None  # a checkpoint path or hf-hub: name
    variant = get_variant(name)
    spec = variant.weights
    target = cache_dir() / spec.filename if spec else None
    if target is not None and target.exists():
        return str(target)
    passing = f"start the demo with `vocabseg demo --model {name} --weights PATH`"
    if spec is not None and spec.manual:  # a share page no program can fetch: `vocabseg download` cannot help
        raise CheckpointError(f"the weights of {name} are not on this machine and only a person can download "
                              f"them ({spec.manual}): get the file from {spec.url}, then {passing} or save it "
                              f"as {target}")
    raise CheckpointError(f"the weights of {name} are not on this machine: run `vocabseg download {name}`, or "
                          f"{passing}")


def _check_image(image: np.ndarray | None) -> np.ndarray:
    """The page's photo as [H, W, 3] uint8 (grey and RGBA converted by the predictor's own reader)."""
    if image is None:
        raise ImageError("upload a photo or pick an example first")
    array = load_image(np.asarray(image))
    if min(array.shape[:2]) < 8:
        raise ImageError(f"cannot use an image of {array.shape[1]}x{array.shape[0]} pixels; upload a photo of at "
                         "least 8x8 pixels")
    return array


def segment_rows(pred: Any, vocab: Any) -> list[list[Any]]:
    """The table: one row per panoptic segment (largest first), else per instance, else per semantic class."""
    total = pred.height * pred.width
    items: list[tuple[str, float | None, int]]
    if pred.panoptic is not None:
        items = [(s.class_name, round(float(s.score), 3), int(s.area)) for s in pred.segments]
    elif pred.instance_masks is not None:
        items = [(vocab.class_names[int(c)], round(float(s), 3), int(m.sum()))
                 for m, s, c in zip(pred.instance_masks, pred.instance_scores, pred.instance_classes) if s >= 0.5]
    else:
        classes, counts = np.unique(pred.semantic[pred.semantic >= 0], return_counts=True)
        items = [(vocab.class_names[int(c)], None, int(n)) for c, n in zip(classes, counts)]
    items.sort(key=lambda item: -item[2])
    return [[name, score, area, round(100.0 * area / total, 1)] for name, score, area in items]


