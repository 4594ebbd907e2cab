"""Process-group set-up, rank facts and rank-aware data sharding.

A script started by ``torchrun`` sees ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment and joins
a process group (NCCL on GPU, gloo on CPU); a plain ``python`` start runs as a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from musiclm.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group when started under ``torchrun`` and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, index=local_rank if world_size > 1 else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=timedelta(minutes=timeout_minutes),
            device_id=dev if dev.type == "cuda" else None,
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    """Leave the process group once every rank is done (no rank exits while others still talk to it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0; gradients flow to this rank's own rows.

    Contrastive losses need the negatives of all ranks. Every rank computes the same global loss, so the
    gradient through the local rows alone is the exact gradient of that loss (DDP then averages the ranks'
    identical-loss gradients, a constant 1/world-size factor absorbed by the learning rate).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


class ShardedBatchSampler:
    """Deterministic, resumable, rank-sharded batches of dataset indices for one epoch.

    The epoch's order is a permutation seeded by ``(seed, epoch)``; it is padded by wrapping so that every
    rank gets the same number of full batches, then dealt round-robin to ranks. ``start_batch`` skips the
    batches already consumed before a resume, without loading them.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        epoch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
    ):
        if dataset_size < 1:
            raise ValueError("the dataset is empty")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.epoch, self.seed, self.shuffle = epoch, seed, shuffle
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    @staticmethod
    def batches_per_epoch(dataset_size: int, batch_size: int, world_size: int) -> int:
        return -(-dataset_size // (batch_size * world_size))

    def __len__(self) -> int:
        total = self.batches_per_epoch(self.dataset_size, self.batch_size, self.world_size)
        return max(total - self.start_batch, 0)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.dataset_size)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.dataset_size, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batches_per_epoch(self.dataset_size, self.batch_size, self.world_size)
        needed = per_rank * self.batch_size * self.world_size
        order = self._order()
        if needed > len(order):
            order = order.repeat(-(-needed // len(order)))[:needed]
        mine = order[self.rank :: self.world_size]
        for batch in range(self.start_batch, per_rank):
            yield mine[batch * self.batch_size : (batch + 1) * self.batch_size].tolist()
