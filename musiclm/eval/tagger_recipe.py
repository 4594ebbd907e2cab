"""Training and evaluating the tagger (:mod:`musiclm.eval.tagger`) on corpus labels, on the training engine.

Items are random crops of labelled clips with their per-head targets; every item is a pure function of
``(seed, epoch, index)`` (exact resume). The class vocabularies are built from the training split when the run
starts and stored in the run's config, so an exported tagger names its classes. Nothing here touches MuLan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from musiclm.config import from_dict, register_preset, to_dict
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ClipRecord, read_manifest
from musiclm.errors import ConfigError
from musiclm.eval import EvalError
from musiclm.eval.tagger import (
    HEADS,
    MULTILABEL_HEADS,
    Tagger,
    TaggerConfig,
    TaggerModel,
    TaggerVocab,
    build_vocab,
    clip_tags,
    encode_tags,
    tagger_loss,
)
from musiclm.train.checkpoint import CheckpointError, CheckpointManager
from musiclm.train.config import OptimizerConfig, TrainConfig
from musiclm.train.engine import Phase, Recipe, StepContext, Trainer, TrainResult

log = logging.getLogger("musiclm.eval")


@dataclass
class TaggerTrainingConfig:
    """Everything ``musiclm tagger train`` needs: the model (its vocabularies are filled in from the corpus) and
    the engine settings."""

    model: TaggerConfig = field(default_factory=TaggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    crop_seconds: float = 8.0  # random crops of the (10 s) clips: a mild augmentation
    eval_clips: int = 200  # valid-split clips scored by the evaluation hook (0 = none)

    def validate(self) -> None:
        if self.crop_seconds * self.model.sample_rate < self.model.min_samples:
            raise ConfigError("crop_seconds is too short for the tagger's pooling")
        if self.eval_clips < 0:
            raise ConfigError("eval_clips must be >= 0")


@register_preset("tagger", "small")
def small_training() -> TaggerTrainingConfig:
    """A CPU run: 0.3M parameters, 8 s crops, batch 32 (about 1.3 s per step on one busy core)."""
    return TaggerTrainingConfig(
        train=TrainConfig(
            max_steps=4000, batch_size=32, checkpoint_every=500, eval_every=250, sample_every=1_000_000,
            log_every=20, checkpoint_minutes=10.0,
            optimizer=OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.01, warmup_steps=100,
                                      min_lr_ratio=0.05, grad_clip=5.0),
        ),
    )


@register_preset("tagger", "paper")
def paper_training() -> TaggerTrainingConfig:
    """A GPU run: a wider CNN, full 10 s clips, batch 64, EMA weights."""
    return TaggerTrainingConfig(
        model=TaggerConfig(channels=(32, 64, 128, 256), embed_dim=256),
        train=TrainConfig(
            max_steps=30_000, batch_size=64, num_workers=8, ema_decay=0.999, checkpoint_every=2000,
            eval_every=1000, sample_every=1_000_000, log_every=50,
            optimizer=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.01, warmup_steps=500,
                                      min_lr_ratio=0.05, grad_clip=5.0),
        ),
        crop_seconds=10.0, eval_clips=1000,
    )


def has_tags(record: ClipRecord) -> bool:
    return any(clip_tags(record.labels).values())


def corpus_vocab(corpora: Sequence[str | os.PathLike[str]], split: str = "train") -> TaggerVocab:
    """The class vocabularies of the labelled clips of ``split`` in ``corpora``."""
    records = [r for root in corpora for r in read_manifest(root, split)]
    vocab = build_vocab(r.labels for r in records)
    if not any(vocab.sizes().values()):
        raise EvalError(f"no labelled clips in split {split!r} of {', '.join(map(str, corpora))}: the tagger "
                        "needs clips with `labels` (genre, parts, mood, bpm, mode)")
    return vocab


class TaggerClips(Dataset):
    """Crops of the labelled clips of a split with their targets; item ``i`` depends only on (seed, epoch, i)."""

    def __init__(self, corpora: Sequence[str | os.PathLike[str]], config: TaggerTrainingConfig, split: str = "train"):
        self.clips = ClipDataset([str(c) for c in corpora], split, crop_seconds=config.crop_seconds,
                                 sample_rate=config.model.sample_rate, seed=config.train.seed)
        kept = [(root, record) for root, record in self.clips.items if has_tags(record)]
        if len(kept) < len(self.clips.items):
            log.warning("%d clips without labels are left out of tagger training", len(self.clips.items) - len(kept))
        if not kept:
            raise EvalError(f"no labelled clips in split {split!r}")
        self.clips.items = kept
        self.vocab = config.model.vocab

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        record = self.clips.items[index][1]
        return {"wav": item["wav"], "index": index, **encode_tags(clip_tags(record.labels), self.vocab)}


class TaggerRecipe(Recipe):
    """One phase: the summed per-head losses of the tagger."""

    def __init__(self, config: TaggerTrainingConfig, corpora: Sequence[str | os.PathLike[str]]):
        self.corpora = [str(c) for c in corpora]
        if not any(config.model.vocab.sizes().values()):
            config = replace(config, model=replace(config.model, vocab=corpus_vocab(self.corpora)))
        self.config = config
        self._eval_records: list[tuple[Path, ClipRecord]] | None = None

    def build_models(self) -> dict[str, nn.Module]:
        return {"tagger": TaggerModel(self.config.model)}

    def build_dataset(self) -> Dataset:
        return TaggerClips(self.corpora, self.config, "train")

    def phases(self) -> list[Phase]:
        return [Phase("tag", ("tagger",), self.loss)]

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        return tagger_loss(ctx.model("tagger")(ctx.batch["wav"]), ctx.batch)

    def config_dict(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "corpora": self.corpora}

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Held-out accuracy per head on up to ``eval_clips`` valid-split clips."""
        if self.config.eval_clips == 0:
            return {}
        if self._eval_records is None:
            self._eval_records = select_records(self.corpora, "valid", self.config.eval_clips)
        if not self._eval_records:
            return {}
        report = evaluate_records(Tagger(models["tagger"]), self._eval_records)
        return flat_metrics(report)


