"""Process-group state as plain functions; every one also works without a process group.

Launch with ``torchrun --nproc_per_node N -m vocabseg.cli train ...`` (or ``eval``, ``predict``):
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and
``init_from_env`` / ``join_from_env`` read them. Without them the run is a single process.
This is the one module of vocabseg that talks to ``torch.distributed``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from vocabseg.errors import ConfigError, DeviceError, VocabsegError, first_line

T = TypeVar("T")


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def join_from_env(*, backend: str = "gloo", timeout: timedelta = timedelta(minutes=30)) -> bool:
    """Joins the process group torchrun describes, if there is one and it is not joined yet.

    Args:
        backend: "gloo" (CPU tensors; enough for barriers and object gathers) or "nccl".
        timeout: how long collective calls (e.g. a barrier) wait for the slowest rank.

    Returns:
        True if this call created the group (the caller then ends it with :func:`cleanup`).
    """
    world_size = env_world_size()
    if world_size == 1 or is_initialized():
        return False
    dist.init_process_group(backend=backend, rank=int(os.environ["RANK"]), world_size=world_size, timeout=timeout)
    return True


def init_from_env(*, device: str = "auto", timeout_minutes: int = 30) -> torch.device:
    """Joins the process group torchrun describes (if any) and picks this process's device.

    Args:
        device: "auto" (this rank's GPU when CUDA is available, else the CPU), "cpu", or "cuda".

    Returns:
        The device this process trains on.

    Raises:
        DeviceError: an unknown device, or CUDA asked for but not available.
    """
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise DeviceError(f"device {device} was requested but CUDA is not available; set device=cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    join_from_env(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=timeout_minutes))
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the joined process group, else of torchrun's RANK/WORLD_SIZE (else (0, 1)).

    Unlike :func:`get_rank`, this knows a process's place before it joins the group.
    """
    if is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), env_world_size()


def is_main_process() -> bool:
    return get_rank() == 0


def rank_device(device: str) -> str:
    """Under torchrun a bare ``cuda`` means this rank's GPU (LOCAL_RANK); other devices as given."""
    if device == "cuda" and env_world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def on_main_first(fn: Callable[[], T]) -> T | None:
    """Runs ``fn`` on rank 0 only; every rank then raises if it raised a vocabseg error.

    For steps one process must do for the job (take a folder's lock, write a run record): the
    other ranks wait for it and stop with the same one-line message (a ConfigError) when it failed.
    Returns ``fn``'s result on rank 0, None on the others.
    """
    result, error = None, None
    if is_main_process():
        try:
            result = fn()
        except VocabsegError as caught:
            error = caught
    outcome = all_gather_object(first_line(error) if error is not None else None)[0]
    if error is not None:
        raise error
    if outcome is not None:
        raise ConfigError(outcome)
    return result


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new tensor; the input is left alone)."""
    tensor = tensor.clone()
    if is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a new tensor; the input is left alone)."""
    return all_reduce_sum(tensor) / get_world_size()


def all_gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """``tensor`` (same shape on every rank) of every rank, in rank order; no gradient flows back through them."""
    if not is_initialized():
        return [tensor]
    gathered = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(gathered, tensor.detach().contiguous())
    return gathered


def all_gather_object(obj) -> list:
    """``obj`` of every rank, in rank order (picklable objects; slow, for small states)."""
    if not is_initialized():
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()
