"""`torchrun ... -m vocabseg.cli predict`: one folder, the same files as one process, resumable after a killed rank.

Real photos (scikit-image's) through FC-CLIP at its real RN50 size with synthetic official-format
weights, at a small test size so the CPU run takes seconds. Every process runs one thread
(OMP_NUM_THREADS=1), so the results are byte-identical to one process's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow  # a real-size RN50 in three processes

SRC = Path(__file__).resolve().parents[1] / "src"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


@pytest.fixture(scope="module")
def job(synth_official_state, tmp_path_factory):
    """``run(output, ranks) -> Popen`` of `vocabseg predict` over the 6 photos (ranks 0: one plain process)."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("torchrun")
    torch.save({"model": synth_official_state("manifest_rn50.json")}, root / "rn50.pth")
    (root / "photos").mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(skimage_data, name)()).save(root / "photos" / f"{name}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VOCABSEG_CACHE": str(root / "cache"),
           "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = ["-m", "vocabseg.cli", "predict", str(root / "photos"), "--model", "fcclip_rn50_coco", "--weights",
            str(root / "rn50.pth"), "--vocab", "person; cat; coffee cup; sky [stuff]", "--min-size", "128",
            "--max-size", "256"]

    def run(output: Path, ranks: int) -> subprocess.Popen:
        launcher = [sys.executable] if ranks == 0 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
        return subprocess.Popen([*launcher, *args, "--output", str(output)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    return run


def _finish(proc: subprocess.Popen) -> str:
    output = proc.communicate(timeout=500)[0]
    assert proc.returncode == 0, output[-3000:]
    return output


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rank_pid(parent: int, rank: int) -> int | None:
    """The process of ``rank`` among torchrun's children (RANK in its environment)."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.fixture(scope="module")
def single(job, tmp_path_factory) -> dict[str, bytes]:
    output = tmp_path_factory.mktemp("single") / "out"
    _finish(job(output, 0))
    return _files(output)


def test_two_ranks_write_the_files_of_one_process(job, single, tmp_path):
    start = time.perf_counter()
    _finish(job(tmp_path / "out", 2))
    print(f"torchrun 2 ranks, 6 photos: {time.perf_counter() - start:.1f} s")
    assert len(single) == 20 and single["run.done"].decode().count("\n") == 6  # 6 x (overlay, panoptic png + json)
    assert _files(tmp_path / "out") == single  # names and bytes; no rank files or lock left


def test_a_killed_rank_is_redone_by_the_rerun(job, single, tmp_path):
    out = tmp_path / "out"
    proc = job(out, 2)
    deadline = time.monotonic() + 300
    while not (out / "run.done.rank1").is_file() or not (out / "run.done.rank1").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()  # type: ignore[union-attr]
        time.sleep(0.01)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    done_before = (out / "run.done.rank1").read_text().splitlines()
    assert 1 <= len(done_before) < 3  # rank 1 was stopped with part of its share done
    output = _finish(job(out, 2))
    assert "taking over the stale lock" in output or "skipping" in output
    lines = (out / "run.done").read_text().splitlines()
    assert sorted(lines) == sorted(PHOTOS) and len(lines) == 6  # each image once
    assert _files(out).keys() == single.keys()
    assert {k: v for k, v in _files(out).items() if k != "run.done"} == {
        k: v for k, v in single.items() if k != "run.done"}
