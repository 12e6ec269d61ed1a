"""Shared pieces of the tiny-dataset writers: file writers and expectations.

The writers use Pillow/numpy directly (not vocabseg's own writers), so the
files are an independent statement of each on-disk format.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 6, 8  # every tiny image is 6 rows x 8 columns unless stated
IGNORE = -1  # vocabseg.data.IGNORE_LABEL

# First entries of the PASCAL VOC colour palette (index -> RGB), enough for tests.
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)


@dataclass
class Tiny:
    """A tiny dataset on disk and what reading it must give, per image stem."""

    root: Path
    semantic: dict[str, np.ndarray] = field(default_factory=dict)  # [H, W] contiguous, IGNORE
    panoptic: dict[str, np.ndarray] = field(default_factory=dict)  # [H, W] segment ids
    segments: dict[str, list[tuple[int, int, bool]]] = field(default_factory=dict)  # (id, class index, iscrowd)
    instances: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # (class index, iscrowd)


def image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """A deterministic [h, w, 3] uint8 RGB image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_jpg(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(_mkdir(path), format="JPEG", quality=95)


def write_png(path: Path, array: np.ndarray) -> None:
    """uint8 [H, W] -> mode L, uint8 [H, W, 3] -> RGB, uint16 [H, W] -> 16-bit PNG."""
    Image.fromarray(array).save(_mkdir(path), format="PNG")


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    """A mode-P PNG whose palette indices are the labels (VOC, Mapillary)."""
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(VOC_PALETTE)
    img.save(_mkdir(path), format="PNG")


def write_tif16(path: Path, labels: np.ndarray) -> None:
    Image.fromarray(labels.astype(np.uint16)).save(_mkdir(path), format="TIFF")


def write_json(path: Path, obj: object) -> None:
    _mkdir(path).write_text(json.dumps(obj))


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] ids -> [H, W, 3] uint8, id = R + 256 G + 256^2 B."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def segment_info(ids: np.ndarray, segment_id: int, category_id: int, iscrowd: bool = False) -> dict:
    mask = ids == segment_id
    return {"id": segment_id, "category_id": category_id, "area": int(mask.sum()), "bbox": bbox(mask),
            "iscrowd": int(iscrowd)}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major mask, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def contiguous(raw: np.ndarray, ignore: int) -> np.ndarray:
    """Expected ``load_semantic`` output of a prepared map: raw values, IGNORE for ``ignore``."""
    out = raw.astype(np.int64)
    return np.where(out == ignore, IGNORE, out)
