"""The run-folder rule for `vocabseg predict`: checks before writing, one process per folder, no mixed runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vocabseg.cli import main
from vocabseg.locks import LOCK_FILE
from vocabseg.testing import save_tiny_checkpoint, synthetic_photo

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def cache(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))


@pytest.fixture()
def fcclip(tmp_path, cache) -> Path:
    return save_tiny_checkpoint(tmp_path / "fcclip.pth", seed=0, min_size=64, max_size=128)


@pytest.fixture()
def cascade(tmp_path, cache) -> Path:
    return save_tiny_checkpoint(tmp_path / "cascade.pth", seed=0, family="cascade_clip")


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir()
    for index in range(count):
        Image.fromarray(synthetic_photo(60, 80, seed=index)).save(folder / f"p{index}.png")
    return folder


@pytest.fixture()
def photos(tmp_path) -> Path:
    return _photos(tmp_path / "images", 6)


@pytest.fixture()
def many_photos(tmp_path) -> Path:
    """Enough images (a second or two of the tiny model) that a run is still going when a second one starts."""
    return _photos(tmp_path / "many", 40)


def _cli(*args: str) -> subprocess.Popen:
    """``vocabseg ARGS`` in its own process (one thread, this worktree's code)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "vocabseg.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _refuse_to_load(args):
    raise AssertionError("the model must not load")


def test_a_task_the_family_lacks_is_refused_before_the_model_loads(cascade, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "new"
    base = ["predict", str(photos / "p0.png"), "--model", str(cascade), "--vocab", "cat; sky [stuff]", "--output",
            str(out)]
    with monkeypatch.context() as patch:
        patch.setattr("vocabseg.cli.predict.load_predictor", _refuse_to_load)
        assert main([*base, "--task", "panoptic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Cascade-CLIP models give semantic output, not panoptic" in err[0]
    assert not out.exists()
    assert main([*base, "--task", "semantic"]) == 0  # the corrected rerun is not refused by a half-made folder
    assert (out / "run.done").read_text() == "p0\n" and (out / "semantic" / "p0.png").is_file()


def test_a_failure_after_the_lock_leaves_no_new_folder_behind(fcclip, photos, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["predict", str(photos), "--model", str(fcclip), "--clip-weights", str(tmp_path / "missing.pt"),
                 "--output", str(out)]) == 2
    assert "missing.pt" in capsys.readouterr().err and not out.exists()


def test_overwrite_deletes_the_old_runs_results(fcclip, photos, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(photos / "p0.png"), str(photos / "p1.png"), "--model", str(fcclip), "--vocab", "cat",
                 "--output", str(out)]) == 0
    assert main(["predict", str(photos / "p0.png"), "--model", str(fcclip), "--vocab", "dog", "--output", str(out),
                 "--overwrite"]) == 0
    assert (out / "run.done").read_text() == "p0\n"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "p0_overlay.png", "panoptic/p0.json", "panoptic/p0.png", "run.done", "run.json"]
    assert not (out / "p1_overlay.png").exists() and not (out / "panoptic" / "p1.json").exists()


def test_a_folder_of_another_command_is_refused_and_kept(fcclip, photos, tmp_path, capsys):
    out = tmp_path / "train_run"
    out.mkdir()
    (out / "config.yaml").write_text("solver: {}\n")
    (out / "model_0000020.pth").write_bytes(b"weights")
    for extra in ([], ["--overwrite"]):
        assert main(["predict", str(photos), "--model", str(fcclip), "--output", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds a training run (config.yaml, model_0000020.pth)" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model_0000020.pth"]


@pytest.mark.slow  # two processes that load vocabseg
def test_two_predicts_on_one_folder_one_works_the_other_names_it(fcclip, many_photos, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(many_photos), "--model", str(fcclip), "--vocab", "cat; sky [stuff]", "--output", str(out)]
    procs = [_cli(*args), _cli(*args)]
    results = [(p.wait(timeout=240), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    (_, _, refused), = [r for r in results if r[0] == 2]
    winner = procs[[r[0] for r in results].index(0)]
    assert f"in use by vocabseg predict (pid {winner.pid} on " in refused and len(refused.strip().splitlines()) == 1
    assert sorted((out / "run.done").read_text().splitlines()) == sorted(f"p{i}" for i in range(40))  # each image once
    assert not (out / LOCK_FILE).exists()


@pytest.mark.slow  # a process killed mid-run
def test_a_killed_predict_leaves_a_stale_lock_that_the_rerun_takes_over(fcclip, many_photos, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(many_photos), "--model", str(fcclip), "--vocab", "cat; sky [stuff]", "--output", str(out)]
    proc = _cli(*args)
    deadline = time.monotonic() + 120
    while not (out / "run.done").is_file() or not (out / "run.done").read_text():  # one image done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / LOCK_FILE).is_file()
    assert main(args) == 0
    said = capsys.readouterr().err  # the CLI's own handler: vocabseg's records do not reach the root logger
    assert f"taking over the stale lock of vocabseg predict (pid {proc.pid}" in said
    assert "skipping" in said  # the run resumed: what the killed process finished is kept
    assert sorted((out / "run.done").read_text().splitlines()) == sorted(f"p{i}" for i in range(40))
    assert not (out / LOCK_FILE).exists()


def test_an_unusable_device_is_refused_before_the_folder_is_made(fcclip, photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vocabseg.cli.predict.load_predictor", _refuse_to_load)
    out = tmp_path / "new"
    assert main(["predict", str(photos), "--model", str(fcclip), "--device", "tpu:0", "--output", str(out)]) == 2
    assert "unknown device 'tpu:0'" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow  # a real-size (ViT-B/16) official Cascade-CLIP checkpoint
def test_an_official_cascade_checkpoint_refuses_panoptic_before_loading(reference_dir, synth_official_state,
                                                                       tmp_path, photos, capsys, monkeypatch):
    import torch

    state = synth_official_state("cascade_clip/manifest_voc_inductive.json")
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "official.pth")  # as mmcv saves it
    monkeypatch.setattr("vocabseg.cli.predict.load_predictor", _refuse_to_load)
    for model in (["--model", str(tmp_path / "official.pth")],
                  ["--model", "cascade_clip_vitb16_voc20_inductive", "--weights", str(tmp_path / "official.pth")]):
        out = tmp_path / "new"
        assert main(["predict", str(photos), *model, "--task", "panoptic", "--output", str(out)]) == 2
        assert "Cascade-CLIP models give semantic output, not panoptic" in capsys.readouterr().err
        assert not out.exists()
