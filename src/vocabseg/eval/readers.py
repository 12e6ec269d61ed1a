"""Readers for predictions and gt stored in the standard file formats.

* Panoptic: COCO panoptic json (``annotations`` with ``image_id``, ``file_name``,
  ``segments_info``) plus one RGB PNG per image, id = R + 256 G + 256^2 B.
* Semantic: single-channel label PNGs (8-bit, palette or 16-bit) of class indices.
* Instance: COCO instance gt json and COCO results json (a list of dicts).

The files are read by ``vocabseg.data`` (``load_panoptic``, ``read_label_map``, ``read_json``)
with fixes that suit files a user wrote. Every problem with a file raises
:class:`vocabseg.errors.DatasetError` with one line naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vocabseg.data.errors import read_json as _read_json
from vocabseg.data.errors import require_dir
from vocabseg.data.io import Fixes, load_panoptic, read_label_map
from vocabseg.errors import DatasetError
from vocabseg.eval.panoptic import PanopticImage

PANOPTIC_PNG = Fixes(missing="write one PNG per image named as in the annotations", unreadable="save it as PNG",
                     wrong_mode="write the segment ids as colours with id2rgb")
LABEL_PNG = Fixes(missing="write one label PNG per image", unreadable="save it as PNG",
                  wrong_mode="save the class indices (8- or 16-bit), not colours")


def read_json(path: str | Path, what: str) -> Any:
    """Loads a json file; ``what`` says what it should hold, for the error messages."""
    return _read_json(Path(path), "check the path", what=what, malformed="rewrite it with json.dump")


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Reads a COCO panoptic PNG as [H, W] int64 segment ids (0 = VOID; alpha ignored as panopticapi does)."""
    return load_panoptic(path, what="panoptic PNG", fixes=PANOPTIC_PNG)


def read_label_png(path: str | Path) -> np.ndarray:
    """Reads a semantic label PNG (8-bit, palette or 16-bit) as [H, W] int64 class indices."""
    return read_label_map(path, what="label PNG", fixes=LABEL_PNG).astype(np.int64)


def _check_panoptic_json(data: Any, path: Path, need_categories: bool) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(
            f"panoptic json {path} needs an 'annotations' list; "
            "write {'annotations': [{'image_id', 'file_name', 'segments_info'}]}"
        )
    if need_categories and not isinstance(data.get("categories"), list):
        raise DatasetError(f"panoptic gt json {path} needs a 'categories' list of {{'id', 'name', 'isthing'}}")
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in ("image_id", "file_name", "segments_info") if not isinstance(ann, dict) or k not in ann]
        if missing:
            raise DatasetError(
                f"panoptic json {path}: annotation {i} lacks {missing}; "
                "every annotation needs image_id, file_name, segments_info"
            )
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict) or "id" not in seg or "category_id" not in seg:
                raise DatasetError(
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
        raise DatasetError(
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
        require_dir(d, "check the path", what="label folder")
    gt_files = sorted(gt_dir.glob(f"*{gt_suffix}"))
    if not gt_files:
        raise DatasetError(f"no *{gt_suffix} files in {gt_dir}; check the folder or pass gt_suffix")
    for gt_path in gt_files:
        stem = gt_path.name[: -len(gt_suffix)]
        pred_path = pred_dir / f"{stem}{pred_suffix}"
        if not pred_path.is_file():
            raise DatasetError(
                f"prediction {pred_path} for gt {gt_path} not found; write one label PNG per gt image, same stem"
            )
        yield stem, read_label_png(gt_path), read_label_png(pred_path)


def read_coco_results(path: str | Path) -> list[dict[str, Any]]:
    """Loads a COCO instance results json: a list of ``{image_id, category_id, segmentation, score}``."""
    data = read_json(path, "COCO results json")
    if not isinstance(data, list):
        raise DatasetError(
            f"COCO results json {path} must be a list of {{image_id, category_id, segmentation, score}}, "
            f"got a {type(data).__name__}"
        )
    for i, r in enumerate(data):
        keys = ("image_id", "category_id", "segmentation", "score")
        missing = [k for k in keys if not isinstance(r, dict) or k not in r]
        if missing:
            raise DatasetError(
                f"COCO results json {path}: entry {i} lacks {missing}; "
                "each needs image_id, category_id, segmentation (RLE), score"
            )
        if not isinstance(r["segmentation"], dict) or "counts" not in r["segmentation"]:
            raise DatasetError(
                f"COCO results json {path}: entry {i} segmentation must be an RLE dict {{size, counts}}; "
                "encode masks with pycocotools.mask.encode"
            )
    return data


def read_coco_gt(path: str | Path) -> dict[str, Any]:
    """Loads a COCO instance gt json (``images``, ``annotations``, ``categories``)."""
    data = read_json(path, "COCO gt json")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise DatasetError(f"COCO gt json {path} lacks {missing}; it must be a COCO instances file")
    return data
