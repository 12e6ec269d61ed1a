"""OVSeg's CLIP stages (adapt, prompt) and assemble under the run-folder rule of `vocabseg train`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from vocabseg.cli import main
from vocabseg.fileio import read_checkpoint
from vocabseg.locks import LOCK_FILE, RunLock
from vocabseg.testing import file_hashes, one_error_line, save_tiny_checkpoint
from vocabseg.train.ovseg.run import run_stage

from ..conftest import SRC


@pytest.fixture()
def stage_args(pair_root, tmp_path, one_thread) -> list[str]:
    """`vocabseg train` of the adapt stage with the tiny CLIP on the synthetic pairs, into tmp_path/run."""
    return ["train", "--preset", "ovseg_adapt_coco_vitl", "--output", str(tmp_path / "run"), "device=cpu",
            "clip.tiny=true", f"data.root={pair_root}", "data.num_workers=0", "solver.batch_size=8",
            "solver.batch_per_gpu=8", "solver.amp=off", "solver.log_period=0", "solver.checkpoint_period=1",
            "solver.warmup_iters=0", "solver.lr=0.002"]


def test_a_second_stage_run_is_refused_and_the_first_kept(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=2"]) == 0
    before = file_hashes(tmp_path / "run")
    assert sorted(before) == ["clip_final.pth", "config.yaml", "last.pth"]
    assert main([*stage_args, "solver.max_iter=1"]) == 2
    line = one_error_line(capsys)
    assert "holds a training run (clip_final.pth, config.yaml, last.pth)" in line
    assert "--resume" in line and "--overwrite" in line
    assert file_hashes(tmp_path / "run") == before


def test_overwrite_clears_the_old_stage_outputs(stage_args, stage_config, tmp_path):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    assert main([*stage_args, "solver.max_iter=2", "--resume"]) == 0  # leaves resumes.jsonl and clip_final.pth
    assert {"resumes.jsonl", "clip_final.pth"} <= {p.name for p in (tmp_path / "run").iterdir()}
    run_stage(stage_config("adapt", max_iter=3, checkpoint_period=1), overwrite=True, stop_at=1)  # killed at 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "last.pth"]  # nothing old
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["solver"]["max_iter"] == 3


def test_resume_with_another_learning_rate_is_refused_naming_it(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    before = file_hashes(tmp_path / "run")
    assert main([*stage_args, "solver.max_iter=1", "solver.lr=0.5", "--resume"]) == 2
    assert "solver.lr: 0.002 -> 0.5" in one_error_line(capsys)
    assert file_hashes(tmp_path / "run") == before


def test_resume_with_a_longer_run_is_accepted_and_recorded(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    at_1 = read_checkpoint(tmp_path / "run" / "last.pth")["trainable"]
    capsys.readouterr()
    assert main([*stage_args, "solver.max_iter=2", "solver.log_period=1", "--resume"]) == 0
    assert "the cosine decay is recomputed over the new max_iter" in capsys.readouterr().err  # the CLI's handler
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
    assert "is in use by vocabseg train (adapt) (pid" in one_error_line(capsys)
    assert list((tmp_path / "run").iterdir()) == []  # nothing written; the holder's lock went with it
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # let go at the end


@pytest.mark.parametrize(("extra", "message"), [
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["solver.batch_size=6"], "solver.batch_size=6 is not solver.batch_per_gpu"),
])
def test_a_refused_stage_run_leaves_no_folder(stage_args, tmp_path, capsys, extra, message):
    assert main([*stage_args, "solver.max_iter=1", *extra]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_assemble_refuses_an_existing_checkpoint_without_overwrite(stage_args, tmp_path, capsys):
    assert main([*stage_args, "solver.max_iter=1"]) == 0
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg", train_vocabulary="coco_stuff")
    target = tmp_path / "assembled.pth"
    args = ["train", "--preset", "ovseg_assemble_coco", "--output", str(target), f"assemble.segmenter={segmenter}",
            f"assemble.clip={tmp_path / 'run' / 'clip_final.pth'}"]
    target.write_bytes(b"an earlier assemble")
    assert main(args) == 2
    assert "assembled.pth exists (an earlier assemble); add --overwrite" in one_error_line(capsys)
    assert target.read_bytes() == b"an earlier assemble"
    assert main([*args, "--resume"]) == 2 and "--resume does not apply to the assemble stage" in one_error_line(capsys)
    assert main([*args, "--overwrite"]) == 0
    assert target.read_bytes() != b"an earlier assemble"


def _two_ranks_of_cli(args: list[str]) -> list[tuple[int, str]]:
    """(exit status, stderr) of each of two gloo ranks running ``vocabseg ARGS``, as torchrun starts them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        procs.append(subprocess.Popen([sys.executable, "-m", "vocabseg.cli", *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        return [(p.wait(timeout=240), p.communicate()[1]) for p in procs]
    finally:
        for proc in procs:  # a rank left waiting for a dead peer must not outlive the test
            proc.kill()


@pytest.mark.slow  # two launches of two processes (~30 s on 2 cores)
def test_the_ranks_of_a_torchrun_stage_share_one_lock(stage_args, tmp_path):
    args = [*stage_args, "solver.max_iter=2", "solver.batch_per_gpu=4"]  # 8 = 4 per rank x 2 ranks
    holder = RunLock(tmp_path / "run", "vocabseg train (adapt)")
    holder.acquire()  # another job uses the folder: rank 0 finds it taken, rank 1 hears it from rank 0
    try:
        refused = _two_ranks_of_cli(args)
    finally:
        holder.release()
    for rank, (rc, err) in enumerate(refused):
        assert rc == 2 and "is in use by vocabseg train (adapt) (pid" in err.strip().splitlines()[-1], (rank, err)
    assert list((tmp_path / "run").iterdir()) == []
    results = _two_ranks_of_cli(args)  # rank 0 takes the lock for both; rank 1 trains beside it
    assert [rc for rc, _ in results] == [0, 0], results
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["clip_final.pth", "config.yaml", "last.pth"]
    assert read_checkpoint(tmp_path / "run" / "last.pth")["world_size"] == 2


@pytest.mark.slow  # two launches of two processes (~30 s on 2 cores)
def test_a_torchrun_mining_job_resumes_its_pair_folder_each_image_once(tmp_path):
    from PIL import Image

    from vocabseg.testing import synthetic_photo
    from vocabseg.train.ovseg.mining.pairs import done_images

    images = tmp_path / "images"
    images.mkdir()
    names = [f"{k}.png" for k in range(5)]
    for k, name in enumerate(names):
        Image.fromarray(synthetic_photo(48, 64, seed=k)).save(images / name)
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"image": n, "caption": "A dog and a ball on the grass."}) + "\n"
                                for n in names))
    segmenter = save_tiny_checkpoint(tmp_path / "seg.pth", family="ovseg")
    args = ["train", "--preset", "ovseg_mine_coco", "--output", str(tmp_path / "mined"), "device=cpu",
            f"mine.images={images}", f"mine.captions={captions}", f"mine.segmenter={segmenter}",
            "mine.mask_threshold=0.0"]
    first = _two_ranks_of_cli([*args, "mine.limit=3"])  # rank 0 mines 0, 2; rank 1 mines 1
    assert [rc for rc, _ in first] == [0, 0], first
    assert (tmp_path / "mined" / "done-1.txt").read_text() == "1.png\n"
    again = _two_ranks_of_cli([*args, "--resume"])  # the rest, dealt to the ranks again
    assert [rc for rc, _ in again] == [0, 0], again
    done = [line for p in sorted((tmp_path / "mined").glob("done*.txt")) for line in p.read_text().splitlines()]
    assert sorted(done) == names and done_images(tmp_path / "mined") == set(names)  # each image once
    records = [json.loads(line) for line in (tmp_path / "mined" / "resumes.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["images_done"] == 3  # rank 0 alone records the resume
    assert not (tmp_path / "mined" / LOCK_FILE).exists()
