"""Configuration of the training engine (shared by every model's recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from musiclm.config import register_preset
from musiclm.errors import ConfigError


@dataclass
class OptimizerConfig:
    """An optimizer and its learning-rate schedule (linear warmup, then cosine decay to ``min_lr_ratio``)."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    warmup_steps: int = 500
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError("lr must be positive")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("min_lr_ratio must be within [0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("grad_clip must be positive or null")


@dataclass
class TrainConfig:
    """Everything the engine needs besides the recipe (model, data and losses)."""

    max_steps: int = 10_000
    batch_size: int = 8  # per rank, per micro-batch
    grad_accum: int = 1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    num_workers: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    phase_optimizers: dict[str, OptimizerConfig] = field(default_factory=dict)  # per-phase overrides
    ema_decay: float | None = None  # e.g. 0.999 keeps EMA weights of every trained model
    checkpoint_every: int = 1000  # steps
    checkpoint_minutes: float | None = 10.0  # also save at least this often (wall clock)
    keep_checkpoints: int = 3
    log_every: int = 10
    sample_every: int = 1000  # recipe's audio/figure hook
    eval_every: int = 1000  # recipe's evaluation hook
    budget_steps: int | None = None  # steps to run in this invocation, then save and exit
    budget_minutes: float | None = None  # wall-clock minutes in this invocation, then save and exit
    max_nonfinite_steps: int = 3  # consecutive skipped updates (NaN/inf) before the run stops
    find_unused_parameters: bool = False
    progress: bool = True

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints",
                     "log_every", "sample_every", "eval_every", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.num_workers < 0:
            raise ConfigError("num_workers must be >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError("ema_decay must be within (0, 1)")
        for name in ("budget_steps",):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or null")
        for name in ("budget_minutes", "checkpoint_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive or null")

    def optimizer_for(self, phase: str) -> OptimizerConfig:
        return self.phase_optimizers.get(phase, self.optimizer)


@register_preset("train", "small")
def small_train() -> TrainConfig:
    """Engine defaults for the CPU-sized models."""
    return TrainConfig()


@register_preset("train", "paper")
def paper_train() -> TrainConfig:
    """Engine defaults for the paper-sized models on GPUs."""
    return TrainConfig(
        batch_size=32, num_workers=8, ema_decay=0.999, checkpoint_every=5000, max_steps=1_000_000,
        optimizer=OptimizerConfig(lr=1e-4, warmup_steps=5000),
    )
