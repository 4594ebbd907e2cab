"""The contrastive loss under two-process DDP (gloo): negatives gathered across ranks give the exact global loss
and, through each rank's own rows, the exact gradients of a single process holding the whole batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from musiclm.mulan.losses import contrastive_loss

BATCH, DIM = 8, 6


def full_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    audio = torch.nn.functional.normalize(torch.randn(BATCH, DIM, generator=generator), dim=1)
    text = torch.nn.functional.normalize(audio + 0.5 * torch.randn(BATCH, DIM, generator=generator), dim=1)
    groups = torch.tensor([0, 1, 2, 2, 3, 4, 5, 5])  # one pair of same-piece rows on each rank
    return audio, text, groups


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        audio, text, groups = full_batch()
        rows = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        a = audio[rows].clone().requires_grad_(True)
        t = text[rows].clone().requires_grad_(True)
        loss, _ = contrastive_loss(a, t, torch.tensor(10.0), groups=groups[rows])
        loss.backward()
        torch.save({"loss": loss.detach(), "a": a.grad, "t": t.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(240)
def test_gathered_loss_and_gradients_equal_the_single_process_ones(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    audio, text, groups = full_batch()
    a = audio.clone().requires_grad_(True)
    t = text.clone().requires_grad_(True)
    loss, _ = contrastive_loss(a, t, torch.tensor(10.0), groups=groups, gather=False)
    loss.backward()
    for result in ranks:
        assert torch.allclose(result["loss"], loss.detach(), atol=1e-6)
    assert torch.allclose(torch.cat([r["a"] for r in ranks]), a.grad, atol=1e-6)
    assert torch.allclose(torch.cat([r["t"] for r in ranks]), t.grad, atol=1e-6)
