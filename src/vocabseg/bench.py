"""Inference benchmark for any model family: per-stage times, peak memory, images/s, and how far
fast mode (bf16) strays from exact mode.

Stages are the model's top-level submodules (FC-CLIP: backbone, pixel_decoder,
transformer_decoder), timed by forward hooks, so a new family is benchmarked without code
here; "rest of run" is whatever else ``Predictor.run`` does (resize, heads, ensembles), and
each post-processing task is timed on its own.
"""
from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vocabseg.predictor import Prediction, Predictor, RawOutput, resolve_device
from vocabseg.text import TextEmbeddingCache

MODES = {"exact": "fp32", "fast": "fast", "bf16": "bf16"}  # benchmark mode -> InferenceConfig.precision
CAPTURE_BYTES = 2 ** 28  # per stage: tensors kept from exact mode to compare fast mode with


def cpu_clock() -> float:
    """The process's CPU seconds over its intra-op threads: on a machine shared with other jobs, an
    estimate of the wall time the same work takes on an idle one (wall time there is mostly waiting)."""
    return time.process_time() / torch.get_num_threads()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": cpu_clock}


@dataclass
class ModeResult:
    """One mode's measurements; times are medians over the repeats, for the whole batch."""

    mode: str
    stages: dict[str, float]  # seconds per stage, in the order they ran
    total: float  # seconds for run + every post-processing task
    images_per_s: float
    peak_bytes: int  # CUDA: peak allocated; CPU: peak resident set size of the process
    repeats: list[float]  # each repeat's total, to judge the noise
    captured: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)  # stage -> outputs
    raw: list[RawOutput] = field(default_factory=list, repr=False)
    predictions: list[Prediction] = field(default_factory=list, repr=False)


@dataclass
class Deviation:
    """Fast mode against exact mode on the same input."""

    relative_error: dict[str, float]  # stage -> ||fast - exact|| / ||exact|| over its captured outputs
    semantic_agreement: float | None  # fraction of pixels with the same semantic label (None: no semantic task)


def random_weights_predictor(model: str, device: str | torch.device) -> Predictor:
    """A zoo variant with random weights: speed does not depend on their values (nothing downloaded)."""
    from vocabseg.models import get_family
    from vocabseg.zoo import get_variant

    device = resolve_device(device)  # a bad --device fails before a large model is built
    variant = get_variant(model)
    family = get_family(variant.family)
    return Predictor(family.build(variant.config), variant.config, variant.settings, family=family,
                     train_vocabulary=variant.train_vocabulary, device=device)


