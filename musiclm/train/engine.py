"""The one training engine every model of musiclm trains with.

A :class:`Recipe` says what to train: its models, its dataset and its :class:`Phase` list (one phase per
optimizer: a plain model has one, a GAN has a discriminator phase and a generator phase). The
:class:`Trainer` does the rest the same way for every model: single process or ``torchrun`` DDP, bf16
autocast on GPU, gradient accumulation and clipping, EMA weights, warmup + cosine schedules, atomic
checkpoints with automatic resume, TensorBoard, a progress bar, graceful Ctrl-C and step/time budgets.

Resuming is exact: data order comes from ``(seed, epoch)`` and the position within the epoch is saved, and
every rank's RNG state is saved with the checkpoint, so a run killed and resumed ends with the same
parameters as an uninterrupted run, provided the dataset itself is deterministic per index (draw item
randomness from a generator seeded by the index, not from the global RNG).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, default_collate

from musiclm.config import to_dict
from musiclm.errors import MusicLMError
from musiclm.train.checkpoint import CheckpointManager
from musiclm.train.config import OptimizerConfig, TrainConfig
from musiclm.train.distributed import (
    DistContext,
    ShardedBatchSampler,
    all_reduce_max,
    barrier,
    setup_distributed,
)
from musiclm.train.logger import RateMeter, TrainLogger
from musiclm.train.schedule import warmup_cosine

log = logging.getLogger("musiclm.train")

LossOutput = tuple[torch.Tensor, dict[str, float]]


class TrainingDiverged(MusicLMError):
    """Losses or gradients stayed NaN/inf for too many consecutive steps."""


@dataclass
class Phase:
    """One optimizer's update: which models it trains and how its loss is computed.

    ``loss(ctx)`` returns ``(loss, logs)``. During a phase only the models in ``updates`` require gradients;
    the others can still be called (through ``ctx.model(name)``) without collecting gradients.
    """

    name: str
    updates: tuple[str, ...]
    loss: Callable[[StepContext], LossOutput]
    param_groups: Callable[[dict[str, nn.Module]], list[dict[str, Any]]] | None = None
    every: int = 1
    start_step: int = 0

    def active(self, step: int) -> bool:
        return step >= self.start_step and (step - self.start_step) % self.every == 0


@dataclass
class StepContext:
    """What a phase's loss function sees for one micro-batch."""

    batch: Any
    step: int
    phase: str
    device: torch.device
    dist: DistContext
    cache: dict[str, Any]  # shared by the phases of one micro-batch (e.g. a generator's output)
    _models: dict[str, nn.Module] = field(repr=False, default_factory=dict)

    def model(self, name: str) -> nn.Module:
        """The model to call: DDP-wrapped if this phase trains it, the plain module otherwise."""
        return self._models[name]


