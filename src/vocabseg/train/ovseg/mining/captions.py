"""Captions of an image folder: a COCO-captions JSON, or JSON lines ``{"image": ..., "caption": ...}``.

The caption file must describe the image folder: names that are not in it are recorded as
skips, and a file none of whose images are in the folder is refused at once.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from vocabseg.errors import DatasetError


def read_captions(path: str | Path, images: str | Path, *, per_image: int) -> tuple[dict[str, list[str]], list[str]]:
    """``({image name: its first per_image captions}, [names missing from the folder])``, names sorted.

    Raises:
        DatasetError: unreadable or malformed file, or one that does not match the image folder.
    """
    path, folder = Path(path), Path(images)
    if not path.is_file():
        raise DatasetError(f"mine.captions={path}: no such file; give a COCO captions JSON (captions_*.json)")
    if not folder.is_dir():
        raise DatasetError(f"mine.images={folder}: no such folder")
    captions = _read_jsonl(path) if path.suffix == ".jsonl" else _read_coco(path)
    if not captions:
        raise DatasetError(f"{path} holds no caption")
    present = {name for name in captions if (folder / name).is_file()}
    if not present:
        example = next(iter(captions))
        raise DatasetError(f"{path} does not match the images in {folder} (e.g. {example!r} is not there); "
                           "check mine.images and mine.captions")
    kept = {name: [c.strip() for c in captions[name]][:max(per_image, 1)] for name in sorted(present)}
    return kept, sorted(set(captions) - present)


def _read_coco(path: Path) -> dict[str, list[str]]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path} is not a COCO captions file (needs 'images' and 'annotations' lists)")
    try:
        names = {image["id"]: image["file_name"] for image in data["images"]}
        captions: dict[str, list[str]] = defaultdict(list)
        for annotation in sorted(data["annotations"], key=lambda a: a.get("id", 0)):
            captions[names[annotation["image_id"]]].append(str(annotation["caption"]))
    except (KeyError, TypeError) as error:
        raise DatasetError(f"{path}: a caption or image entry lacks {error} (COCO captions format: images[].id, "
                           "images[].file_name, annotations[].image_id, annotations[].caption)") from None
    return dict(captions)


def _read_jsonl(path: Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            captions[str(record["image"])].append(str(record["caption"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DatasetError(f"{path}:{number}: not a {{\"image\": ..., \"caption\": ...}} line") from None
    return dict(captions)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON ({error})") from None
