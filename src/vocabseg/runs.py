"""The record of a `vocabseg predict` run kept beside its results, so a rerun resumes honestly.

``<output>/run.json`` says what produced the results (model, a weights fingerprint, vocabulary,
tasks, settings); it is written before the first image. ``<output>/run.done`` lists the images
whose files are all written, one stem a line, appended after each image: a line without its
newline (an interrupted append) does not count, so a half-written image is redone.
``<output>/errors.json`` lists the inputs that could not be read (``--skip-errors``).
A rerun with the same identity skips the done images; with another one it refuses
(the folder rule itself, lock and ``--overwrite``, is :mod:`vocabseg.run_folder`'s).

Under torchrun each rank appends to its own ``run.done.rank<r>`` (and ``errors.json.rank<r>``), so
ranks on different machines sharing a folder never append to one file; readers take the union
of all of them, and rank 0 merges them into ``run.done`` (in input order) at the end of the job.
A killed job leaves its rank files; the next run reads them and redoes only what they lack.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from vocabseg.errors import ConfigError
from vocabseg.fileio import atomic_write

RUN_FILE = "run.json"
DONE_FILE = "run.done"
ERRORS_FILE = "errors.json"
RUN_FILES = (RUN_FILE, DONE_FILE, ERRORS_FILE)  # bookkeeping, not results
_FORMAT = 1


def weights_fingerprint(predictor: Any) -> str:
    """A cheap hash of the architecture, settings and a few values of every parameter tensor."""
    params = [p.detach().reshape(-1)[:4].float() for p in predictor.model.parameters()]
    sample = torch.cat(params).cpu().numpy()  # a few values of every tensor; note: one device sync
    described = json.dumps(predictor.describe(), sort_keys=True, default=str).encode()
    return hashlib.sha256(described + sample.tobytes()).hexdigest()[:16]


def run_identity(predictor: Any, vocab: Any, tasks: Iterable[str], batch_size: int) -> dict[str, Any]:
    """What a folder's results must have been produced with to be kept by a rerun; JSON-able."""
    classes = [" / ".join(c.names) + ("" if c.is_thing else " [stuff]") for c in vocab.classes]
    described = json.loads(json.dumps(predictor.describe(), default=str))  # tuples -> lists, as read back
    return {"weights": weights_fingerprint(predictor), "model": described, "vocabulary": classes,
            "tasks": list(tasks), "batch_size": batch_size}  # fmt: skip


def read_run(output: Path) -> dict[str, Any] | None:
    """The recorded run of ``output`` (None: no run.json)."""
    path = output / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not valid JSON; use --overwrite to redo the results") from None


def _done_lines(path: Path) -> list[str]:
    """The complete lines of one done file (a last line without its newline was cut short)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1].splitlines()


def _rank_files(output: Path, name: str) -> list[Path]:
    return sorted(output.glob(f"{name}.rank*"))


def read_done(output: Path) -> set[str]:
    """Stems of the images whose files are all written: run.done and every rank's run.done.rank<r>."""
    return {stem for path in [output / DONE_FILE, *_rank_files(output, DONE_FILE)] for stem in _done_lines(path)}


def ordered_done(output: Path, done: set[str], order: list[str]) -> list[str]:
    """``done`` as run.done lists it: its present lines first (their order kept), the others in ``order``."""
    kept = [stem for stem in dict.fromkeys(_done_lines(output / DONE_FILE)) if stem in done]
    position = {stem: index for index, stem in enumerate(order)}
    added = sorted(done - set(kept), key=lambda stem: (position.get(stem, len(order)), stem))
    return kept + added


def count_rank_done(output: Path) -> int:
    """Lines in the rank files (the job's progress so far; rank 0 shows it)."""
    return sum(len(_done_lines(path)) for path in _rank_files(output, DONE_FILE))