# ---- timing -----------------------------------------------------------------------------------
class StageTimer:
    """Forward hooks on a model's direct children that add up each one's wall time.

    On CUDA every hook synchronises, so a stage's time is its own (the benchmark pays the syncs).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, clock: Callable[[], float] = time.perf_counter):
        self.device, self.clock = device, clock
        self.seconds: dict[str, float] = {}
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.capture = False
        self._started: dict[str, float] = {}
        self._handles = []
        for name, child in model.named_children():
            self._handles.append(child.register_forward_pre_hook(self._pre(name)))
            self._handles.append(child.register_forward_hook(self._post(name)))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module, args) -> None:
            self.sync()
            self._started[name] = self.clock()
        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module, args, output) -> None:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - self._started.pop(name)
            if self.capture and name not in self.outputs:  # the first call of a stage only
                self.outputs[name] = _capped(list(_tensors(output)), CAPTURE_BYTES)
        return hook

    def reset(self) -> None:
        self.seconds, self.outputs = {}, {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Floating-point tensors inside a module output (tensors, dataclasses, dicts, lists), in order."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _tensors(getattr(value, f.name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _capped(tensors: list[torch.Tensor], limit: int) -> list[torch.Tensor]:
    """float32 CPU copies of the leading tensors, up to ``limit`` bytes in all."""
    kept, used = [], 0
    for tensor in tensors:
        used += tensor.numel() * 4
        if used > limit:
            break
        kept.append(tensor.detach().float().cpu())
    return kept


class PeakMemory:
    """Peak memory over a block: CUDA allocator peak, or on CPU the resident set sampled every 5 ms."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
            return
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()

    def _sample(self, stop: threading.Event) -> None:
        while True:
            self.peak = max(self.peak, _resident_bytes())
            if stop.wait(0.005):
                return


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process's lifetime peak is all there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- one mode ---------------------------------------------------------------------------------
def run_mode(predictor: Predictor, images: list[np.ndarray], tasks: tuple[str, ...], *, mode: str,
             repeats: int = 2, warmup: int = 1, clock: str = "wall") -> ModeResult:
    """Times ``repeats`` passes of run + post-processing after ``warmup`` untimed ones, by ``clock``
    ("wall" or "cpu", see :func:`cpu_clock`); leaves the predictor in ``mode``'s precision."""
    predictor.with_settings({"precision": MODES[mode]})
    timer = StageTimer(predictor.model, predictor.device, CLOCKS[clock])
    memory = PeakMemory(predictor.device)
    try:
        for _ in range(warmup):
            _one_pass(predictor, images, tasks, timer)
        passes = []
        with memory.measure():
            for repeat in range(repeats):
                timer.capture = repeat == 0
                passes.append(_one_pass(predictor, images, tasks, timer))
    finally:
        timer.remove()
    stages = {name: statistics.median(p[0][name] for p in passes) for name in passes[0][0]}
    totals = [sum(p[0].values()) for p in passes]
    total = statistics.median(totals)
    first = passes[0]
    return ModeResult(mode, stages, total, len(images) / total, memory.peak, totals, first[1], first[2], first[3])


def _one_pass(predictor: Predictor, images, tasks, timer: StageTimer):
    """(stage -> seconds, captured stage outputs, raw outputs, predictions) of one pass."""
    timer.reset()
    sync = timer.sync
    sync()
    start = timer.clock()
    raws = predictor.run(images)
    sync()
    seconds = dict(timer.seconds)
    seconds["rest of run"] = timer.clock() - start - sum(seconds.values())
    predictions: list[Prediction] = [Prediction(r.output_size[0], r.output_size[1], []) for r in raws]
    for task in tasks:
        start = timer.clock()
        for raw, pred in zip(raws, predictions):
            _merge(pred, predictor.postprocess(raw, (task,)))
        sync()
        seconds[f"post: {task}"] = timer.clock() - start
    captured = dict(timer.outputs)
    if timer.capture:  # copied once per mode, not on every pass
        captured["mask_cls"] = [r.mask_cls.float().cpu() for r in raws]
        captured["mask logits"] = _capped([r.pred_masks for r in raws], CAPTURE_BYTES)
    return seconds, captured, raws, predictions


def _merge(into: Prediction, single: Prediction) -> None:
    """Copies the filled fields of a one-task prediction into ``into``."""
    for f in dataclasses.fields(single):
        value = getattr(single, f.name)
        if value is not None and not (isinstance(value, list) and not value):
            setattr(into, f.name, value)


def deviation(fast: ModeResult, exact: ModeResult) -> Deviation:
    errors = {}
    for name, reference in exact.captured.items():
        other = fast.captured.get(name, [])
        if len(other) != len(reference) or not reference or any(a.shape != b.shape for a, b in zip(other, reference)):
            continue  # not comparable (e.g. fast OVSeg keeps only its last decoder layer's heads): no figure
        num = sum(float((a - b).double().pow(2).sum()) for a, b in zip(other, reference))
        den = sum(float(b.double().pow(2).sum()) for b in reference)
        errors[name] = (num / den) ** 0.5 if den > 0 else float(num > 0)
    agreement = None
    pairs = [(f.semantic, e.semantic) for f, e in zip(fast.predictions, exact.predictions)
             if f.semantic is not None and e.semantic is not None]
    if pairs:
        agreement = float(np.mean(np.concatenate([(a == b).ravel() for a, b in pairs])))
    return Deviation(errors, agreement)


