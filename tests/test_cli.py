"""`vocabseg` command line on a tiny random-weight checkpoint."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from vocabseg.cli import main
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo


@pytest.fixture()
def tiny_checkpoint(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    return save_tiny_checkpoint(tmp_path / "tiny.pth", seed=0, min_size=64, max_size=128)


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "images" / "street.png"
    path.parent.mkdir()
    Image.fromarray(synthetic_photo(60, 80)).save(path)
    return path


def test_predict_all_tasks_writes_consistent_files(tiny_checkpoint, photo, tmp_path):
    out = tmp_path / "out"
    rc = main(["predict", str(photo.parent), "--model", str(tiny_checkpoint), "--vocab", "cat; dog; sky [stuff]",
               "--task", "all", "--output", str(out)])
    assert rc == 0
    pan = np.asarray(Image.open(out / "panoptic" / "street.png"))
    assert pan.shape == (60, 80, 3)
    pan = pan.astype(np.int64)
    ids = pan[..., 0] + 256 * pan[..., 1] + 65536 * pan[..., 2]
    info = json.loads((out / "panoptic" / "street.json").read_text())
    assert {s["id"] for s in info["segments_info"]} == set(np.unique(ids)) - {0}
    assert [c["name"] for c in info["categories"]] == ["cat", "dog", "sky"]
    semantic = np.asarray(Image.open(out / "semantic" / "street.png"))
    assert semantic.shape == (60, 80) and semantic.max() < 3
    instances = json.loads((out / "instance" / "street.json").read_text())
    assert instances and all(inst["category_id"] in (0, 1) for inst in instances)  # things only
    assert mask_utils.decode(instances[0]["segmentation"]).shape == (60, 80)
    assert (out / "street_overlay.png").exists()
    assert not list(out.rglob("*.part"))


def test_predict_skips_finished_images(tiny_checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["predict", str(photo), "--model", str(tiny_checkpoint), "--vocab", "cat", "--output", str(out)]
    assert main(args) == 0
    assert json.loads((out / "run.json").read_text())["identity"]["vocabulary"] == ["cat"]
    assert (out / "run.done").read_text() == "street\n"
    (out / "street_overlay.png").write_bytes(b"kept")  # a skipped image is not rewritten
    capsys.readouterr()
    assert main(args) == 0
    assert "skipping 1 image(s)" in capsys.readouterr().err
    assert (out / "street_overlay.png").read_bytes() == b"kept"


def test_an_image_not_recorded_done_is_redone(tiny_checkpoint, photo, tmp_path):
    """Interrupted after some of an image's files (its overlay even): it is not in run.done, so it is redone."""
    out = tmp_path / "o"
    args = ["predict", str(photo), "--model", str(tiny_checkpoint), "--vocab", "cat", "--output", str(out)]
    assert main(args) == 0
    (out / "run.done").write_text("stre")  # the append was cut short
    (out / "street_overlay.png").write_bytes(b"half")
    assert main(args) == 0
    assert (out / "street_overlay.png").read_bytes() != b"half"
    assert (out / "run.done").read_text() == "street\n"