def train_tagger(config: TaggerTrainingConfig, corpora: Sequence[str | os.PathLike[str]],
                 run_dir: str | os.PathLike[str]) -> TrainResult:
    """Train (or resume) the tagger on corpus folders; checkpoints go to ``run_dir``.

    A resumed run keeps the vocabularies of its checkpoint, so its classes stay fixed even if the corpus grew.
    """
    if not any(config.model.vocab.sizes().values()) and CheckpointManager(run_dir).latest() is not None:
        config = replace(config, model=replace(config.model, vocab=run_config(run_dir).model.vocab))
    return Trainer(TaggerRecipe(config, corpora), config.train, run_dir).fit()


def run_config(run_dir: str | os.PathLike[str]) -> TaggerTrainingConfig:
    """The training config (vocabularies included) stored in a run's latest checkpoint."""
    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint (is this a `musiclm tagger train` run folder?)")
    recipe = checkpoint.state().get("recipe_config", {})
    if "config" not in recipe or checkpoint.state().get("recipe") != TaggerRecipe.__name__:
        raise CheckpointError(f"{checkpoint.path}: not a tagger checkpoint")
    return from_dict(TaggerTrainingConfig, recipe["config"])


# ---------------------------------------------------------------------------------------------- evaluation
def select_records(corpora: Sequence[str | os.PathLike[str]], split: str, max_clips: int | None,
                   seed: int = 0) -> list[tuple[Path, ClipRecord]]:
    """Labelled clips of ``split``, sorted by id; a seeded random subset of ``max_clips`` when there are more."""
    records = sorted(((Path(root), r) for root in corpora for r in read_manifest(root, split) if has_tags(r)),
                     key=lambda item: item[1].id)
    if max_clips is not None and len(records) > max_clips:
        pick = np.sort(np.random.default_rng(seed).choice(len(records), size=max_clips, replace=False))
        records = [records[i] for i in pick]
    return records