class Recipe:
    """What to train. Subclass it: ``build_models``, ``build_dataset`` and ``phases`` are required."""

    resuming: bool = False
    """Set by the :class:`Trainer` before ``build_models``: True when the run folder holds a checkpoint, whose
    weights replace whatever ``build_models`` starts from (so a recipe skips loading its ``init_from`` folder,
    and a run resumes even after that folder is gone)."""

    def build_models(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def build_dataset(self) -> Dataset:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    def config_dict(self) -> dict[str, Any]:
        """The recipe's own config, stored in every checkpoint."""
        return {}

    def on_sample(self, models: dict[str, nn.Module], step: int, logger: TrainLogger) -> None:
        """Log audio examples or figures (rank 0, every ``sample_every`` steps)."""

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Validation metrics (rank 0, every ``eval_every`` steps)."""
        return {}


@dataclass
class TrainResult:
    step: int
    reason: str  # "finished", "budget" or "interrupted"
    checkpoint: Path | None
    last_logs: dict[str, float]


def build_optimizer(config: OptimizerConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def default_param_groups(models: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """All trainable parameters; no weight decay on biases and norm gains (1-D tensors)."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for model in models:
        for param in model.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


class Trainer:
    """Runs a :class:`Recipe` under a :class:`TrainConfig` in ``run_dir``, resuming from its last checkpoint."""

    def __init__(self, recipe: Recipe, config: TrainConfig, run_dir: str | Path,
                 dist_context: DistContext | None = None):
        config.validate()
        self.recipe, self.config, self.run_dir = recipe, config, Path(run_dir)
        self.dist = dist_context
        self._stop_signal = False
        self._signal_count = 0

    # ----------------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg = self.config
        self.dist = self.dist or setup_distributed(cfg.device)
        self.device = self.dist.device
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.checkpoints = CheckpointManager(self.run_dir, keep=cfg.keep_checkpoints)
        self.recipe.resuming = self.checkpoints.latest() is not None
        self.models = {name: m.to(self.device) for name, m in self.recipe.build_models().items()}
        self.phases = self.recipe.phases()
        for phase in self.phases:
            missing = [n for n in phase.updates if n not in self.models]
            if missing:
                raise MusicLMError(f"phase {phase.name!r} updates unknown models {missing}")
        self.trained = sorted({n for p in self.phases for n in p.updates})
        self.ema = {}
        if cfg.ema_decay is not None:
            avg_fn = get_ema_multi_avg_fn(cfg.ema_decay)
            self.ema = {n: AveragedModel(self.models[n], multi_avg_fn=avg_fn, use_buffers=True)
                        for n in self.trained}
        self.wrapped: dict[str, nn.Module] = dict(self.models)
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            for name in self.trained:
                self.wrapped[name] = DistributedDataParallel(
                    self.models[name], device_ids=ids, find_unused_parameters=cfg.find_unused_parameters
                )
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        for phase in self.phases:
            opt_cfg = cfg.optimizer_for(phase.name)
            groups = (phase.param_groups(self.models) if phase.param_groups
                      else default_param_groups([self.models[n] for n in phase.updates], opt_cfg.weight_decay))
            optimizer = build_optimizer(opt_cfg, groups)
            self.optimizers[phase.name] = optimizer
            factor = warmup_cosine(opt_cfg.warmup_steps, cfg.max_steps, opt_cfg.min_lr_ratio,
                                   cosine=opt_cfg.schedule == "cosine")
            self.schedulers[phase.name] = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

        self.dataset = self.recipe.build_dataset()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoints.clean_stale()
        barrier()
        self.resumed_from = self._resume()

    def _resume(self) -> Path | None:
        latest = self.checkpoints.latest()
        if latest is None:
            torch.manual_seed(self.config.seed + 1000 * self.dist.rank)
            return None
        state = latest.state()
        CheckpointManager.load_models(latest, self.models, {n: e.module for n, e in self.ema.items()})
        for ema in self.ema.values():
            ema.n_averaged.fill_(max(int(state["step"]), 1))
        trainer_state = CheckpointManager.load_trainer_state(latest)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(trainer_state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(trainer_state["schedulers"][name])
        rng_states = trainer_state.get("rng", [])
        if self.dist.rank < len(rng_states):
            rng = rng_states[self.dist.rank]
            torch.set_rng_state(rng["torch"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        else:
            torch.manual_seed(self.config.seed + 1000 * self.dist.rank + int(state["step"]))
        self.step = int(state["step"])
        self.epoch = int(state["data"]["epoch"])
        self.batch_in_epoch = int(state["data"]["batch_in_epoch"])
        self._consecutive_nonfinite = int(state.get("consecutive_nonfinite", 0))
        return latest.path

    # -------------------------------------------------------------------------------------------- data
    def _batches(self) -> Iterator[Any]:
        cfg = self.config
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)  # per-epoch item randomness, still resume-exact
            sampler = ShardedBatchSampler(
                len(self.dataset), cfg.batch_size, epoch=self.epoch, seed=cfg.seed, rank=self.dist.rank,
                world_size=self.dist.world_size, start_batch=self.batch_in_epoch,
            )
            # A private generator keeps DataLoader's worker seeding off the global RNG.
            generator = torch.Generator().manual_seed(cfg.seed * 7919 + self.epoch * 104_729 + self.batch_in_epoch)
            loader = DataLoader(
                self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers, collate_fn=self.recipe.collate,
                generator=generator, pin_memory=self.device.type == "cuda",
                persistent_workers=False,
            )
            for batch in loader:
                self.batch_in_epoch += 1
                yield move_to(batch, self.device)
            self.epoch += 1
            self.batch_in_epoch = 0

    # ------------------------------------------------------------------------------------------ phases
    @contextlib.contextmanager
    def _phase_scope(self, phase: Phase, sync: bool) -> Iterator[None]:
        frozen = [self.models[n] for n in self.trained if n not in phase.updates]
        flags = [[p.requires_grad for p in m.parameters()] for m in frozen]
        for model in frozen:
            model.requires_grad_(False)
        try:
            with contextlib.ExitStack() as stack:
                if not sync:
                    for name in phase.updates:
                        wrapped = self.wrapped[name]
                        if isinstance(wrapped, DistributedDataParallel):
                            stack.enter_context(wrapped.no_sync())
                if self.autocast_dtype is not None:
                    stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
                yield
        finally:
            for model, model_flags in zip(frozen, flags):
                for param, flag in zip(model.parameters(), model_flags):
                    param.requires_grad_(flag)

    def _models_for(self, phase: Phase) -> dict[str, nn.Module]:
        return {n: (self.wrapped[n] if n in phase.updates else self.models[n]) for n in self.models}

    def _optimizer_step(self, phase: Phase) -> dict[str, float]:
        optimizer = self.optimizers[phase.name]
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        clip = self.config.optimizer_for(phase.name).grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
        norm_value = float(norm)
        logs = {f"{phase.name}/grad_norm": norm_value, f"{phase.name}/lr": optimizer.param_groups[0]["lr"]}
        if math.isfinite(norm_value):
            optimizer.step()
            for name in phase.updates:
                if name in self.ema:
                    self.ema[name].update_parameters(self.models[name])
        else:
            self._nonfinite_this_step = True
        optimizer.zero_grad(set_to_none=True)
        self.schedulers[phase.name].step()
        return logs

    def _train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        cfg = self.config
        logs: dict[str, float] = defaultdict(float)
        active = [p for p in self.phases if p.active(self.step)]
        self._nonfinite_this_step = False
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            cache: dict[str, Any] = {}
            last = micro == cfg.grad_accum - 1
            for phase in active:
                ctx = StepContext(batch=batch, step=self.step, phase=phase.name, device=self.device,
                                  dist=self.dist, cache=cache, _models=self._models_for(phase))
                with self._phase_scope(phase, sync=last):
                    loss, extra = phase.loss(ctx)
                    (loss / cfg.grad_accum).backward()
                logs[f"{phase.name}/loss"] += float(loss.detach()) / cfg.grad_accum
                for key, value in extra.items():
                    logs[f"{phase.name}/{key}"] += float(value) / cfg.grad_accum
                if last:
                    logs.update(self._optimizer_step(phase))
        if self._nonfinite_this_step:
            self._consecutive_nonfinite += 1
            if self._consecutive_nonfinite >= cfg.max_nonfinite_steps:
                raise TrainingDiverged(
                    f"step {self.step}: loss or gradients were NaN/inf for {self._consecutive_nonfinite} "
                    f"consecutive steps; updates were skipped and the run stopped. The last checkpoint in "
                    f"{self.checkpoints.root} is intact: lower the learning rate or check the data."
                )
            self.logger.message(f"step {self.step}: non-finite loss or gradient, update skipped")
        else:
            self._consecutive_nonfinite = 0
        return dict(logs)

    # ------------------------------------------------------------------------------------- checkpoints
    def save(self) -> Path | None:
        """Write a checkpoint of the current state (a collective call under DDP: every rank calls it)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        rng_states = [rng]
        if self.dist.distributed:
            rng_states = [None] * self.dist.world_size
            dist.all_gather_object(rng_states, rng)
        path = None
        if self.dist.is_main:
            trainer_state = {
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
                "rng": rng_states,
            }
            state = {
                "data": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
                "world_size": self.dist.world_size,
                "consecutive_nonfinite": self._consecutive_nonfinite,
                "train_config": to_dict(self.config),
                "recipe": type(self.recipe).__name__,
                "recipe_config": self.recipe.config_dict(),
            }
            ckpt = self.checkpoints.save(self.step, self.models, trainer_state, state,
                                         {n: e.module for n, e in self.ema.items()})
            path = ckpt.path
        barrier()
        self._last_save_time = time.monotonic()
        return path

    # ---------------------------------------------------------------------------------------- signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal_count += 1
        if self._signal_count > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_signal = True

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        previous = {}
        with contextlib.suppress(ValueError):  # not in the main thread: no handlers
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Train until ``max_steps``, a budget or a stop signal; always leaves a checkpoint of the last step."""
        self._consecutive_nonfinite = 0
        self._setup()
        cfg = self.config
        start_time = self._last_save_time = time.monotonic()
        start_step = self.step
        self.logger = TrainLogger(self.run_dir, enabled=self.dist.is_main, total_steps=cfg.max_steps,
                                  start_step=self.step, progress=cfg.progress)
        if self.resumed_from is not None:
            self.logger.message(f"resumed from {self.resumed_from} (step {self.step})")
        for model in self.models.values():
            model.train()
        reason = "finished"
        last_logs: dict[str, float] = {}
        last_ckpt: Path | None = None
        meter = RateMeter()
        batches = self._batches()
        try:
            with self._signals():
                while self.step < cfg.max_steps:
                    logs = self._train_step(batches)
                    self.step += 1
                    meter.tick()
                    last_logs = logs
                    self.logger.advance(1, {k: v for k, v in logs.items() if k.endswith("/loss")})
                    if self.step % cfg.log_every == 0:
                        self.logger.scalars({**logs, "perf/steps_per_s": meter.rate(),
                                             "perf/epoch": float(self.epoch)}, self.step)
                    flags = self._flags(start_time, start_step)
                    stop = bool(flags[0]) or bool(flags[1])
                    due = self.step % cfg.checkpoint_every == 0 or bool(flags[2]) or self.step >= cfg.max_steps
                    if due or stop:
                        last_ckpt = self.save()
                    self._hooks()
                    if stop:
                        reason = "interrupted" if flags[0] else "budget"
                        break
        finally:
            self.logger.close()
        if self.dist.is_main:
            if reason == "interrupted":
                log.warning("stopped by signal at step %d; checkpoint saved, re-run to resume", self.step)
            elif reason == "budget":
                log.info("budget reached at step %d; checkpoint saved, re-run to resume", self.step)
        return TrainResult(step=self.step, reason=reason, checkpoint=last_ckpt, last_logs=last_logs)

    def _flags(self, start_time: float, start_step: int) -> torch.Tensor:
        """[stop requested, budget reached, time to save], agreed on by every rank."""
        cfg = self.config
        now = time.monotonic()
        budget = (cfg.budget_steps is not None and self.step - start_step >= cfg.budget_steps) or (
            cfg.budget_minutes is not None and now - start_time >= 60.0 * cfg.budget_minutes
        )
        timed_save = cfg.checkpoint_minutes is not None and now - self._last_save_time >= 60 * cfg.checkpoint_minutes
        flags = torch.tensor([float(self._stop_signal), float(budget), float(timed_save)])
        if self.dist.distributed:
            device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            flags = all_reduce_max(flags.to(device)).cpu()
        return flags

    def _hooks(self) -> None:
        cfg = self.config
        sample = self.step % cfg.sample_every == 0
        evaluate = self.step % cfg.eval_every == 0
        if not (sample or evaluate):
            return
        if self.dist.is_main:
            models = {n: (self.ema[n].module if n in self.ema else m) for n, m in self.models.items()}
            for model in models.values():
                model.eval()
            with torch.no_grad():
                if sample:
                    self.recipe.on_sample(models, self.step, self.logger)
                if evaluate:
                    metrics = self.recipe.evaluate(models, self.step)
                    if metrics:
                        self.logger.scalars({f"eval/{k}": v for k, v in metrics.items()}, self.step)
                        self.logger.message(f"step {self.step}: " + ", ".join(
                            f"{k}={v:.4g}" for k, v in metrics.items()))
            for model in self.models.values():
                model.train()
            for ema in self.ema.values():
                ema.module.train()
        barrier()
