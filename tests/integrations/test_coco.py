"""`vocabseg export-labels --format coco` of a predict run folder, read back with pycocotools."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from vocabseg.cli import main
from vocabseg.data.io import rgb_to_id


def _export(run_folder, output, *extra) -> int:
    return main(["-q", "export-labels", str(run_folder), "--format", "coco", "--output", str(output), *extra])


def test_instances_load_in_pycocotools_and_decode_to_the_predictors_masks(run_folder, photos, predictor, tmp_path):
    assert _export(run_folder, tmp_path / "labels.json", "--images", str(photos[0].parent)) == 0
    coco = COCO(str(tmp_path / "labels.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog", "road", "sky"]
    assert coco.getCatIds() == [1, 2, 3, 4]
    checked = 0
    for image in coco.loadImgs(coco.getImgIds()):
        assert image["file_name"] == f"{image['file_name'].split('.')[0]}.png"
        pred = predictor.predict(str(photos[0].parent / image["file_name"]), task="instance")
        assert (image["height"], image["width"]) == pred.instance_masks.shape[1:]
        kept = np.flatnonzero(pred.instance_masks.any(axis=(1, 2)))  # empty masks are not exported
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(anns) == len(kept) > 0
        for ann, k in zip(anns, kept):
            decoded = coco.annToMask(ann).astype(bool)
            np.testing.assert_array_equal(decoded, pred.instance_masks[k])
            assert ann["category_id"] == pred.instance_classes[k] + 1
            assert ann["score"] == pytest.approx(float(pred.instance_scores[k]))
            ys, xs = np.nonzero(decoded)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == decoded.sum()
            checked += 1
    assert checked > 10
    assert not list(tmp_path.glob(".*.part"))


def test_panoptic_json_names_the_run_pngs_and_their_segments(run_folder, tmp_path):
    assert _export(run_folder, tmp_path / "panoptic.json", "--task", "panoptic") == 0
    labels = json.loads((tmp_path / "panoptic.json").read_text())
    assert [a["file_name"] for a in labels["annotations"]] == ["photo0.png", "photo1.png", "photo2.png"]
    assert [i["file_name"] for i in labels["images"]] == [f"photo{k}_overlay.png" for k in range(3)]
    segments = 0
    for ann in labels["annotations"]:
        ids = rgb_to_id(np.asarray(Image.open(run_folder / "panoptic" / ann["file_name"])))
        assert {s["id"] for s in ann["segments_info"]} == set(np.unique(ids)) - {0}
        per_image = json.loads((run_folder / "panoptic" / ann["file_name"].replace(".png", ".json")).read_text())
        for ours, theirs in zip(ann["segments_info"], per_image["segments_info"], strict=True):
            assert ours["category_id"] == theirs["category_id"] + 1 and ours["area"] == (ids == ours["id"]).sum()
            segments += 1
    assert segments > 0
    assert {c["name"]: c["isthing"] for c in labels["categories"]} == {"cat": 1, "dog": 1, "road": 0, "sky": 0}


def test_only_images_in_run_done_are_exported(run_folder, tmp_path):
    partial = tmp_path / "run"
    shutil.copytree(run_folder, partial)
    (partial / "run.done").write_text("photo0\nphoto2\nphoto1")  # photo1's line is cut short: not done
    assert _export(partial, tmp_path / "labels.json") == 0
    images = json.loads((tmp_path / "labels.json").read_text())["images"]
    assert [i["file_name"] for i in images] == ["photo0_overlay.png", "photo2_overlay.png"]


def test_user_mistakes_are_one_line_and_write_nothing(run_folder, photos, tmp_path, capsys):
    output = tmp_path / "labels.json"
    assert _export(photos[0].parent, output) == 2
    assert "has no run.json: it is not a `vocabseg predict` output folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(photos[1], other / "unrelated.png")
    assert _export(run_folder, output, "--images", str(other)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no image named photo0.*" in err
    assert not output.exists() and not list(tmp_path.glob(".*.part"))
