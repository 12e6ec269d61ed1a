"""OVSeg's CLIP stages (adapt, prompt) and assemble under the run-folder rule of `vocabseg train`."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from vocabseg.cli import main
from vocabseg.fileio import read_checkpoint
from vocabseg.locks import LOCK_FILE, RunLock
from vocabseg.testing import save_tiny_checkpoint
from vocabseg.train.ovseg.run import run_stage


@pytest.fixture()
def stage_args(pair_root, tmp_path, one_thread) -> list[str]:
    """`vocabseg train` of the adapt stage with the tiny CLIP on the synthetic pairs, into tmp_path/run."""
    return ["train", "--preset", "ovseg_adapt_coco_vitl", "--output", str(tmp_path / "run"), "device=cpu",
            "clip.tiny=true", f"data.root={pair_root}", "data.num_workers=0", "solver.batch_size=8",
            "solver.batch_per_gpu=8", "solver.amp=off", "solver.log_period=0", "solver.checkpoint_period=1",
            "solver.warmup_iters=0", "solver.lr=0.002"]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_second_stage_run_is_refused_and_the_first_kept(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=2"]) == 0
    before = _hashes(tmp_path / "run")
    assert sorted(before) == ["clip_final.pth", "config.yaml", "last.pth"]
    assert main([*stage_args, "solver.max_iter=1"]) == 2
    line = _one_line(capsys)
    assert "holds a training run (clip_final.pth, config.yaml, last.pth)" in line
    assert "--resume" in line and "--overwrite" in line
    assert _hashes(tmp_path / "run") == before


def test_overwrite_clears_the_old_stage_outputs(stage_args, stage_config, tmp_path):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    assert main([*stage_args, "solver.max_iter=2", "--resume"]) == 0  # leaves resumes.jsonl and clip_final.pth
    assert {"resumes.jsonl", "clip_final.pth"} <= {p.name for p in (tmp_path / "run").iterdir()}
    run_stage(stage_config("adapt", max_iter=3, checkpoint_period=1), overwrite=True, stop_at=1)  # killed at 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "last.pth"]  # nothing old
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["solver"]["max_iter"] == 3


def test_resume_with_another_learning_rate_is_refused_naming_it(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    before = _hashes(tmp_path / "run")
    assert main([*stage_args, "solver.max_iter=1", "solver.lr=0.5", "--resume"]) == 2
    assert "solver.lr: 0.002 -> 0.5" in _one_line(capsys)
    assert _hashes(tmp_path / "run") == before


def test_resume_with_a_longer_run_is_accepted_and_recorded(stage_args, tmp_path, caplog):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    at_1 = read_checkpoint(tmp_path / "run" / "last.pth")["trainable"]
    with caplog.at_level(logging.INFO, logger="vocabseg"):
        assert main([*stage_args, "solver.max_iter=2", "solver.log_period=1", "--resume"]) == 0
    assert "the cosine decay is recomputed over the new max_iter" in caplog.text
    at_2 = read_checkpoint(tmp_path / "run" / "last.pth")["trainable"]
    # step 2 of 2 runs at half the rate (the old 1-step schedule had reached 0, which would train nothing)
    assert any(not torch.equal(at_1[name], at_2[name]) for name in at_1)
    assert (tmp_path / "run" / "config.yaml").read_text() == config  # the run as started
    records = [json.loads(line) for line in (tmp_path / "run" / "resumes.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["iteration"] == 1
    assert records[0]["changes"] == [{"key": "solver.log_period", "old": 0, "new": 1},
                                     {"key": "solver.max_iter", "old": 1, "new": 2}]
    assert main([*stage_args, "solver.max_iter=1", "--resume"]) == 2  # shorter: another run


def test_a_folder_held_by_another_process_is_refused_naming_it(stage_args, tmp_path, capsys):
    holder = RunLock(tmp_path / "run", "vocabseg train (adapt)")
    holder.acquire()  # another stage run is using the folder
    try:
        assert main([*stage_args, "solver.max_iter=1"]) == 2
    finally:
        holder.release()
    assert "is in use by vocabseg train (adapt) (pid" in _one_line(capsys)
    assert list((tmp_path / "run").iterdir()) == []  # nothing written; the holder's lock went with it
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # let go at the end


@pytest.mark.parametrize(("extra", "message"), [
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["solver.batch_size=6"], "solver.batch_size=6 is not solver.batch_per_gpu"),
])
def test_a_refused_stage_run_leaves_no_folder(stage_args, tmp_path, capsys, extra, message):
    assert main([*stage_args, "solver.max_iter=1", *extra]) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_assemble_refuses_an_existing_checkpoint_without_overwrite(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg", train_vocabulary="coco_stuff")
    target = tmp_path / "assembled.pth"
    args = ["train", "--preset", "ovseg_assemble_coco", "--output", str(target), f"assemble.segmenter={segmenter}",
            f"assemble.clip={tmp_path / 'run' / 'clip_final.pth'}"]
    target.write_bytes(b"an earlier assemble")
    assert main(args) == 2
    assert "assembled.pth exists (an earlier assemble); add --overwrite" in _one_line(capsys)
    assert target.read_bytes() == b"an earlier assemble"
    assert main([*args, "--resume"]) == 2 and "--resume does not apply to the assemble stage" in _one_line(capsys)
    assert main([*args, "--overwrite"]) == 0
    assert target.read_bytes() != b"an earlier assemble"
