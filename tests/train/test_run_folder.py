"""`vocabseg train` and its run folder: no silent overwrite, resumes that tell the truth, one process per folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from vocabseg.cli import main
from vocabseg.locks import LOCK_FILE
from vocabseg.testing import file_hashes

from .conftest import SRC


@pytest.fixture()
def train_args(tmp_path, monkeypatch, one_thread) -> list[str]:
    """`vocabseg train` of the tiny Cascade-CLIP (seconds) into tmp_path/run, a checkpoint every iteration."""
    monkeypatch.setenv("VOCABSEG_CACHE", str(tmp_path / "text"))
    return ["train", "--preset", "cascade_clip_tiny_cpu", "--output", str(tmp_path / "run"), "data.num_images=2",
            "solver.log_period=0", "solver.checkpoint_period=1", "solver.warmup_iters=0"]


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-m", "vocabseg.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_run_into_the_folder_is_refused_and_the_first_kept(train_args, tmp_path, capsys):
    assert main([*train_args, "solver.max_iter=2"]) == 0
    before = file_hashes(tmp_path / "run")
    assert "model_0000001.pth" in before and "model_final.pth" in before
    assert main([*train_args, "solver.max_iter=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a training run (config.yaml, last.pth, model_0000001.pth, ...)" in err[0]
    assert "--resume" in err[0] and "--overwrite" in err[0]
    assert file_hashes(tmp_path / "run") == before


def test_overwrite_replaces_the_old_run_without_mixing_its_checkpoints(train_args, tmp_path):
    assert main([*train_args, "solver.max_iter=2"]) == 0
    assert main([*train_args, "solver.max_iter=1", "--overwrite"]) == 0
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["config.yaml", "last.pth", "model_0000001.pth", "model_final.pth"]  # no model_0000002.pth
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["solver"]["max_iter"] == 1


def test_resume_with_another_learning_rate_is_refused_naming_it(train_args, tmp_path, capsys):
    assert main([*train_args, "solver.max_iter=1"]) == 0
    before = file_hashes(tmp_path / "run")
    assert main([*train_args, "solver.max_iter=1", "solver.lr=0.5", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "solver.lr: 0.001 -> 0.5" in err[0]
    assert file_hashes(tmp_path / "run") == before


def test_resume_with_a_longer_run_is_accepted_and_recorded(train_args, tmp_path, capsys):
    assert main([*train_args, "solver.max_iter=1"]) == 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    capsys.readouterr()
    assert main([*train_args, "solver.max_iter=2", "solver.checkpoint_period=2", "--resume"]) == 0
    assert "a poly schedule is recomputed over the new max_iter" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.yaml").read_text() == config  # the run as started
    records = [json.loads(line) for line in (tmp_path / "run" / "resumes.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["iteration"] == 1
    assert records[0]["changes"] == [{"key": "solver.checkpoint_period", "old": 1, "new": 2},
                                     {"key": "solver.max_iter", "old": 1, "new": 2}]
    assert main([*train_args, "solver.max_iter=1", "--resume"]) == 2  # shorter: refused


@pytest.mark.slow  # two training processes
def test_two_trainings_on_one_folder_one_works_the_other_names_it(train_args, tmp_path):
    args = [*train_args[:-3], "solver.max_iter=40", "solver.checkpoint_period=20"]
    procs = [_cli(*args), _cli(*args)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    winner = procs[[rc for rc, _ in results].index(0)]
    refused = next(err for rc, err in results if rc == 2).strip().splitlines()
    assert f"in use by vocabseg train (pid {winner.pid} on " in refused[-1]
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pth")) == [
        "last.pth", "model_0000020.pth", "model_0000040.pth", "model_final.pth"]


@pytest.mark.slow  # a training process killed mid-run
def test_a_killed_training_is_resumed_taking_over_its_lock(train_args, tmp_path):
    args = [*train_args[:-3], "solver.max_iter=60", "solver.checkpoint_period=2"]
    proc = _cli(*args)
    deadline = time.monotonic() + 200
    while not (tmp_path / "run" / "last.pth").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_FILE).is_file()
    shorter = _cli(*args[:-2], "solver.max_iter=4", "solver.checkpoint_period=2", "--resume")
    assert shorter.wait(timeout=200) == 2  # a shorter run than the killed one's is another run
    err = shorter.stderr.read().strip().splitlines()  # type: ignore[union-attr]
    assert f"taking over the stale lock of vocabseg train (pid {proc.pid}" in err[0]
    assert "solver.max_iter: 60 -> 4" in err[-1]
    again = _cli(*args, "--resume")
    again.wait(timeout=300)
    err = again.stderr.read()  # type: ignore[union-attr]
    assert again.returncode == 0, err
    assert "taking over" not in err  # the refused process let go of the lock it took
    assert "resumed from" in err and "at iteration 0" not in err
    assert (tmp_path / "run" / "model_final.pth").is_file()
    assert not (tmp_path / "run" / LOCK_FILE).exists()
