"""Shared plumbing of the converters: atomic writes, resuming, progress.

Every output is written through ``vocabseg.fileio.atomic_write`` (a hidden temporary
file beside it, renamed into place; ``os.replace`` is atomic on one filesystem), so an
output that exists is complete and an interrupted run resumes by skipping it.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from vocabseg.fileio import atomic_write

T = TypeVar("T")

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}


def save_image(array: np.ndarray, path: Path) -> None:
    """Writes an array atomically; the suffix picks the format.

    uint8 [H, W] -> 8-bit grey, uint8 [H, W, 3] -> RGB, uint16 [H, W] -> 16-bit
    (TIFF or PNG). JPEGs use Pillow's default quality (75), as the official
    scripts do when they re-encode images.
    """
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=_FORMATS[path.suffix.lower()]))


def save_json(obj: Any, path: Path) -> None:
    """Writes json atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f)

    atomic_write(path, write)


def copy_file(src: Path, dst: Path) -> None:
    """Copies a file atomically (contents and timestamps)."""
    atomic_write(dst, lambda tmp: shutil.copy2(src, tmp))


def progress(items: Iterable[T], desc: str, enabled: bool, total: int | None = None) -> Iterator[T]:
    """``items`` with a tqdm bar when ``enabled``."""
    return iter(tqdm(items, desc=desc, total=total, disable=not enabled, unit="file", dynamic_ncols=True))


@dataclass
class Report:
    """What a preparation did, one line per split, for the CLI to print."""

    lines: list[str] = field(default_factory=list)
    written: int = 0  # files written over all splits
    done: int = 0  # splits converted (or found already converted)
    missing: list[Path] = field(default_factory=list)  # raw inputs of skipped splits

    def split_done(self, what: str, written: int, skipped: int, where: Path) -> None:
        self.written += written
        self.done += 1
        self.lines.append(f"{what}: wrote {written} file(s) to {where}, {skipped} already done")

    def split_missing(self, what: str, missing: Path, fix: str = "") -> None:
        self.missing.append(missing)
        self.lines.append(f"{what}: skipped, {missing} not found" + (f"; {fix}" if fix else ""))


def convert_each(sources: Iterable[Path], destination: Callable[[Path], Path], convert: Callable[[Path, Path], None],
                 *, desc: str, show: bool) -> tuple[int, int]:
    """Runs ``convert(src, dst)`` for every source whose output is not there yet.

    Outputs are written atomically by ``convert``, so an existing output is complete and a
    rerun after an interruption resumes where it stopped.

    Returns:
        (written, skipped) counts.
    """
    written = skipped = 0
    for src in progress(sorted(sources), desc, show):
        dst = destination(src)
        if dst.exists():
            skipped += 1
            continue
        convert(src, dst)
        written += 1
    return written, skipped


def into_folder(folder: Path) -> Callable[[Path], Path]:
    """A ``convert_each`` destination: the source's file name in ``folder``."""
    return lambda src: folder / src.name


def bbox_of(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of a non-empty [H, W] bool mask, in pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def apply_lut(values: np.ndarray, lut: np.ndarray, default: int) -> np.ndarray:
    """``lut[values]`` with ``default`` wherever a value is past the table's end."""
    values = values.astype(np.int64)
    inside = values < len(lut)
    return np.where(inside, lut[np.where(inside, values, 0)], default).astype(lut.dtype)


def read_raw(path: Path) -> np.ndarray:
    """A label image's stored values (palette PNGs give their indices)."""
    with Image.open(path) as img:
        return np.asarray(img)
