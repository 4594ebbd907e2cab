"""A training run killed with SIGKILL at arbitrary moments resumes to the same result, no file corrupted."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musiclm.train.checkpoint import CheckpointManager

SCRIPT = Path(__file__).resolve().parent / "toy_train.py"
ARGS = ["--max-steps", "60", "--checkpoint-every", "5", "--ema", "0.9", "--two-phases"]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def latest_step(run_dir: Path) -> int:
    latest = CheckpointManager(run_dir).latest()
    return latest.step if latest else 0


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while latest_step(run_dir) < step:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)


def assert_every_checkpoint_intact(run_dir: Path) -> None:
    for ckpt in CheckpointManager(run_dir).list():
        names = sorted(p.name for p in ckpt.path.iterdir())
        assert names == ["ema-critic.safetensors", "ema-net.safetensors", "model-critic.safetensors",
                         "model-net.safetensors", "state.json", "trainer.pt"], names
        for weights in ckpt.path.glob("*.safetensors"):
            assert all(torch.isfinite(t).all() for t in load_file(weights).values())
        state = ckpt.state()
        assert state["step"] == ckpt.step
        trainer = torch.load(ckpt.path / "trainer.pt", weights_only=True)
        assert set(trainer["optimizers"]) == {"net", "critic"}


@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path):
    reference = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "ref"), *ARGS],
                               capture_output=True, text=True, timeout=120)
    assert reference.returncode == 0, reference.stderr

    run_dir = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for target in (10, 25, 40):
        proc = start(run_dir, "--step-sleep", "0.03")
        wait_for_step(run_dir, target, proc)
        time.sleep(rng.uniform(0.0, 0.15))  # land anywhere: mid-step or mid-save
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        assert_every_checkpoint_intact(run_dir)
    final = subprocess.run([sys.executable, str(SCRIPT), str(run_dir), *ARGS],
                           capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout.strip().splitlines()[-1])["step"] == 60
    assert "resumed from" in final.stderr
    assert kills == 3
    assert_every_checkpoint_intact(run_dir)
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]

    ours, ref = load_file(run_dir / "final-rank0.safetensors"), load_file(tmp_path / "ref" / "final-rank0.safetensors")
    for key in ref:
        assert torch.equal(ours[key], ref[key]), f"{key} differs from the uninterrupted run"
    for name in ("model-net", "model-critic", "ema-net", "ema-critic"):
        a = load_file(run_dir / "checkpoints" / "step-00000060" / f"{name}.safetensors")
        b = load_file(tmp_path / "ref" / "checkpoints" / "step-00000060" / f"{name}.safetensors")
        for key in a:  # EMA weights too: they resume from the saved average
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs"


@pytest.mark.timeout(120)
def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    proc = start(tmp_path, "--step-sleep", "0.05")
    wait_for_step(tmp_path, 5, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["reason"] == "interrupted" and 5 <= result["step"] < 60
    assert latest_step(tmp_path) == result["step"]  # the stopping step was saved