@pytest.mark.parametrize("change", [["--vocab", "dog"], ["--task", "semantic"], ["--min-size", "32"]])
def test_rerun_with_other_settings_refuses(change, tiny_checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["predict", str(photo), "--model", str(tiny_checkpoint), "--output", str(out)]
    assert main([*base, "--vocab", "cat"]) == 0
    before = (out / "street_overlay.png").read_bytes()
    capsys.readouterr()
    assert main([*base, "--vocab", "cat", *change]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another run" in err[0] and "--overwrite" in err[0] and "--output" in err[0]
    assert {"--vocab": "vocabulary", "--task": "tasks", "--min-size": "model.settings"}[change[0]] in err[0]
    assert (out / "street_overlay.png").read_bytes() == before


def test_overwrite_redoes_everything_with_the_new_settings(tiny_checkpoint, photo, tmp_path):
    out = tmp_path / "o"
    base = ["predict", str(photo), "--model", str(tiny_checkpoint), "--output", str(out)]
    assert main([*base, "--vocab", "cat"]) == 0
    (out / "street_overlay.png").write_bytes(b"old")
    assert main([*base, "--vocab", "dog; sky [stuff]", "--overwrite"]) == 0
    assert (out / "street_overlay.png").read_bytes() != b"old"
    info = json.loads((out / "panoptic" / "street.json").read_text())
    assert [c["name"] for c in info["categories"]] == ["dog", "sky"]
    assert json.loads((out / "run.json").read_text())["identity"]["vocabulary"] == ["dog", "sky [stuff]"]
    assert main([*base, "--vocab", "dog; sky [stuff]"]) == 0  # the rewritten record is the one kept


def test_results_without_a_run_record_are_not_taken_as_done(tiny_checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "street_overlay.png").write_bytes(b"from an older vocabseg")
    assert main(["predict", str(photo), "--model", str(tiny_checkpoint), "--vocab", "cat", "--output", str(out)]) == 2
    assert "no run.json" in capsys.readouterr().err


def _never_load(monkeypatch):
    def refuse(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("vocabseg.cli.predict.load_predictor", refuse)


@pytest.fixture()
def truncated_jpeg(photo):
    data = io.BytesIO()
    Image.fromarray(synthetic_photo(60, 80, seed=3)).save(data, format="JPEG")
    path = photo.parent / "cut.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with Image.open(path) as pil:  # headers (and verify) pass: only decoding the pixels finds the cut
        pil.verify()
    Image.fromarray(synthetic_photo(50, 70, seed=4)).save(photo.parent / "zebra.png")
    return path


def test_a_truncated_jpeg_fails_before_the_model_loads(truncated_jpeg, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    _never_load(monkeypatch)
    out = tmp_path / "o"
    rc = main(["predict", str(truncated_jpeg.parent), "--model", str(tiny_checkpoint), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(truncated_jpeg) in err[0]
    assert not out.exists()


def test_skip_errors_records_the_bad_image_and_goes_on(truncated_jpeg, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["predict", str(truncated_jpeg.parent), "--model", str(tiny_checkpoint), "--vocab", "cat",
                 "--batch-size", "2", "--skip-errors", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*_overlay.png")) == ["street_overlay.png", "zebra_overlay.png"]
    errors = json.loads((out / "errors.json").read_text())
    assert [e["path"] for e in errors] == [str(truncated_jpeg)] and "\n" not in errors[0]["reason"]
    assert "skipped 1 image(s)" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["not_writable", "under_a_file", "disk_full"])
def test_an_unusable_output_folder_fails_before_the_model_loads(case, photo, tmp_path, capsys, monkeypatch):
    _never_load(monkeypatch)
    out = tmp_path / "o"
    if case == "not_writable":  # chmod is ignored when tests run as root: ask os.access instead
        monkeypatch.setattr("vocabseg.runs.os.access", lambda path, mode: False)
    elif case == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "o"
    else:
        monkeypatch.setattr("vocabseg.runs.shutil.disk_usage", lambda path: SimpleNamespace(free=5))
    assert main(["predict", str(photo), "--model", "unused.pth", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert {"not_writable": f"{tmp_path} is not writable", "under_a_file": f"{tmp_path / 'file'} is a file",
            "disk_full": "MiB free"}[case] in err[0]  # fmt: skip


@pytest.mark.parametrize("case", ["bad_image", "empty_vocab", "truncated_checkpoint", "cuda", "missing_input",
                                  "same_stem", "output_is_a_file"])
def test_bad_input_is_one_line_error_and_writes_nothing(case, tiny_checkpoint, photo, tmp_path, capsys):
    image, checkpoint, vocab, extra = str(photo), str(tiny_checkpoint), "cat", []
    if case == "bad_image":
        image = str(tmp_path / "bad.jpg")
        (tmp_path / "bad.jpg").write_bytes(b"not an image")
    elif case == "empty_vocab":
        vocab = " ; "
    elif case == "truncated_checkpoint":
        checkpoint = str(tmp_path / "cut.pth")
        (tmp_path / "cut.pth").write_bytes(tiny_checkpoint.read_bytes()[:5000])
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        extra = ["--device", "cuda"]
    elif case == "same_stem":
        other = tmp_path / "other" / "street.jpg"
        other.parent.mkdir()
        Image.fromarray(synthetic_photo(30, 40)).save(other)
        image = [image, str(other)]
    elif case == "missing_input":
        image = str(tmp_path / "nowhere.jpg")
    out = tmp_path / "out"
    if case == "output_is_a_file":
        out = tmp_path / "taken.txt"
        out.write_text("not a folder")
    inputs = image if isinstance(image, list) else [image]
    rc = main(["predict", *inputs, "--model", checkpoint, "--vocab", vocab, "--output", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and err[0].startswith("vocabseg: error: ")
    if case == "output_is_a_file":
        assert out.read_text() == "not a folder"
    else:
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_models_lists_every_official_variant_with_its_family(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    for name in ("fcclip_convnext_large_coco", "fcclip_rn50_coco", "fcclip_rn101_coco", "fcclip_rn50x4_coco",
                 "fcclip_rn50x16_coco", "fcclip_rn50x64_coco"):
        row = next(line for line in listing if line.startswith(name + " "))
        assert "FC-CLIP" in row and "panoptic,semantic,instance" in row
    cascade = next(line for line in listing if line.startswith("cascade_clip_vitb16_voc20_inductive "))
    assert "Cascade-CLIP" in cascade and "voc20 unseen mIoU 83.0, hIoU 87.5" in cascade
    assert "A-150 mIoU 34.1" in next(line for line in listing if line.startswith("fcclip_convnext_large_coco "))


def test_quiet_hides_the_progress_notes(tiny_checkpoint, photo, tmp_path, capsys):
    args = ["predict", str(photo), "--model", str(tiny_checkpoint), "--vocab", "cat", "--output", str(tmp_path / "o")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["--quiet", *args]) == 0
    assert "skipping" not in capsys.readouterr().err  # the rerun's progress note


def test_predict_in_batches_covers_every_image(tiny_checkpoint, photo, tmp_path):
    for i in range(2):
        Image.fromarray(synthetic_photo(50 + 10 * i, 70, seed=i)).save(photo.parent / f"extra{i}.png")
    out = tmp_path / "batched"
    assert main(["predict", str(photo.parent), "--model", str(tiny_checkpoint), "--vocab", "cat; sky [stuff]",
                 "--task", "semantic", "--batch-size", "2", "--output", str(out)]) == 0
    sizes = {p.stem: Image.open(p).size for p in (out / "semantic").glob("*.png")}
    assert sizes == {"street": (80, 60), "extra0": (70, 50), "extra1": (70, 60)}


def test_train_command_runs_and_resumes(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    run = tmp_path / "run"
    base = ["train", "--preset", "fcclip_tiny_cpu", "--output", str(run), "data.num_images=2", "solver.log_period=0"]
    assert main([*base, "solver.max_iter=2", "solver.checkpoint_period=1"]) == 0
    assert (run / "last.pth").exists() and (run / "config.yaml").exists()
    assert main([*base, "solver.max_iter=3", "--resume"]) == 0
    assert (run / "model_final.pth").exists()


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--min-size", "-5"], ["--max-size", "0"]])
def test_non_positive_numbers_are_refused_by_the_parser(flag, tiny_checkpoint, photo, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(photo), "--model", str(tiny_checkpoint), "--output", str(tmp_path / "o"), *flag])
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_a_sliver_image_is_segmented(tiny_checkpoint, tmp_path):
    path = tmp_path / "sliver.png"
    Image.fromarray(np.full((2, 2000, 3), 128, np.uint8)).save(path)
    out = tmp_path / "o"
    assert main(["predict", str(path), "--model", str(tiny_checkpoint), "--vocab", "cat", "--task", "semantic",
                 "--output", str(out)]) == 0
    assert np.asarray(Image.open(out / "semantic" / "sliver.png")).shape == (2, 2000)


def test_eval_uses_the_official_test_size_of_cityscapes_and_mapillary():
    """The split owns its official test size (the same as ``--size-preset``); other splits keep the model's."""
    from vocabseg.cli.common import SIZE_PRESETS
    from vocabseg.data.registry import get_spec

    assert get_spec("cityscapes_panoptic_val").test_size == SIZE_PRESETS["cityscapes"] == (1024, 2560)
    assert get_spec("mapillary_vistas_panoptic_val").test_size == SIZE_PRESETS["mapillary_vistas"]
    assert get_spec("ade20k_panoptic_val").test_size is None


def test_wrong_clip_weights_and_unknown_device_say_what_to_fix(tiny_checkpoint, photo, tmp_path, capsys):
    base = ["predict", str(photo), "--model", str(tiny_checkpoint), "--vocab", "cat", "--output", str(tmp_path / "o")]
    assert main([*base, "--clip-weights", str(tiny_checkpoint)]) == 2
    assert "not an open_clip state dict of tiny_convnext" in capsys.readouterr().err
    assert main([*base, "--device", "banana"]) == 2
    assert "unknown device 'banana'; use cpu, cuda or cuda:N" in capsys.readouterr().err


def test_predict_recursive_keeps_subfolders_apart(tiny_checkpoint, photo, tmp_path, capsys):
    for sub in ("day1", "day2"):
        (photo.parent / sub).mkdir()
        Image.fromarray(synthetic_photo(40, 50, seed=len(sub))).save(photo.parent / sub / "street.png")
    out = tmp_path / "o"
    args = ["predict", str(photo.parent), "--model", str(tiny_checkpoint), "--vocab", "cat", "--task", "semantic",
            "--output", str(out)]
    assert main(args) == 0
    assert "subfolders are skipped (--recursive includes them)" in capsys.readouterr().err
    assert main([*args, "--recursive"]) == 0  # the top-level image is done already; the two others are added
    assert sorted((out / "run.done").read_text().splitlines()) == ["day1/street", "day2/street", "street"]
    for name in ("street", "day1/street", "day2/street"):
        assert (out / f"{name}_overlay.png").is_file() and (out / "semantic" / f"{name}.png").is_file()
    assert Image.open(out / "semantic" / "day1" / "street.png").size == (50, 40)
