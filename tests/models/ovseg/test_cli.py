"""`vocabseg predict | eval` with OVSeg checkpoints (tiny random weights), as with FC-CLIP."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import write_ade20k

from vocabseg.cli import main
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ovseg_tiny.pth"
    return save_tiny_checkpoint(path, family="ovseg", kind="swin", min_size=64, max_size=96,
                                train_vocabulary="coco_stuff")


@pytest.fixture(autouse=True)
def text_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path_factory.getbasetemp() / "ovseg_text_cache"))


def test_predict_gives_the_semantic_map_by_default(checkpoint, tmp_path):
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    Image.fromarray(synthetic_photo(50, 70)).save(image)
    out = tmp_path / "out"
    assert main(["predict", str(image), "--model", str(checkpoint), "--vocab", "cat; dog; road, street",
                 "--output", str(out)]) == 0
    semantic = np.asarray(Image.open(out / "semantic" / "photo.png"))
    assert semantic.shape == (50, 70) and semantic.max() < 3
    assert not (out / "panoptic").exists()  # OVSeg's own output is semantic


def test_eval_writes_results(checkpoint, tmp_path, capsys):
    write_ade20k(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(checkpoint), "--dataset", "ade20k_sem_seg_val", "--data-root",
                 str(tmp_path / "data"), "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["semantic"] and 0.0 <= results["semantic"]["mIoU"] <= 100.0
    assert "mIoU" in capsys.readouterr().out


def test_eval_uses_the_official_class_strings_and_ensemble_weight(checkpoint, tmp_path):
    from vocabseg.data import get_dataset
    from vocabseg.eval.run import evaluate
    from vocabseg.predictor import Predictor

    write_ade20k(tmp_path / "data")
    predictor = Predictor.from_pretrained(str(checkpoint))
    weights = []
    run = predictor.run
    predictor.run = lambda images: (weights.append(predictor.settings.family.ensemble_weight), run(images))[1]
    evaluate(predictor, get_dataset("ade20k_sem_seg_val", tmp_path / "data"), output_dir=tmp_path / "out",
             progress=False)
    assert predictor.vocabulary.name == "ovseg_ade20k_150"
    assert predictor.vocabulary.classes[6].names == ("road", "route")  # prompted whole: "road, route"
    assert weights == [0.7] and predictor.settings.family.ensemble_weight == 0.7  # ADE20K's official weight


def test_eval_on_voc_uses_its_own_weight_for_the_run_only(checkpoint, tmp_path):
    from vocabseg.eval.run import _benchmark_setup
    from vocabseg.predictor import Predictor

    predictor = Predictor.from_pretrained(str(checkpoint))

    class VOC:  # only what the benchmark setup reads
        vocabulary, test_size = "pascal_voc_20", None

    vocabulary, overrides = _benchmark_setup(predictor, VOC(), None)
    assert vocabulary.name == "ovseg_pascal_voc_20" and overrides == {"ensemble_weight": 0.45}


def test_a_fcclip_checkpoint_given_as_ovseg_weights_is_one_line(tmp_path, capsys):
    fcclip = save_tiny_checkpoint(tmp_path / "fcclip.pth")
    Image.fromarray(synthetic_photo(20, 30)).save(tmp_path / "photo.png")
    code = main(["predict", str(tmp_path / "photo.png"), "--model", "ovseg_r101c_vitb16_coco", "--weights", str(fcclip),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "FC-CLIP" in err and "ovseg_r101c_vitb16_coco" in err


def test_settings_are_set_from_the_command_line(checkpoint, tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(40, 60)).save(image)
    args = ["predict", str(image), "--model", str(checkpoint), "--vocab", "traffic cone",
            "--output", str(tmp_path / "o"), "--set", "demo_mode=true", "--set", "ensemble_weight=0",
            "--set", "mask_threshold=0.35"]
    assert main(args) == 0
    semantic = np.asarray(Image.open(tmp_path / "o" / "semantic" / "photo.png"))
    assert set(np.unique(semantic)) <= {0, 255}  # 255: pixels no region claims (demo mode)
    capsys.readouterr()
    assert main(args[:-7] + [str(tmp_path / "o2"), "--set", "ensemble_wieght=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ensemble_wieght" in err[0] and "ensemble_weight" in err[0]