def merge_rank_files(output: Path, order: list[str]) -> None:
    """Rank 0 at the end of a job: folds the rank files into run.done and errors.json, then deletes them.

    run.done keeps its lines and gains the ranks' stems in ``order`` (the input order), each once,
    so a job writes the same run.done as one process over the same inputs.
    """
    lines = "".join(f"{stem}\n" for stem in ordered_done(output, read_done(output), order))
    atomic_write(output / DONE_FILE, lambda p: p.write_text(lines, encoding="utf-8"))
    errors = [e for path in _rank_files(output, ERRORS_FILE) for e in json.loads(path.read_text(encoding="utf-8"))]
    if errors:
        text = json.dumps(errors, indent=1) + "\n"
        atomic_write(output / ERRORS_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    for path in _rank_files(output, DONE_FILE) + _rank_files(output, ERRORS_FILE):
        path.unlink()


def previous_done(output: Path, stems: list[str], *, overwrite: bool) -> set[str]:
    """Stems a rerun may skip: recorded done and still on disk (none with ``overwrite``).

    Raises:
        ConfigError: the folder holds results of these inputs that no run.json describes
            (written by an older vocabseg), so they cannot be checked against this run.
    """
    if overwrite:
        return set()
    if read_run(output) is None:
        found = [stem for stem in stems if (output / f"{stem}_overlay.png").exists()]
        if found:
            raise ConfigError(f"--output {output} holds results ({found[0]}_overlay.png, ...) with no {RUN_FILE} "
                              "saying how they were made; use --overwrite to redo them or another --output")
        return set()
    return {stem for stem in read_done(output) if (output / f"{stem}_overlay.png").exists()}


def check_output_folder(output: Path, inputs: list[Path]) -> None:
    """Fails early (before loading a model) when ``output`` cannot be written or has too little space."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; give a directory for the results")
    existing = output
    while not existing.exists():  # the folder is created later: check its nearest existing parent
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output {output} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output folder {existing} is not writable; choose another --output")
    # Rough need: PNG overlays and label maps take a few times an input's (compressed) size.
    needed = sum(4 * path.stat().st_size + 64 * 1024 for path in inputs)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ConfigError(f"--output {output} has {free / 2**20:.0f} MiB free; these {len(inputs)} image(s) need "
                          f"about {needed / 2**20:.0f} MiB: free some space or choose another --output")


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like dicts (a whole value when not both dicts)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "run"]
    keys = sorted(set(old) | set(new))
    return [d for k in keys for d in differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)]


class RunRecord:
    """Writes run.json, run.done and errors.json of one output folder (this rank's files under torchrun)."""

    def __init__(self, output: Path, *, rank: int = 0, world_size: int = 1):
        self.output = output
        self.errors: list[dict[str, str]] = []
        suffix = f".rank{rank}" if world_size > 1 else ""
        self.done_path = output / f"{DONE_FILE}{suffix}"
        self.errors_path = output / f"{ERRORS_FILE}{suffix}"

    def start(self, identity: dict[str, Any], source: dict[str, Any], done: set[str], *, overwrite: bool,
              order: Sequence[str] = ()) -> None:
        """Checks ``identity`` against the recorded run, then writes run.json and the ``done`` stems (once per job).

        With ``overwrite`` the old run's files are deleted first (results of every image included).

        Raises:
            ConfigError: the folder holds results of another run and ``overwrite`` is off.
        """
        from vocabseg.run_folder import clear

        recorded = None if overwrite else read_run(self.output)
        if recorded is not None:
            changed = differences(recorded.get("identity"), identity)
            if changed:
                raise ConfigError(f"--output {self.output} holds results of another run ({', '.join(changed[:3])} "
                                  "differ); use --overwrite to redo them or another --output")
        if overwrite:
            clear(self.output, "predict")
        run = {"format": _FORMAT, "source": source, "identity": identity}
        text = json.dumps(run, indent=1) + "\n"
        atomic_write(self.output / RUN_FILE, lambda p: p.write_text(text, encoding="utf-8"))
        # Rewritten whole once per run (rank files of a killed job folded in): drops a partial last line.
        lines = "".join(f"{stem}\n" for stem in ordered_done(self.output, done, list(order)))
        atomic_write(self.output / DONE_FILE, lambda p: p.write_text(lines, encoding="utf-8"))
        for path in [self.output / ERRORS_FILE, *_rank_files(self.output, DONE_FILE),
                     *_rank_files(self.output, ERRORS_FILE)]:
            path.unlink(missing_ok=True)  # this run's errors only; failed inputs are retried

    def mark_done(self, stem: str) -> None:
        """Records that every file of ``stem`` is written (one short append per image)."""
        with open(self.done_path, "a", encoding="utf-8") as f:
            f.write(f"{stem}\n")

    def add_error(self, path: Path, reason: str) -> None:
        """Records an input that could not be read; the errors file is rewritten whole each time."""
        self.errors.append({"path": str(path), "reason": reason})
        text = json.dumps(self.errors, indent=1) + "\n"
        atomic_write(self.errors_path, lambda p: p.write_text(text, encoding="utf-8"))