# ---- text classifier --------------------------------------------------------------------------
def time_text_classifier(predictor: Predictor, vocabulary: str, clock: str = "wall") -> tuple[float, float]:
    """(cold, warm) seconds of ``set_vocabulary``: cold into an empty cache, warm from it."""
    kept = predictor.text_cache
    with tempfile.TemporaryDirectory(prefix="vocabseg-bench-") as folder:
        predictor.text_cache = TextEmbeddingCache(folder)
        try:
            cold = _seconds(lambda: predictor.set_vocabulary(vocabulary, progress=False), CLOCKS[clock])
            warm = _seconds(lambda: predictor.set_vocabulary(vocabulary, progress=False), CLOCKS[clock])
        finally:
            predictor.text_cache = kept
    return cold, warm


def _seconds(fn: Callable[[], Any], clock: Callable[[], float]) -> float:
    start = clock()
    fn()
    return clock() - start


# ---- table ------------------------------------------------------------------------------------
def format_table(results: list[ModeResult], deviations: dict[str, Deviation] | None = None) -> str:
    """Stages as rows, one column of seconds per mode, then speed-up and relative error against exact."""
    deviations = deviations or {}
    names = list(dict.fromkeys(name for r in results for name in r.stages))
    exact = next((r for r in results if r.mode == "exact"), None)
    header = ["stage", *(f"{r.mode} s" for r in results)]
    others = [r for r in results if r is not exact] if exact else []
    for r in others:
        header += [f"{r.mode}/exact", f"{r.mode} rel.err"]
    rows = [header]
    for name in [*names, "total"]:
        row = [name, *(_cell(r.total if name == "total" else r.stages.get(name)) for r in results)]
        for r in others:
            assert exact is not None
            mine, base = (r.total, exact.total) if name == "total" else (r.stages.get(name), exact.stages.get(name))
            row.append(f"{mine / base:.2f}x" if mine is not None and base else "-")
            error = deviations.get(r.mode, Deviation({}, None)).relative_error.get(name)
            row.append("-" if error is None else f"{error:.1e}")
        rows.append(row)
    rows.append(["images/s", *(f"{r.images_per_s:.3g}" for r in results), *(["", ""] * len(others))])
    rows.append(["peak memory GiB", *(f"{r.peak_bytes / 2 ** 30:.2f}" for r in results), *(["", ""] * len(others))])
    return _render(rows) + _extra_lines(results, deviations)


def _extra_lines(results: list[ModeResult], deviations: dict[str, Deviation]) -> str:
    lines = [f"\n{r.mode}: totals of the repeats {', '.join(f'{t:.2f}' for t in r.repeats)} s" for r in results]
    for r in results:
        per_mp = post_seconds_per_megapixel(r)
        if per_mp is not None:
            lines.append(f"\n{r.mode}: post-processing {per_mp:.3f} s per megapixel of output")
        if r.raw and "region_sent" in r.raw[0].details:  # OVSeg: masked crops through the CLIP
            sent = sum(int(raw.details["region_sent"].sum()) for raw in r.raw)
            regions = sum(int(raw.details["region_valid"].sum()) for raw in r.raw)
            lines.append(f"\n{r.mode}: {sent} CLIP crops of {regions} proposal regions")
    for mode, dev in deviations.items():
        for name, error in dev.relative_error.items():
            if name in ("mask_cls", "mask logits"):
                lines.append(f"\n{mode}: {name} relative error {error:.2e}")
        if dev.semantic_agreement is not None:
            lines.append(f"\n{mode}: semantic label agreement with exact {100 * dev.semantic_agreement:.3f} %")
    return "".join(lines)


def post_seconds_per_megapixel(result: ModeResult) -> float | None:
    """All post-processing tasks' seconds over the output megapixels of the batch (None: no output)."""
    pixels = sum(p.height * p.width for p in result.predictions)
    post = sum(seconds for name, seconds in result.stages.items() if name.startswith("post: "))
    return post / (pixels / 1e6) if pixels else None


def _cell(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)
