"""Masked-prediction training of the semantic model on the shared engine (HuBERT-style, two iterations).

Per step: random crops (with a random gain) -> the targets of every crop from its own audio (hand-made
features for iteration 0, the frozen iteration-0 model's layer for iteration 1) -> span masks drawn from
``(seed, step, item index)`` -> cross-entropy of each codebook's head on the masked frames. The target
codebooks are fit once per run (``<run>/targets``) before the first step, on the training split only.

No contrastive term: masked prediction of discrete targets alone is what HuBERT uses, and w2v-BERT's extra
contrastive module mainly serves to learn its own quantiser, which k-means targets replace here.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from musiclm.config import to_dict
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ManifestError, read_manifest
from musiclm.semantic.config import SemanticTrainingConfig, TargetConfig
from musiclm.semantic.io import load_encoder
from musiclm.semantic.model import SemanticModel, span_mask
from musiclm.semantic.targets import TARGETS_DIR, TARGETS_META, TargetError, TargetSet, fit_targets
from musiclm.train.engine import LossOutput, Phase, Recipe, StepContext, Trainer, TrainResult

log = logging.getLogger("musiclm.semantic")

MODEL_NAME = "semantic"
EVAL_SEED = 7_001


class GainJitter(Dataset):
    """A clip dataset whose items get a random gain of up to ``+-db`` decibels, drawn from the item index."""

    def __init__(self, base: ClipDataset, db: float, seed: int):
        self.base, self.db, self.seed = base, db, seed

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        if self.db > 0:
            rng = np.random.default_rng([self.seed, self.base.epoch, index, 17])
            item["wav"] = item["wav"] * float(10.0 ** (rng.uniform(-self.db, self.db) / 20.0))
        return item


def batch_masks(indices: torch.Tensor, frames: int, step: int, seed: int, mask_prob: float,
                mask_length: int) -> torch.Tensor:
    """``[B, frames]`` span masks, each a pure function of ``(seed, step, item index)``."""
    masks = []
    for index in indices.tolist():
        generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, int(index)]).integers(2**62)))
        masks.append(span_mask(frames, mask_prob, mask_length, generator))
    return torch.stack(masks)


def masked_prediction_loss(logits: list[torch.Tensor], targets: list[torch.Tensor], mask: torch.Tensor,
                           valid: torch.Tensor, unmasked_weight: float = 0.0
                           ) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over codebooks of the cross-entropy on masked (and, weighted, unmasked) valid frames."""
    total = logits[0].new_zeros(())
    logs: dict[str, float] = {}
    masked = mask & valid
    unmasked = ~mask & valid
    for j, (logit, target) in enumerate(zip(logits, targets)):
        flat_logit = logit.float()
        ce = F.cross_entropy(flat_logit.transpose(1, 2), target, reduction="none")  # [B, N]
        loss = ce[masked].mean()
        if unmasked_weight > 0 and bool(unmasked.any()):
            loss = loss + unmasked_weight * ce[unmasked].mean()
        total = total + loss / len(logits)
        with torch.no_grad():
            logs[f"acc{j}"] = float((flat_logit.argmax(-1) == target)[masked].float().mean())
            logs[f"ce{j}"] = float(ce[masked].mean())
    return total, logs


