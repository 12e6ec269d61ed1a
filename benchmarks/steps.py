"""Timing training steps for the train-step benchmarks (run them as scripts: this folder is on sys.path)."""
from __future__ import annotations

import resource
import time

import torch

from vocabseg.train.loop import Trainer


def time_steps(trainer: Trainer, *, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` optimizer steps after ``warmup`` untimed ones (loss printed for all)."""
    batches = trainer.batch_stream()
    times = []
    for i in range(warmup + iters):
        _sync(trainer.device)
        started = time.perf_counter()
        result = trainer.step(batches)
        _sync(trainer.device)  # note: GPU work is asynchronous; the clock stops when it is done
        times.append(time.perf_counter() - started)
        print(f"iter {i}: {times[-1]:.2f} s, loss {result.total:.2f}", flush=True)
    return times[warmup:]


def summary(times: list[float], device: torch.device) -> str:
    """``X s/iter, peak RSS Y GiB[, peak GPU memory Z GiB]``."""
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    line = f"{sum(times) / len(times):.2f} s/iter, peak RSS {peak_rss:.1f} GiB"
    if device.type == "cuda":
        line += f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    return line


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
