"""File readers and file-level evaluation on files written in the real formats."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vocabseg.errors import DatasetError
from vocabseg.eval.evaluators import PanopticEvaluator, SemanticEvaluator
from vocabseg.eval.from_files import evaluate_instance_files, evaluate_panoptic_files, evaluate_semantic_folders
from vocabseg.eval.instance import coco_mask_ap, gt_annotations_from_masks, to_coco_results
from vocabseg.eval.panoptic import PanopticImage, id2rgb
from vocabseg.eval.readers import read_coco_gt, read_coco_results, read_label_png, read_panoptic_png

from .test_panoptic import CATEGORIES, GT_IDS, GT_SEGS, PRED_IDS, PRED_SEGS, random_image


def write_panoptic(folder: Path, name: str, images: list[PanopticImage], categories: list | None = None) -> Path:
    """Writes ``folder/name.json`` and ``folder/name/*.png`` as COCO panoptic does."""
    (folder / name).mkdir(parents=True)
    anns = []
    for img in images:
        file_name = f"{img.image_id:012d}.png"
        Image.fromarray(id2rgb(img.ids)).save(folder / name / file_name)
        anns.append({"image_id": img.image_id, "file_name": file_name, "segments_info": img.segments})
    data = {"annotations": anns, **({"categories": categories} if categories else {})}
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder / f"{name}.json"


def test_panoptic_png_round_trip(tmp_path: Path):
    ids = np.array([[0, 5, 70000], [256**3 - 1, 1, 2]])
    Image.fromarray(id2rgb(ids)).save(tmp_path / "a.png")
    assert np.array_equal(read_panoptic_png(tmp_path / "a.png"), ids)


def test_panoptic_files_equal_in_memory(tmp_path: Path):
    rng = np.random.default_rng(1)
    pairs = [random_image(rng, i) for i in range(1, 5)] + [
        (PanopticImage(GT_IDS, GT_SEGS, 99), PanopticImage(PRED_IDS, PRED_SEGS, 99))
    ]
    cats = list(CATEGORIES.values())
    gt_json = write_panoptic(tmp_path, "gt", [g for g, _ in pairs], cats)
    pred_json = write_panoptic(tmp_path, "pred", [p for _, p in reversed(pairs)])  # order must not matter
    ev = PanopticEvaluator(cats)
    for g, p in pairs:
        ev.process(g, p)
    from_files, in_memory = evaluate_panoptic_files(gt_json, pred_json), ev.evaluate()
    assert from_files["per_class"] == in_memory["per_class"]
    assert {k: from_files[k] for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st")} == pytest.approx(
        {k: in_memory[k] for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st")}
    )


def test_panoptic_file_errors(tmp_path: Path):
    cats = list(CATEGORIES.values())
    gt_json = write_panoptic(tmp_path, "gt", [PanopticImage(GT_IDS, GT_SEGS, 1)], cats)
    pred_json = write_panoptic(tmp_path, "pred", [PanopticImage(PRED_IDS, PRED_SEGS, 2)])
    with pytest.raises(DatasetError, match="no prediction for 1 gt image.*image_id 1"):
        evaluate_panoptic_files(gt_json, pred_json)
    with pytest.raises(DatasetError, match="prediction PNG folder .*nowhere not found"):
        evaluate_panoptic_files(gt_json, pred_json, pred_folder=tmp_path / "nowhere")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"bad\.json is not valid JSON"):
        evaluate_panoptic_files(gt_json, tmp_path / "bad.json")
    (tmp_path / "noann.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"noann\.json needs an 'annotations' list"):
        evaluate_panoptic_files(gt_json, tmp_path / "noann.json")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(DatasetError, match=r"gray\.png has mode L, expected RGB"):
        read_panoptic_png(tmp_path / "gray.png")
    with pytest.raises(DatasetError, match=r"missing\.png not found"):
        read_panoptic_png(tmp_path / "missing.png")


def test_pred_segment_mismatch_names_image(tmp_path: Path):
    cats = list(CATEGORIES.values())
    gt_json = write_panoptic(tmp_path, "gt", [PanopticImage(GT_IDS, GT_SEGS, 5)], cats)
    pred_json = write_panoptic(tmp_path, "pred", [PanopticImage(PRED_IDS, PRED_SEGS[1:], 5)])
    with pytest.raises(DatasetError, match=r"pred\.json: image 5: segment id 11 is in the prediction PNG"):
        evaluate_panoptic_files(gt_json, pred_json)


@pytest.mark.parametrize("kind", ["uint8", "uint16", "palette"])
def test_label_png_formats(tmp_path: Path, kind: str):
    labels = np.array([[0, 1, 255], [2, 300 if kind == "uint16" else 3, 1]])
    if kind == "uint16":
        img = Image.fromarray(labels.astype(np.uint16))
    else:
        img = Image.fromarray(labels.astype(np.uint8))
        if kind == "palette":  # VOC-style: indices stored with a colour palette
            img.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
            assert img.mode == "P"
    img.save(tmp_path / "l.png")
    assert np.array_equal(read_label_png(tmp_path / "l.png"), labels)


def test_label_png_rejects_colour(tmp_path: Path):
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match=r"rgb\.png has mode RGB, expected single-channel"):
        read_label_png(tmp_path / "rgb.png")


def test_semantic_folders(tmp_path: Path):
    rng = np.random.default_rng(0)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    ev = SemanticEvaluator(["a", "b", "c"])
    for i in range(3):
        gt, pred = rng.integers(0, 3, (6, 7)), rng.integers(0, 3, (6, 7))
        gt[0] = 255
        Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "gt" / f"im{i}.png")
        Image.fromarray(pred.astype(np.uint16)).save(tmp_path / "pred" / f"im{i}_pred.png")
        ev.process(gt, pred)
    res = evaluate_semantic_folders(tmp_path / "gt", tmp_path / "pred", ["a", "b", "c"], pred_suffix="_pred.png")
    assert res == ev.evaluate()
    with pytest.raises(DatasetError, match=r"prediction .*im0\.png for gt .*im0\.png not found"):
        evaluate_semantic_folders(tmp_path / "gt", tmp_path / "pred", ["a", "b", "c"])


def test_instance_files(tmp_path: Path):
    masks = np.zeros((2, 40, 40), bool)
    masks[0, :10, :10] = masks[1, 20:, 5:30] = True
    gt = {
        "images": [{"id": 1, "height": 40, "width": 40}],
        "annotations": [
            {**a, "id": i + 1, "image_id": 1} for i, a in enumerate(gt_annotations_from_masks(masks, [1, 2]))
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    results = to_coco_results(1, np.roll(masks, 2, axis=2), [1, 2], [0.9, 0.4])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    res = evaluate_instance_files(tmp_path / "gt.json", tmp_path / "res.json")
    ref = coco_mask_ap(read_coco_gt(tmp_path / "gt.json"), read_coco_results(tmp_path / "res.json"))
    assert res["AP"] == pytest.approx(ref["AP"]) and res["per_class"]["b"]["AP"] == pytest.approx(ref["per_class"][2])
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.5}]))
    with pytest.raises(DatasetError, match=r"bad\.json: entry 0 lacks \['segmentation'\]"):
        read_coco_results(tmp_path / "bad.json")
    (tmp_path / "poly.json").write_text(json.dumps([{**results[0], "segmentation": [[0, 0, 1, 1, 2, 0]]}]))
    with pytest.raises(DatasetError, match="must be an RLE dict"):
        read_coco_results(tmp_path / "poly.json")
    with pytest.raises(DatasetError, match=r"res\.json lacks \['images', 'annotations', 'categories'\]"):
        read_coco_gt(tmp_path / "res.json")