class SemanticRecipe(Recipe):
    """The semantic model on random crops of corpus folders, predicting the k-means codes of masked frames."""

    def __init__(self, config: SemanticTrainingConfig, corpora: list[str | os.PathLike[str]], targets: TargetSet):
        config.validate()
        if not corpora:
            raise ManifestError("at least one corpus folder is needed")
        self.corpora = [str(c) for c in corpora]
        self.targets = targets
        self.config = replace(config, model=replace(config.model, target_sizes=targets.sizes))
        self.config.validate()
        self._eval_batch: torch.Tensor | None = None

    def build_models(self) -> dict[str, nn.Module]:
        return {MODEL_NAME: SemanticModel(self.config.model)}

    def build_dataset(self) -> Dataset:
        base = ClipDataset(self.corpora, "train", self.config.crop_seconds, self.config.model.sample_rate,
                           seed=self.config.train.seed)
        return GainJitter(base, self.config.gain_jitter_db, self.config.train.seed)

    def phases(self) -> list[Phase]:
        return [Phase("ssl", (MODEL_NAME,), self.loss)]

    def config_dict(self) -> dict[str, Any]:
        return {**to_dict(self.config), "corpora": self.corpora}

    def loss(self, ctx: StepContext) -> LossOutput:
        wav = ctx.batch["wav"]
        targets = self.targets.assign(wav)
        frames = targets[0].shape[1]
        m = self.config.masking
        mask = batch_masks(ctx.batch["index"].cpu(), frames, ctx.step, self.config.train.seed, m.mask_prob,
                           m.mask_length).to(ctx.device)
        logits, valid = ctx.model(MODEL_NAME)(wav, mask=mask)
        loss, logs = masked_prediction_loss(logits, targets, mask, valid, m.unmasked_weight)
        logs["masked_fraction"] = float(mask.float().mean())
        return loss, logs

    def _validation_audio(self) -> torch.Tensor | None:
        if self._eval_batch is None:
            try:
                data = ClipDataset(self.corpora, "valid", self.config.crop_seconds, self.config.model.sample_rate,
                                   seed=EVAL_SEED)
            except ManifestError:
                return None
            count = min(len(data), self.config.eval_clips)
            self._eval_batch = torch.stack([data[i]["wav"] for i in range(count)])
        return self._eval_batch

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Masked-prediction loss and accuracy on fixed crops of the valid split (fixed masks)."""
        wav = self._validation_audio()
        if wav is None:
            return {}
        model = models[MODEL_NAME]
        device = next(model.parameters()).device
        wav = wav.to(device)
        targets = self.targets.assign(wav)
        m = self.config.masking
        mask = batch_masks(torch.arange(wav.shape[0]), targets[0].shape[1], 0, EVAL_SEED, m.mask_prob,
                           m.mask_length).to(device)
        logits, valid = model(wav, mask=mask)
        loss, logs = masked_prediction_loss(logits, targets, mask, valid)
        return {"loss": float(loss.detach()), **logs}


# ------------------------------------------------------------------------------------------- targets
def training_clips(corpora: list[str | os.PathLike[str]], limit: int, sample_rate: int):
    """Up to ``limit`` whole training clips, spread evenly over the training split (a generator of ``[T]``)."""
    data = ClipDataset([str(c) for c in corpora], "train", None, sample_rate)
    step = max(1, len(data) // limit)
    for index in list(range(0, len(data), step))[:limit]:
        yield data[index]["wav"]


def prepare_targets(config: SemanticTrainingConfig, corpora: list[str | os.PathLike[str]],
                    run_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> TargetSet:
    """The run's target codebooks: loaded from ``<run>/targets`` or fit there first (rank 0; others wait)."""
    folder = Path(run_dir) / TARGETS_DIR
    tcfg: TargetConfig = config.targets
    if not (folder / TARGETS_META).exists():
        if int(os.environ.get("RANK", "0")) == 0:
            teacher = None
            if "teacher" in tcfg.features:
                if not tcfg.teacher:
                    raise TargetError("iteration-1 targets need targets.teacher (a run or model folder)")
                teacher = load_encoder(tcfg.teacher, tcfg.teacher_layer)
            clips = training_clips(corpora, tcfg.fit_clips, config.model.sample_rate)
            fit_targets(tcfg, clips, teacher, tcfg.teacher, device).save(folder)
        else:
            deadline = time.monotonic() + 3 * 3600
            while not (folder / TARGETS_META).exists():
                if time.monotonic() > deadline:
                    raise TargetError(f"{folder}: rank 0 did not write the targets")
                time.sleep(5)
    targets = TargetSet.load(folder, load_encoder)
    if list(targets.names) != list(tcfg.features) or tuple(targets.sizes) != tuple(tcfg.clusters):
        raise TargetError(f"{folder}: holds targets {targets.names} {list(targets.sizes)}, but the config asks for "
                          f"{list(tcfg.features)} {list(tcfg.clusters)}; use a new run folder")
    return targets


def train_semantic(config: SemanticTrainingConfig, corpora: list[str | os.PathLike[str]],
                   run_dir: str | os.PathLike[str]) -> TrainResult:
    """Fit (or load) the run's targets, then train or resume the semantic model in ``run_dir``."""
    config.validate()
    for corpus in corpora:
        read_manifest(corpus)  # a clear error for a folder that is not a corpus
    device = "cuda" if config.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    targets = prepare_targets(config, corpora, run_dir, device)
    recipe = SemanticRecipe(config, corpora, targets)
    return Trainer(recipe, recipe.config.train, run_dir).fit()
