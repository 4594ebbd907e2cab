from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musiclm.train.distributed import ShardedBatchSampler

HERE = Path(__file__).resolve().parent


def test_sharded_batches_are_disjoint_and_cover_the_epoch():
    per_rank = [list(ShardedBatchSampler(50, 4, epoch=0, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1  # every rank gets the same number of batches
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert set(flat) == set(range(50))  # covered (wrapped padding repeats a few)
    assert len(flat) == 3 * 5 * 4


def test_epochs_differ_and_are_deterministic():
    a = list(ShardedBatchSampler(20, 5, epoch=0, seed=3))
    assert a == list(ShardedBatchSampler(20, 5, epoch=0, seed=3))
    assert a != list(ShardedBatchSampler(20, 5, epoch=1, seed=3))


def test_start_batch_skips_exactly_the_consumed_batches():
    full = list(ShardedBatchSampler(30, 4, epoch=2, seed=0, rank=1, world_size=2))
    tail = ShardedBatchSampler(30, 4, epoch=2, seed=0, rank=1, world_size=2, start_batch=2)
    assert list(tail) == full[2:] and len(tail) == len(full) - 2


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.timeout(300)
def test_two_process_ddp_on_cpu_ends_with_identical_parameters(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2", str(HERE / "toy_train.py"), str(tmp_path),
           "--max-steps", "30", "--checkpoint-every", "10", "--two-phases", "--ema", "0.9"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    assert out.returncode == 0, f"{out.stderr[:4000]}\n...\n{out.stderr[-2000:]}"  # the ranks' own errors first
    rank0 = load_file(tmp_path / "final-rank0.safetensors")
    rank1 = load_file(tmp_path / "final-rank1.safetensors")
    for key in rank0:
        if not key.startswith("gathered"):
            assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
    # the cross-rank gather used by contrastive losses returns every rank's rows, gradients flow back
    expected = torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3] * 2)
    assert torch.equal(rank0["gathered"], expected) and torch.equal(rank1["gathered"], expected)
    assert torch.equal(rank0["gathered_grad"], torch.ones(2, 3))
    # only rank 0 wrote checkpoints and they describe a 2-process run
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step-00000020", "step-00000030"]
    import json

    state = json.loads((tmp_path / "checkpoints" / "step-00000030" / "state.json").read_text())
    assert state["world_size"] == 2
    rng = torch.load(tmp_path / "checkpoints" / "step-00000030" / "trainer.pt", weights_only=True)["rng"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # per-rank dropout streams
