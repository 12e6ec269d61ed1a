"""Readers for predictions and gt stored in the standard file formats.

* Panoptic: COCO panoptic json (``annotations`` with ``image_id``, ``file_name``,
  ``segments_info``) plus one RGB PNG per image, id = R + 256 G + 256^2 B.
* Semantic: single-channel label PNGs (8-bit, palette or 16-bit) of class indices.
* Instance: COCO instance gt json and COCO results json (a list of dicts).

Every problem with a file raises one line naming the file and the fix:
FileNotFoundError for a missing file, ValueError for a malformed one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vocabseg.eval.panoptic import PanopticImage, rgb2id

_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")  # single-channel integer PNG modes


def read_json(path: str | Path, what: str) -> Any:
    """Loads a json file; ``what`` says what it should hold, for the error messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} not found; check the path")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what} file {path} is not valid JSON ({e.msg} at line {e.lineno}); rewrite it with json.dump"
        ) from None


def _open_png(path: str | Path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found; write one PNG per image named as in the annotations")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{what} {path} is not an image Pillow can read; save it as PNG") from None


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Reads a COCO panoptic PNG as [H, W] int64 segment ids (0 = VOID)."""
    with _open_png(path, "panoptic PNG") as img:
        if img.mode not in ("RGB", "RGBA"):  # alpha, if any, is ignored as panopticapi does
            raise ValueError(
                f"panoptic PNG {path} has mode {img.mode}; it must be RGB with id = R + 256*G + 256**2*B (use id2rgb)"
            )
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint32)  # [H, W, 3]
    return rgb2id(rgb)


def read_label_png(path: str | Path) -> np.ndarray:
    """Reads a semantic label PNG (8-bit, palette or 16-bit) as [H, W] int64 class indices."""
    with _open_png(path, "label PNG") as img:
        if img.mode not in _LABEL_MODES:
            raise ValueError(
                f"label PNG {path} has mode {img.mode}; "
                "it must be single-channel class indices (8- or 16-bit), not colours"
            )
        return np.asarray(img, dtype=np.int64)  # palette images give their indices


def _check_panoptic_json(data: Any, path: Path, need_categories: bool) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(
            f"panoptic json {path} needs an 'annotations' list; "
            "write {'annotations': [{'image_id', 'file_name', 'segments_info'}]}"
        )
    if need_categories and not isinstance(data.get("categories"), list):
        raise ValueError(f"panoptic gt json {path} needs a 'categories' list of {{'id', 'name', 'isthing'}}")
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in ("image_id", "file_name", "segments_info") if k not in ann]
        if missing:
            raise ValueError(
                f"panoptic json {path}: annotation {i} lacks {missing}; "
                "every annotation needs image_id, file_name, segments_info"
            )
        for seg in ann["segments_info"]:
            if "id" not in seg or "category_id" not in seg:
                raise ValueError(
                    f"panoptic json {path}: image {ann['image_id']} has a segment without 'id' or 'category_id'"
                )


def load_panoptic_json(path: str | Path, is_gt: bool = False) -> dict[str, Any]:
    """Loads and checks a COCO panoptic json (gt also needs ``categories``)."""
    data = read_json(path, "panoptic gt json" if is_gt else "panoptic json")
    _check_panoptic_json(data, Path(path), need_categories=is_gt)
    return data


def default_png_folder(json_path: str | Path) -> Path:
    """``foo/panoptic_val.json`` -> ``foo/panoptic_val``, the COCO (and panopticapi) convention."""
    return Path(json_path).with_suffix("")


def read_panoptic_image(annotation: dict[str, Any], png_folder: str | Path) -> PanopticImage:
    """One json annotation plus its PNG from ``png_folder``."""
    ids = read_panoptic_png(Path(png_folder) / annotation["file_name"])
    return PanopticImage(ids=ids, segments=list(annotation["segments_info"]), image_id=annotation["image_id"])


def iter_panoptic_pairs(
    gt_json: dict[str, Any],
    pred_json: dict[str, Any],
    gt_folder: str | Path,
    pred_folder: str | Path,
    pred_path: str | Path = "predictions",
) -> Iterator[tuple[PanopticImage, PanopticImage]]:
    """Yields (gt, prediction) per gt annotation, paired by ``image_id`` like panopticapi."""
    preds = {ann["image_id"]: ann for ann in pred_json["annotations"]}
    missing = [ann["image_id"] for ann in gt_json["annotations"] if ann["image_id"] not in preds]
    if missing:
        raise ValueError(
            f"{pred_path} has no prediction for {len(missing)} gt image(s), e.g. image_id {missing[0]}; "
            "add an annotation per gt image"
        )
    for gt_ann in gt_json["annotations"]:
        yield read_panoptic_image(gt_ann, gt_folder), read_panoptic_image(preds[gt_ann["image_id"]], pred_folder)


def iter_label_pairs(
    gt_dir: str | Path, pred_dir: str | Path, gt_suffix: str = ".png", pred_suffix: str = ".png"
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields (stem, gt, pred) label maps.

    ``gt_dir/<stem><gt_suffix>`` pairs with ``pred_dir/<stem><pred_suffix>``.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"label folder {d} not found; check the path")
    gt_files = sorted(gt_dir.glob(f"*{gt_suffix}"))
    if not gt_files:
        raise ValueError(f"no *{gt_suffix} files in {gt_dir}; check the folder or pass gt_suffix")
    for gt_path in gt_files:
        stem = gt_path.name[: -len(gt_suffix)]
        pred_path = pred_dir / f"{stem}{pred_suffix}"
        if not pred_path.is_file():
            raise FileNotFoundError(
                f"prediction {pred_path} for gt {gt_path} not found; write one label PNG per gt image, same stem"
            )
        yield stem, read_label_png(gt_path), read_label_png(pred_path)


def read_coco_results(path: str | Path) -> list[dict[str, Any]]:
    """Loads a COCO instance results json: a list of ``{image_id, category_id, segmentation, score}``."""
    data = read_json(path, "COCO results json")
    if not isinstance(data, list):
        raise ValueError(
            f"COCO results json {path} must be a list of {{image_id, category_id, segmentation, score}}, "
            f"got a {type(data).__name__}"
        )
    for i, r in enumerate(data):
        missing = [k for k in ("image_id", "category_id", "segmentation", "score") if k not in r]
        if missing:
            raise ValueError(
                f"COCO results json {path}: entry {i} lacks {missing}; "
                "each needs image_id, category_id, segmentation (RLE), score"
            )
        if not isinstance(r["segmentation"], dict) or "counts" not in r["segmentation"]:
            raise ValueError(
                f"COCO results json {path}: entry {i} segmentation must be an RLE dict {{size, counts}}; "
                "encode masks with pycocotools.mask.encode"
            )
    return data


def read_coco_gt(path: str | Path) -> dict[str, Any]:
    """Loads a COCO instance gt json (``images``, ``annotations``, ``categories``)."""
    data = read_json(path, "COCO gt json")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"COCO gt json {path} lacks {missing}; it must be a COCO instances file")
    return data
