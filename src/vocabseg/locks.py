"""One process per run folder: ``<folder>/.lock``, held with ``flock`` and naming its holder.

The file says who holds it (PID, host, start time, command, torchrun job id) as one JSON line.
Liveness comes from the kernel: ``flock`` is released when the holder exits, even on
``kill -9``, so a lock file that can be locked again is stale; its taker says so in a notice.
A file naming another host is refused whatever ``flock`` says (a shared folder may not carry
locks between machines): the message names the holder and how to clear it by hand.
A torchrun job shares one lock: rank 0 takes it (:func:`vocabseg.run_folder.owned_folder`).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from vocabseg.errors import ConfigError

LOCK_FILE = ".lock"
logger = logging.getLogger(__name__)


class FolderLocked(ConfigError):
    """Another process holds the run folder."""


def holder_info(command: str) -> dict[str, Any]:
    """What this process writes into a lock it takes."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command, "job": os.environ.get("TORCHELASTIC_RUN_ID"), "ticks": _start_ticks(os.getpid())}


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, Linux ``/proc``): a reused PID has another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def describe_holder(info: dict[str, Any] | None) -> str:
    """``vocabseg train (pid 123 on host-a, since 2026-12-07 17:40:01)``."""
    if not info:
        return "another process (its lock file is being written)"
    return (f"{info.get('command', 'a process')} (pid {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('started')})")


def _read_info(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
    try:
        info = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether the process that wrote a lock still runs (not merely its PID, reused by another one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return ticks is None or _start_ticks(pid) in (None, ticks)


class RunLock:
    """An exclusive lock on a run folder; ``acquire`` creates the folder if needed."""

    def __init__(self, folder: Path, command: str):
        self.folder, self.command = Path(folder), command
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises FolderLocked naming its holder.

        Raises:
            FolderLocked: a live process holds it, or a process on another host is named in it.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:  # retried when the file was replaced between open and flock (a release unlinks it)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_info(fd)
                os.close(fd)
                raise FolderLocked(f"{self.folder} is in use by {describe_holder(info)}; wait for it to finish "
                                   "or choose another --output") from None
            if self._same_file(fd):
                break
            os.close(fd)
        try:
            self._check_previous(_read_info(fd))
        except FolderLocked:
            os.close(fd)
            raise
        text = json.dumps(holder_info(self.command)) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _check_previous(self, info: dict[str, Any] | None) -> None:
        """A lock file left behind: taken over (dead process on this host) or refused (another host)."""
        if info is None:
            return
        here = socket.gethostname()
        if info.get("host") != here:
            raise FolderLocked(f"{self.folder} is locked by {describe_holder(info)}, another host; if that "
                               f"process has ended, delete {self.path} and rerun")
        pid = info.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _alive(pid, info.get("ticks")):
            # flock was free yet the process lives: a filesystem without working flock; trust the PID.
            raise FolderLocked(f"{self.folder} is in use by {describe_holder(info)}; wait for it to finish "
                               f"or, if it does not use this folder, delete {self.path}")
        logger.warning("taking over the stale lock of %s in %s: that process is no longer running",
                       describe_holder(info), self.folder)

    def release(self) -> None:
        """Deletes the lock file and lets go of it (unlink first: a waiting opener then retries)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
