"""`vocabseg eval` and `vocabseg score` on tiny datasets in the official layouts."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util
from tiny_datasets import write_ade20k, write_coco

from vocabseg.cli import main
from vocabseg.testing import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=0, min_size=64, max_size=128)


@pytest.fixture()
def text_cache(tmp_path_factory, monkeypatch):
    # Shared with the other test modules of the session: ADE20K prompts are encoded once.
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path_factory.getbasetemp() / "vocabseg_text_cache"))


def test_eval_writes_results_and_resumes(checkpoint, text_cache, tmp_path, capsys):
    write_ade20k(tmp_path / "data")
    out = tmp_path / "out"
    args = ["eval", "--model", str(checkpoint), "--dataset", "ade20k_panoptic_val",
            "--data-root", str(tmp_path / "data"), "--tasks", "semantic,panoptic", "--min-size", "64",
            "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "ade20k_panoptic_val (1 images): PQ" in printed and "mIoU" in printed and "hIoU" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["panoptic", "semantic"] and "instance" not in results
    assert "PQ" in results["panoptic"] and "mIoU_unseen" in results["semantic"]
    assert (out / "results.md").read_text().startswith("# ade20k_panoptic_val: 1 images")
    first = (out / "results.json").read_text()
    assert main(args) == 0 and (out / "results.json").read_text() == first  # resumed: nothing left to run


def test_eval_missing_dataset_names_the_file_and_the_fix(tmp_path, capsys):
    # The dataset is read before the model is loaded: the bogus checkpoint is never reached.
    args = ["eval", "--model", str(tmp_path / "no.pth"), "--dataset", "ade20k_panoptic_val",
            "--data-root", str(tmp_path), "--output", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(tmp_path / "ADEChallengeData2016" / "ade20k_panoptic_val.json") in err
    assert f"vocabseg data prepare ade20k_150 --root {tmp_path}" in err


def test_eval_rejects_unknown_task(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "x", "--dataset", "ade20k_panoptic_val", "--data-root", str(tmp_path),
              "--output", str(tmp_path), "--tasks", "panoptic,depth"])  # fmt: skip
    assert exit_info.value.code == 2 and "unknown task 'depth'" in capsys.readouterr().err


def _perfect_predictions(root, pred):
    """Prediction files equal to the tiny COCO ground truth, in the standard formats."""
    coco = root / "coco"
    shutil.copytree(coco / "panoptic_val2017", pred / "panoptic")
    gt = json.loads((coco / "annotations" / "panoptic_val2017.json").read_text())
    (pred / "panoptic.json").write_text(json.dumps({"annotations": gt["annotations"]}))
    shutil.copytree(coco / "panoptic_semseg_val2017", pred / "semantic")
    instances = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    results = []
    for ann in instances["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], 6, 8))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                        "score": 1.0})
    (pred / "instances.json").write_text(json.dumps(results))


def test_score_perfect_prediction_files(tmp_path, capsys):
    write_coco(tmp_path / "data")
    pred = tmp_path / "pred"
    _perfect_predictions(tmp_path / "data", pred)
    rc = main(["score", "--dataset", "coco_panoptic_val", "--data-root", str(tmp_path / "data"),
               "--panoptic-json", str(pred / "panoptic.json"), "--semantic-dir", str(pred / "semantic"),
               "--instance-json", str(pred / "instances.json"), "--output", str(tmp_path / "out")])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["panoptic"]["PQ"] == pytest.approx(100.0) and results["panoptic"]["N"] == 3  # crowd car: not counted
    assert results["semantic"]["mIoU"] == pytest.approx(100.0)
    assert results["semantic"]["mIoU_unseen"] is None  # every COCO class was seen in training
    assert results["instance"]["AP"] == pytest.approx(100.0)
    assert "PQ 100.0" in capsys.readouterr().out


def test_score_missing_prediction_is_one_line(tmp_path, capsys):
    write_coco(tmp_path / "data")
    (tmp_path / "pred").mkdir()
    rc = main(["eval-files", "--dataset", "coco_panoptic_val", "--data-root", str(tmp_path / "data"),
               "--semantic-dir", str(tmp_path / "pred")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(tmp_path / "pred" / "000000000139.png") in err


def test_score_unpredicted_pixels_count_as_misses(tmp_path, capsys):
    write_coco(tmp_path / "data")
    pred = tmp_path / "pred"
    shutil.copytree(tmp_path / "data" / "coco" / "panoptic_semseg_val2017", pred)
    path = pred / "000000000285.png"
    labels = np.asarray(Image.open(path)).copy()
    labels[:, 4:] = 255  # half of the rug unpredicted
    Image.fromarray(labels).save(path)
    assert main(["score", "--dataset", "coco_panoptic_val", "--data-root", str(tmp_path / "data"),
                 "--semantic-dir", str(pred), "--output", str(tmp_path / "out")]) == 0  # fmt: skip
    rug = json.loads((tmp_path / "out" / "results.json").read_text())["semantic"]["per_class"]["rug"]
    assert rug["IoU"] == pytest.approx(100 * 18 / 42)  # columns 1-3 of the 42 rug pixels (column 0 is VOID)


def test_eval_folder_is_one_process_s_and_overwrite_starts_over(checkpoint, text_cache, tmp_path, capsys):
    from vocabseg.locks import RunLock

    write_ade20k(tmp_path / "data")
    out = tmp_path / "out"
    args = ["eval", "--model", str(checkpoint), "--dataset", "ade20k_panoptic_val", "--data-root",
            str(tmp_path / "data"), "--tasks", "semantic", "--min-size", "64", "--output", str(out), "--no-progress"]
    holder = RunLock(out, "vocabseg eval")
    holder.acquire()  # another evaluation is running in the folder
    try:
        assert main(args) == 2
    finally:
        holder.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by vocabseg eval (pid" in err[0]
    assert not (out / "state").exists()
    assert main(args) == 0
    (out / "state" / "rank0.pt").write_bytes(b"not a state")  # e.g. a run of another vocabseg
    assert main(args) == 2 and "cannot be read" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (out / "results.json").is_file()


def test_eval_refuses_a_prediction_folder(checkpoint, text_cache, tmp_path, capsys):
    write_ade20k(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{}")
    assert main(["eval", "--model", str(checkpoint), "--dataset", "ade20k_panoptic_val", "--data-root",
                 str(tmp_path / "data"), "--output", str(out), "--overwrite"]) == 2
    assert "holds a prediction run (run.json)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]
