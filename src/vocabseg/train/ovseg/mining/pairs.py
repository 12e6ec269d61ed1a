"""The mined (masked crop, noun) dataset on disk: written image by image, so a stopped run resumes.

Layout of a pair folder::

    mining.json     the settings and sources that made it (a resume with others is refused, MINING_RESUME)
    resumes.jsonl   one line per resume: when, images done, the accepted changes
    pairs.jsonl     one pair per line: {"image", "crop", "mask", "noun", "score", "caption"}
    done.txt        images whose pairs are all written (one name a line)
    skipped.jsonl   images that gave no pair, and why: {"image", "reason"}
                    (with several mining processes, rank r > 0 writes pairs-r.jsonl, done-r.txt, skipped-r.jsonl)
    crops/          <image stem>_<k>.png (RGB crop, outside the region painted in CLIP's mean colour)
                    and <image stem>_<k>_mask.png (the region, 255 inside)

An image's pair lines are appended before its ``done.txt`` line; lines of an image that
is not done (a run killed in between) are dropped when the folder is reopened. Readers
sort the pairs by image, so the dataset does not depend on how many processes mined it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vocabseg.errors import DatasetError
from vocabseg.fileio import atomic_write
from vocabseg.train.checkpoint import ResumeRule, resume_changes

# What may differ when a pair folder is mined further (mining.json keys): how many of the captioned
# images are mined (those done stay done), regions per CLIP pass, the device.
MINING_RESUME = ResumeRule(("limit", "chunk", "device"), (), "mine.limit, mine.chunk and device")


@dataclass(frozen=True)
class Pair:
    image: str  # source image name (relative to the image folder)
    crop: str  # crop PNG, relative to the pair folder
    mask: str  # region mask PNG, relative to the pair folder
    noun: str
    score: float  # CLIP cosine similarity of the crop and the noun when mined
    caption: str  # the caption the noun came from


class PairWriter:
    """Appends one image's pairs at a time to a pair folder; knows which images are done."""

    def __init__(self, root: str | Path, *, settings: dict, shard: int = 0):
        self.root = Path(root)
        self.changes = self._check_settings(settings)  # other settings are refused before the folder is touched
        (self.root / "crops").mkdir(exist_ok=True)
        suffix = f"-{shard}" if shard else ""
        self.pairs_file, self.done_file = self.root / f"pairs{suffix}.jsonl", self.root / f"done{suffix}.txt"
        self.skipped_file = self.root / f"skipped{suffix}.jsonl"
        for path in (self.pairs_file, self.done_file, self.skipped_file):
            _cut_torn_tail(path)  # a killed run's half-written last line; appending would glue onto it
        self.done = done_images(self.root)
        self._drop_unfinished()

    def _check_settings(self, settings: dict) -> list[dict]:
        """The changes ``settings`` makes to the folder's ``mining.json`` (refused beyond MINING_RESUME)."""
        path = self.root / "mining.json"
        if path.is_file():  # kept as the folder started; resumes.jsonl records what changed since
            return resume_changes(json.loads(path.read_text(encoding="utf-8")), settings, source=path,
                                  rule=MINING_RESUME)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: p.write_text(json.dumps(settings, indent=1), encoding="utf-8"))
        return []

    def _drop_unfinished(self) -> None:
        path = self.pairs_file
        lines = _read_lines(path)
        kept = [line for line in lines if json.loads(line)["image"] in self.done]
        if len(kept) != len(lines):
            atomic_write(path, lambda p: p.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8"))

    def add(self, image: str, pairs: list[tuple[np.ndarray, np.ndarray, str, float, str]]) -> int:
        """Writes ``image``'s ``(crop [S, S, 3] uint8, mask [S, S], noun, score, caption)`` pairs, marks it done."""
        stem = Path(image).with_suffix("").as_posix().replace("/", "__")
        lines = []
        for k, (crop, mask, noun, score, caption) in enumerate(pairs):
            crop_name, mask_name = f"crops/{stem}_{k}.png", f"crops/{stem}_{k}_mask.png"
            Image.fromarray(crop).save(self.root / crop_name)
            Image.fromarray(mask.astype(np.uint8) * 255).save(self.root / mask_name)
            lines.append(json.dumps(asdict(Pair(image, crop_name, mask_name, noun, round(float(score), 5), caption))))
        _append(self.pairs_file, lines)
        _append(self.done_file, [image])
        self.done.add(image)
        return len(lines)

    def skip(self, image: str, reason: str) -> None:
        """Records an image that gave no pair (it counts as done)."""
        _append(self.skipped_file, [json.dumps({"image": image, "reason": reason})])
        _append(self.done_file, [image])
        self.done.add(image)


def done_images(root: str | Path) -> set[str]:
    """Images of a pair folder that are mined (or skipped), by every mining process."""
    return {line for path in sorted(Path(root).glob("done*.txt")) for line in _read_lines(path)}


def read_skips(root: str | Path) -> list[dict]:
    """``{"image", "reason"}`` of every skipped image."""
    return [json.loads(line) for path in sorted(Path(root).glob("skipped*.jsonl")) for line in _read_lines(path)]


def read_pairs(root: str | Path) -> list[Pair]:
    """The finished pairs of a pair folder, sorted by image (then by crop)."""
    root = Path(root)
    files = sorted(root.glob("pairs*.jsonl"))
    if not files:
        raise DatasetError(f"{root} holds no pairs.jsonl; run the mine stage (vocabseg train --preset ovseg_mine_coco) "
                           "or point data.root at its output")
    done = done_images(root)
    pairs = [Pair(**json.loads(line)) for path in files for line in _read_lines(path)]
    pairs = sorted((p for p in pairs if p.image in done), key=lambda p: (p.image, p.crop))
    if not pairs:
        raise DatasetError(f"{root} holds no finished pair; mine more images (see its skipped.jsonl)")
    return pairs


def _read_lines(path: Path) -> list[str]:
    """The file's complete lines: a last line without its newline was cut short by a killed run."""
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").split("\n")[:-1] if line.strip()]


def _cut_torn_tail(path: Path) -> None:
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        kept = "".join(f"{line}\n" for line in _read_lines(path))
        atomic_write(path, lambda p: p.write_text(kept, encoding="utf-8"))


def _append(path: Path, lines: list[str]) -> None:
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
        handle.flush()
