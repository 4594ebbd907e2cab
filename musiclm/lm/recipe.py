"""Training a generation stage on the engine: next-token prediction over windows of a token store.

The stage's token spaces come from the store (its codec, semantic tokenizer and MuLan quantiser), so a
stage can only be trained on, and later chained with, tokens of the models it was built for: the store's
fingerprint is recorded in the stage config and checked when the pipeline assembles the three stages.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from musiclm.config import to_dict
from musiclm.lm.data import StageDataError, StageDataset, collate_sequences, token_spaces_of
from musiclm.lm.layout import IGNORE
from musiclm.lm.stage_config import CONTOUR_STAGES, StageTrainingConfig
from musiclm.lm.transformer import Transformer
from musiclm.train.engine import Phase, Recipe, StepContext, Trainer, TrainResult

log = logging.getLogger("musiclm.lm")
EVAL_SEED = 9_001


def open_store(folder: str | os.PathLike[str]) -> Any:
    from musiclm.tokenstore import TokenStore

    return TokenStore.open(folder)


def store_info_dict(store: Any) -> dict[str, Any]:
    """A token store's ``store.json`` content as a plain dict."""
    info = store.info
    if isinstance(info, dict):
        return info
    return info.to_dict() if hasattr(info, "to_dict") else to_dict(info)


def store_fingerprint(info: dict[str, Any]) -> str:
    """One string naming the three models whose tokens a store holds (read back by
    :func:`musiclm.lm.stage.tokens_used`, in the order of ``STORE_COMPONENTS``)."""
    from musiclm.lm.stage import STORE_COMPONENTS

    return "/".join(str((info.get(name) or {}).get("fingerprint", "")) for name in STORE_COMPONENTS)


def melody_slots(window_seconds: float, melody_window: float, melody_hop: float) -> int:
    """Melody windows that fit in one semantic window (at least one): 3 for 10 s with 4 s windows, 3 s hop."""
    return max(1, int(math.floor((window_seconds - melody_window) / melody_hop + 1e-9)) + 1)


