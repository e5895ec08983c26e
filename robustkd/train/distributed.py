"""Data-parallel set-up under ``torchrun``: NCCL on GPUs, gloo on CPUs; a single process otherwise."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from robustkd.train.loop import Placement
from robustkd.utils.device import resolve_device


def init_placement(device_name: str | None) -> Placement:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; join the process group when there are several."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Placement(resolve_device(device_name))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Placement(device, rank, world_size)


def close_placement(placement: Placement) -> None:
    if placement.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
