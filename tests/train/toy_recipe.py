"""A tiny regression recipe that exercises every feature of the training engine in tests."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Dataset

from musiclm.train.engine import Phase, Recipe, StepContext

IN_DIM, OUT_DIM = 8, 4


class LinearData(Dataset):
    """y = W x + small noise; each item is a pure function of its index (resume-exact)."""

    def __init__(self, size: int = 256):
        self.size = size
        self.weight = torch.randn(OUT_DIM, IN_DIM, generator=torch.Generator().manual_seed(1234))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(10_000 + index)
        x = torch.randn(IN_DIM, generator=g)
        y = self.weight @ x + 0.01 * torch.randn(OUT_DIM, generator=g)
        return {"x": x, "y": y}


class ToyRecipe(Recipe):
    """``net`` regresses y from x (with dropout, so the RNG matters); optionally a second phase trains
    ``critic`` to predict the net's per-item error, like a GAN's separate discriminator update."""

    def __init__(self, two_phases: bool = False, step_sleep: float = 0.0, nan_after: int | None = None,
                 dataset_size: int = 256):
        self.two_phases, self.step_sleep, self.nan_after = two_phases, step_sleep, nan_after
        self.dataset_size = dataset_size
        self.sampled_steps: list[int] = []

    def build_models(self) -> dict[str, nn.Module]:
        models: dict[str, nn.Module] = {
            "net": nn.Sequential(nn.Linear(IN_DIM, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, OUT_DIM))
        }
        if self.two_phases:
            models["critic"] = nn.Sequential(nn.Linear(IN_DIM + OUT_DIM, 16), nn.GELU(), nn.Linear(16, 1))
        return models

    def build_dataset(self) -> Dataset:
        return LinearData(self.dataset_size)

    def _net_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        if self.step_sleep:
            time.sleep(self.step_sleep)
        pred = ctx.model("net")(ctx.batch["x"])
        ctx.cache["pred"] = pred.detach()
        loss = nn.functional.mse_loss(pred, ctx.batch["y"])
        if self.nan_after is not None and ctx.step >= self.nan_after:
            loss = loss * float("nan")
        return loss, {"mae": float((pred.detach() - ctx.batch["y"]).abs().mean())}

    def _critic_loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        pred = ctx.cache["pred"]
        target = (pred - ctx.batch["y"]).pow(2).mean(-1, keepdim=True)
        guess = ctx.model("critic")(torch.cat([ctx.batch["x"], pred], dim=-1))
        return nn.functional.mse_loss(guess, target), {}

    def phases(self) -> list[Phase]:
        phases = [Phase("net", ("net",), self._net_loss)]
        if self.two_phases:
            phases.append(Phase("critic", ("critic",), self._critic_loss))
        return phases

    def config_dict(self) -> dict[str, object]:
        return {"two_phases": self.two_phases, "dataset_size": self.dataset_size}

    def on_sample(self, models, step, logger) -> None:
        self.sampled_steps.append(step)

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        data = LinearData(64)
        batch = torch.stack([data[i]["x"] for i in range(64)]), torch.stack([data[i]["y"] for i in range(64)])
        return {"mse": float(nn.functional.mse_loss(models["net"](batch[0]), batch[1]))}