def head_metrics(probs: Mapping[str, np.ndarray], tags: Sequence[Mapping[str, list[str]]],
                 vocab: TaggerVocab) -> dict[str, dict[str, float]]:
    """Per-head scores of predictions against the clips' true classes.

    Softmax heads: ``accuracy`` = top-1 class among the clip's true classes (for mood, any of its 2-3 moods),
    with ``majority_baseline`` (always answering the commonest class). Multi-label head: ``mAP`` (mean over
    classes with positives and negatives of the average precision), ``micro_f1`` and ``macro_f1`` at 0.5.
    Only clips labelled for a head count for it (``clips``).
    """
    from sklearn.metrics import average_precision_score, f1_score

    out: dict[str, dict[str, float]] = {}
    for head, p in probs.items():
        names = vocab.head(head)
        index = {n: i for i, n in enumerate(names)}
        truth = [[index[t] for t in clip.get(head, []) if t in index] for clip in tags]
        rows = [i for i, t in enumerate(truth) if t]
        if not rows:
            continue
        if head in MULTILABEL_HEADS:
            y = np.zeros((len(rows), len(names)), dtype=int)
            for r, i in enumerate(rows):
                y[r, truth[i]] = 1
            scores = p[rows]
            usable = [k for k in range(len(names)) if 0 < y[:, k].sum() < len(rows)]
            mean_ap = float(np.mean([average_precision_score(y[:, k], scores[:, k]) for k in usable])) if usable \
                else float("nan")
            predicted = (scores >= 0.5).astype(int)
            out[head] = {"mAP": mean_ap, "micro_f1": float(f1_score(y, predicted, average="micro", zero_division=0)),
                         "macro_f1": float(f1_score(y[:, usable], predicted[:, usable], average="macro",
                                                    zero_division=0)) if usable else float("nan"),
                         "clips": float(len(rows)), "classes": float(len(names))}
        else:
            top = p[rows].argmax(axis=1)
            hits = [top[r] in truth[i] for r, i in enumerate(rows)]
            counts = np.zeros(len(names))
            for i in rows:
                counts[truth[i]] += 1
            majority = int(counts.argmax())
            baseline = float(np.mean([majority in truth[i] for i in rows]))
            out[head] = {"accuracy": float(np.mean(hits)), "majority_baseline": baseline,
                         "clips": float(len(rows)), "classes": float(len(names))}
    return out


def evaluate_records(tagger: Tagger, records: Sequence[tuple[Path, ClipRecord]], batch: int = 16,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score ``tagger`` on corpus clips: :func:`head_metrics` plus the clip count."""
    from musiclm.audio import load_audio

    probs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        wavs = [load_audio(root / r.path, tagger.sample_rate, allow_silent=True)[0] for root, r in chunk]
        for head, value in tagger.predict(wavs, batch=batch).items():
            probs.setdefault(head, []).append(value)
        if progress is not None:
            progress(min(start + batch, len(records)), len(records))
    merged = {h: np.concatenate(v) for h, v in probs.items()}
    tags = [clip_tags(r.labels) for _, r in records]
    return {"clips": len(records), "heads": head_metrics(merged, tags, tagger.vocab)}


def evaluate_tagger(tagger: Tagger, corpora: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    split: str = "test", max_clips: int | None = None, seed: int = 0, batch: int = 16,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Held-out accuracy of a tagger per head on the labelled clips of a corpus split (see :func:`head_metrics`)."""
    roots = [corpora] if isinstance(corpora, str | os.PathLike) else list(corpora)
    records = select_records(roots, split, max_clips, seed)
    if not records:
        raise EvalError(f"no labelled clips in split {split!r} of {', '.join(map(str, roots))}")
    report = evaluate_records(tagger, records, batch, progress)
    return {"split": split, "corpora": [str(r) for r in roots], "model": tagger.source, **report}


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``{head}_{metric}`` scalars of a report (for the training log)."""
    keep = ("accuracy", "mAP", "micro_f1")
    return {f"{head}_{k}": v for head, scores in report["heads"].items() for k, v in scores.items() if k in keep}


__all__ = ["HEADS", "TaggerClips", "TaggerRecipe", "TaggerTrainingConfig", "evaluate_tagger", "head_metrics",
           "run_config", "train_tagger"]
