"""Process-group state as plain functions; every one also works without a process group.

Launch with ``torchrun --nproc_per_node N -m vocabseg train ...``: torchrun sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and ``init_from_env``
reads them. Without them the run is a single process.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def init_from_env(*, device: str = "auto", timeout_minutes: int = 30) -> torch.device:
    """Joins the process group torchrun describes (if any) and picks this process's device.

    Args:
        device: "auto" (this rank's GPU when CUDA is available, else the CPU), "cpu", or "cuda".

    Returns:
        The device this process trains on.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device cuda was requested but CUDA is not available; set device=cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=int(os.environ["RANK"]),
            world_size=world_size,
            timeout=timedelta(minutes=timeout_minutes),
        )
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


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