def configure_for_store(config: StageTrainingConfig, info: dict[str, Any]) -> StageTrainingConfig:
    """``config`` with the token spaces and fingerprint of a store (fine levels kept as configured).

    A semantic stage trained on a store that holds melody tokens takes them as conditioning (on the share of
    windows ``melody_dropout`` leaves them in), as many melody windows as fit in its own window.
    """
    spaces = token_spaces_of(info, fine_levels=config.model.tokens.fine_levels)
    melody = info.get("melody") or None
    melody_print = ""
    if config.model.stage == "semantic" and melody:
        try:
            hop, span = float(melody["hop_seconds"]), float(melody["window_seconds"])
            spaces = replace(spaces, melody_levels=int(melody["num_quantizers"]),
                             melody_codebook=int(melody["codebook_size"]), melody_hop_seconds=hop,
                             melody_slots=melody_slots(config.model.window_seconds, span, hop))
        except (KeyError, TypeError, ValueError) as exc:
            raise StageDataError(f"the token store's melody description lacks {exc}") from exc
        melody_print = str(melody.get("fingerprint", ""))
    contour_print = ""
    if config.model.contour_conditioning:
        contour = info.get("contour") or None
        if config.model.stage not in CONTOUR_STAGES:
            raise StageDataError(f"only the {' and '.join(CONTOUR_STAGES)} stages take a pitch contour "
                                 f"(model.contour_conditioning)")
        if not contour:
            raise StageDataError("model.contour_conditioning needs a token store with pitch contours "
                                 "(`musiclm tokenize ... --contour`)")
        try:
            spaces = replace(spaces, contour_values=int(contour["values"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StageDataError(f"the token store's contour description lacks {exc}") from exc
        contour_print = str(contour.get("fingerprint", ""))
    model = replace(config.model, tokens=spaces, store_fingerprint=store_fingerprint(info),
                    melody_fingerprint=melody_print, contour_fingerprint=contour_print).resolved()
    out = replace(config, model=model)
    out.validate()
    return out


def initialise_from(model: Transformer, config: Any, folder: str | os.PathLike[str]) -> None:
    """Copy the weights of the exported stage in ``folder`` into ``model`` (a fresh run of the same stage and
    token-space sizes, e.g. fine-tuning the stages on a store remade with a retrained MuLan). A run that resumes
    from its own checkpoint overwrites these weights, so only a fresh run starts from them."""
    from musiclm.lm.stage import StageError, StageLM

    source = StageLM.from_pretrained(folder, stage=config.stage)
    if source.layout.vocab_size != config.layout().vocab_size:
        raise StageDataError(f"init_from {folder}: its token spaces differ from this run's "
                             f"(vocabulary {source.layout.vocab_size} vs {config.layout().vocab_size}); it can only "
                             f"start a run of the same preset on a store with the same codebook sizes")
    state = source.model.state_dict()
    if model.aligned_embedding is not None and source.model.aligned_embedding is None:
        state["aligned_embedding.weight"] = model.aligned_embedding.weight.detach().clone()  # a new condition: 0
        log.info("the pitch-contour embedding starts at zero (%s has none)", folder)
    if model.modulation is not None and source.model.modulation is None:
        for name, value in model.modulation.state_dict().items():  # a new path, the identity at first
            state[f"modulation.{name}"] = value.detach().clone()
        log.info("the MuLan modulation starts as the identity (%s has none)", folder)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise StageError(f"init_from {folder}: {exc}") from exc
    log.info("initialised the %s stage from %s", config.stage, folder)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)


def target_bounds(layout: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """For every vocabulary id, ``[lo, hi)`` of the target segment (level) it belongs to; the whole vocabulary
    for ids that are no target."""
    size = layout.vocab.size
    lo = torch.zeros(size, dtype=torch.long)
    hi = torch.full((size,), size, dtype=torch.long)
    for name in layout.target_segments:
        start, stop = layout.vocab.range(name)
        lo[start:stop], hi[start:stop] = start, stop
    return lo, hi


def level_restricted(logits: torch.Tensor, labels: torch.Tensor,
                     bounds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``logits`` with every id outside the labelled token's level range at -inf: a softmax per level, the
    distribution sampling draws each level's token from (unlabelled positions are left as they are)."""
    lo, hi = (b.to(labels.device) for b in bounds)
    index = labels.clamp(min=0)
    ids = torch.arange(logits.shape[-1], device=logits.device)
    allowed = (ids >= lo[index].unsqueeze(-1)) & (ids < hi[index].unsqueeze(-1))
    allowed |= (labels == IGNORE).unsqueeze(-1)
    return logits.masked_fill(~allowed, float("-inf"))


class StageRecipe(Recipe):
    """One phase: cross-entropy of the stage Transformer on its windows."""

    def __init__(self, config: StageTrainingConfig, store_dir: str | os.PathLike[str]):
        self.store_dir = str(store_dir)
        store = open_store(store_dir)
        self.config = configure_for_store(config, store_info_dict(store))
        self.store = store
        self._eval_batches: list[dict[str, torch.Tensor]] | None = None
        self.bounds = target_bounds(self.config.model.layout()) if self.config.level_softmax else None

    def build_models(self) -> dict[str, nn.Module]:
        model = Transformer(self.config.model.transformer)
        if self.config.init_from and not self.resuming:  # a resumed run loads its checkpoint instead
            initialise_from(model, self.config.model, self.config.init_from)
        return {"lm": model}

    def build_dataset(self) -> Dataset:
        return StageDataset(self.store.select("train"), self.config.model, seed=self.config.train.seed)

    def collate(self, items: list[Any]) -> Any:
        return collate_sequences(items)

    def phases(self) -> list[Phase]:
        return [Phase("lm", ("lm",), self.loss, param_groups=self.param_groups)]

    def param_groups(self, models: dict[str, nn.Module]) -> list[dict[str, Any]]:
        """No weight decay on norms, biases and embeddings."""
        decay, no_decay = [], []
        for name, param in models["lm"].named_parameters():
            if not param.requires_grad:
                continue
            (decay if param.ndim >= 2 and "embed" not in name else no_decay).append(param)
        wd = self.config.train.optimizer_for("lm").weight_decay
        return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        logits = ctx.model("lm")(ctx.batch["tokens"], aligned=ctx.batch.get("aligned"))
        if self.bounds is not None:
            logits = level_restricted(logits, ctx.batch["labels"], self.bounds)
        return sequence_loss(logits, ctx.batch["labels"]), {}  # the engine logs the loss itself

    def config_dict(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "store": self.store_dir}

    def _eval_data(self) -> list[dict[str, torch.Tensor]]:
        if self._eval_batches is None:
            try:
                valid = self.store.select("valid")
                dataset = StageDataset(valid, self.config.model, seed=EVAL_SEED, condition_dropout=False)
            except StageDataError:
                self._eval_batches = []
                return self._eval_batches
            size = self.config.train.batch_size
            count = min(len(dataset), self.config.eval_batches * size)
            picks = np.random.default_rng(EVAL_SEED).permutation(len(dataset))[:count]
            items = [dataset[int(i)] for i in picks]
            self._eval_batches = [collate_sequences(items[i:i + size]) for i in range(0, len(items), size)]
        return self._eval_batches

    @torch.no_grad()
    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Validation loss, perplexity and top-1 accuracy per target level on fixed windows."""
        batches = self._eval_data()
        if not batches:
            return {}
        return evaluate_stage(models["lm"], batches, self.config.model.layout().levels, self.bounds)


@torch.no_grad()
def evaluate_stage(model: nn.Module, batches: list[dict[str, torch.Tensor]], levels: int,
                   bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """Token-weighted loss and accuracy (overall and per level) of ``model`` on ``batches``; with ``bounds``
    (:func:`target_bounds`) both are taken within each target's level range, as sampled."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, total = 0.0, 0
    correct = torch.zeros(levels)
    counts = torch.zeros(levels)
    try:
        for batch in batches:
            tokens, labels = batch["tokens"].to(device), batch["labels"].to(device)
            aligned = batch.get("aligned")
            logits = model(tokens, aligned=None if aligned is None else aligned.to(device))
            if bounds is not None:
                logits = level_restricted(logits, labels, bounds)
            mask = labels != IGNORE
            n = int(mask.sum())
            if n == 0:
                continue
            total_loss += float(sequence_loss(logits, labels)) * n
            total += n
            hits = (logits.argmax(-1) == labels) & mask
            # level of each labelled position: its index among the labelled positions of its row, mod levels
            order = torch.cumsum(mask.long(), dim=1) - 1
            level = torch.where(mask, order % levels, torch.zeros_like(order))
            for q in range(levels):
                sel = mask & (level == q)
                counts[q] += float(sel.sum())
                correct[q] += float((hits & sel).sum())
    finally:
        model.train(was_training)
    if total == 0:
        return {}
    loss = total_loss / total
    out = {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
           "accuracy": float(correct.sum() / counts.sum().clamp(min=1))}
    if levels > 1:
        out.update({f"accuracy_level{q + 1}": float(correct[q] / max(counts[q], 1)) for q in range(levels)})
    return out


def train_stage(config: StageTrainingConfig, stores: list[str | os.PathLike[str]],
                run_dir: str | os.PathLike[str]) -> TrainResult:
    """Train (or resume) one stage on a token store; checkpoints go to ``run_dir``."""
    if len(stores) != 1:
        raise StageDataError("a stage trains on exactly one token store (`musiclm tokenize` can merge corpora)")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Trainer(StageRecipe(config, stores[0]), config.train, run_dir).fit()
