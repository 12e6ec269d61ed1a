"""The run-folder lock: one holder, named to the next; a dead holder's lock taken over with a notice."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vocabseg.locks import LOCK_FILE, FolderLocked, RunLock

SRC = Path(__file__).resolve().parents[1] / "src"
# holds the lock of argv[1] until killed; prints "held" once it has it
HOLD = ("import sys, time; from vocabseg.locks import RunLock; lock = RunLock(sys.argv[1], 'vocabseg test'); "
        "lock.acquire(); print('held', flush=True); time.sleep(60)")


def _holder(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(FolderLocked, match=rf"in use by vocabseg test \(pid {proc.pid} on .*since"):
            RunLock(tmp_path / "run", "vocabseg predict").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_notice(tmp_path, caplog):
    proc = _holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_FILE).is_file()  # left behind by kill -9
    lock = RunLock(tmp_path / "run", "vocabseg predict")
    with caplog.at_level(logging.WARNING, logger="vocabseg"):
        lock.acquire()
    assert f"stale lock of vocabseg test (pid {proc.pid}" in caplog.text
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_lock_of_another_host_is_refused_with_how_to_clear_it(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2026-01-01 00:00:00",
                                                  "command": "vocabseg train"}))
    with pytest.raises(FolderLocked, match=f"pid 1 on elsewhere.*another host.*delete {tmp_path / LOCK_FILE}"):
        RunLock(tmp_path, "vocabseg train").acquire()


def test_released_lock_can_be_taken_again_at_once(tmp_path):
    first = RunLock(tmp_path, "a")
    first.acquire()
    with pytest.raises(FolderLocked):
        RunLock(tmp_path, "b").acquire()  # one process, two holders: flock locks per open file
    first.release()
    second = RunLock(tmp_path, "b")
    start = time.monotonic()
    second.acquire()
    assert second.held and time.monotonic() - start < 1
    second.release()


def test_a_lock_naming_a_live_process_is_trusted_unless_its_pid_was_reused(tmp_path, caplog):
    """Where flock does not hold across processes (some network filesystems) the PID and its start decide."""
    parent = os.getppid()  # alive, and not this process
    info = {"pid": parent, "host": socket.gethostname(), "started": "2026-01-01 00:00:00",
            "command": "vocabseg train", "ticks": None}
    (tmp_path / LOCK_FILE).write_text(json.dumps(info))
    with pytest.raises(FolderLocked, match=f"pid {parent} .*delete {tmp_path / LOCK_FILE}"):
        RunLock(tmp_path, "vocabseg train").acquire()
    (tmp_path / LOCK_FILE).write_text(json.dumps({**info, "ticks": 1}))  # that PID now belongs to a later process
    lock = RunLock(tmp_path, "vocabseg train")
    with caplog.at_level(logging.WARNING, logger="vocabseg"):
        lock.acquire()
    assert "taking over the stale lock" in caplog.text
    lock.release()
