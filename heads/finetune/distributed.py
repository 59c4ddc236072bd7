"""This process's place in a fine-tune: one process, or one rank of a torchrun job (gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from vidprobe.features.devices import resolve_device


@dataclass
class Distributed:
    """Rank `rank` of `world` processes on `device`; `owns_group` when it set up the process group."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool = False

    @classmethod
    def from_env(cls, device: str) -> Distributed:
        """From torchrun's RANK / WORLD_SIZE / LOCAL_RANK (one process without them)."""
        world = int(os.environ.get("WORLD_SIZE", 1))
        where = resolve_device(device)
        if where.type == "cuda" and where.index is None:
            where = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if where.type == "cuda":
            torch.cuda.set_device(where)
        return cls(int(os.environ.get("RANK", 0)), world, where)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def say(self, text: str) -> None:
        if self.main:
            print(text)

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def connect(self) -> None:
        """Join the torchrun process group (gloo on CPU, nccl on CUDA)."""
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owns_group = True

    def close(self, ok: bool) -> None:
        """Leave the process group (after the others, when the run went through)."""
        if self.owns_group:
            if ok:
                dist.barrier()
            dist.destroy_process_group()
