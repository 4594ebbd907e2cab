"""Locked-audio text tuning: retrain MuLan's text projection against the fixed audio embeddings of a corpus.

The audio tower and the quantiser are not touched, so audio embeddings, audio tokens, token stores and every
generation stage trained on those tokens stay valid (:meth:`MuLan.token_fingerprint` does not change); only
text embeddings, and so text tokens, move. With the text backbone frozen, both sides are fixed vectors:

1. the audio embedding of every training clip (the inference path, cached in the corpus's ``.mulan`` folder);
2. the backbone features of a bounded set of text views per clip (its caption, fresh paraphrases of its
   labels in training phrasing, aspect lists and partial captions), computed once and cached beside them;
3. the projection is trained on those vectors with the symmetric contrastive loss (clips of one piece are
   positives of each other), which takes a minute on a CPU.

The regulariser is Gaussian noise on the backbone features (``feature_noise`` times each row's standard
deviation): it keeps the projection smooth around the sentence encoder's own geometry, so that phrasings and
synonyms never seen in training land near the seen ones instead of being over-fitted away. The report holds
retrieval before and after on valid-split clips with their captions, a fresh seen-phrasing paraphrase and a
held-out-phrasing paraphrase (the test split is never read).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiclm.config import to_dict
from musiclm.data.manifest import ClipRecord, read_manifest
from musiclm.errors import ConfigError, MusicLMError
from musiclm.fileio import atomic_path
from musiclm.mulan.api import MuLan
from musiclm.mulan.eval import PHRASINGS, phrasing_captions, retrieval_metrics
from musiclm.mulan.losses import contrastive_loss
from musiclm.mulan.recipe import aspects_view, has_text, paraphrase_view, partial_view, stable_key
from musiclm.mulan.search import CACHE_DIR, corpus_embeddings

log = logging.getLogger("musiclm.mulan")

Progress = Callable[[int, int], None] | None


@dataclass
class TextTuningConfig:
    """Settings of ``musiclm mulan tune-text`` (override with ``--set key=value``)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # linear warm-up, then cosine decay to zero
    feature_noise: float = 0.7  # std of the Gaussian noise on backbone features, relative to each row's std
    start: Literal["fresh", "current"] = "fresh"  # re-initialise the projection, or continue from the model's
    paraphrases: int = 6  # text views per clip: fresh captions of its labels in training phrasing ...
    aspect_views: int = 3  # ... shuffled aspect subsets ...
    partial_views: int = 3  # ... and partial captions (plus the manifest caption itself)
    max_clips: int = 0  # training clips used (0 = all; a seeded sample otherwise)
    eval_clips: int = 500  # valid-split clips in the before/after report (0 = none)
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be >= 1")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (the contrastive loss needs negatives)")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.warmup_fraction < 1:
            raise ConfigError("need lr > 0, weight_decay >= 0 and 0 <= warmup_fraction < 1")
        if self.feature_noise < 0:
            raise ConfigError("feature_noise must be >= 0")
        if self.start not in ("fresh", "current"):
            raise ConfigError("start must be 'fresh' or 'current'")
        if min(self.paraphrases, self.aspect_views, self.partial_views, self.max_clips, self.eval_clips) < 0:
            raise ConfigError("view counts, max_clips and eval_clips must be >= 0")


# ------------------------------------------------------------------------------------------------ views
def clip_text_views(record: ClipRecord, config: TextTuningConfig) -> list[str]:
    """The distinct, non-empty text views of one training clip (the same for every run with one config)."""
    texts = [record.caption or ""]
    texts += [paraphrase_view(record, v, config.seed) or "" for v in range(config.paraphrases)]
    texts += [aspects_view(record, v, config.seed) or "" for v in range(config.aspect_views)]
    texts += [partial_view(record, v, config.seed) or "" for v in range(config.partial_views)]
    return list(dict.fromkeys(t for t in texts if t.strip()))


def backbone_features(mulan: MuLan, texts: list[str], cache_folder: Path | None = None, batch: int = 64,
                      progress: Progress = None) -> torch.Tensor:
    """``[N, width]`` frozen-backbone features of ``texts`` (computed shortest first; cached in ``cache_folder``)."""
    tower = mulan.model.text
    key = hashlib.sha256("\n".join([tower.config.backbone, str(tower.config.max_tokens), *texts]).encode())
    path = None if cache_folder is None else cache_folder / f"text-features-{key.hexdigest()[:16]}.npy"
    if path is not None and path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return torch.from_numpy(cached.astype(np.float32))
        except (OSError, ValueError) as exc:
            log.warning("%s: unusable text-feature cache (%s); recomputing", path, exc)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), tower.backbone.config.hidden_size)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            out[idx] = tower.backbone_features([texts[i] for i in idx]).float().cpu()
            if progress is not None:
                progress(min(start + batch, len(order)), len(order))
    out = out.half().float()  # the cache's precision, so a cached and a fresh run train on the same numbers
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, out.numpy().astype(np.float16))
    return out


@dataclass
class TuningSet:
    """Fixed vectors to train on: clip audio embeddings, view features and which clip each view belongs to."""

    audio: torch.Tensor  # [clips, D] unit vectors
    groups: torch.Tensor  # [clips] piece ids (clips of one piece are positives of each other)
    features: torch.Tensor  # [views, width]
    offsets: torch.Tensor  # [clips] first view of each clip
    counts: torch.Tensor  # [clips] number of views of each clip
    skipped: int = 0  # clips left out (no text, or audio that could not be embedded)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` distinct clips and one random view of each (vectorised)."""
        clips = torch.randperm(len(self.audio), generator=generator)[:batch]
        pick = (torch.rand(len(clips), generator=generator) * self.counts[clips]).long()
        return clips, self.offsets[clips] + pick


def build_tuning_set(mulan: MuLan, corpora: list[str | os.PathLike[str]], config: TextTuningConfig,
                     progress: Callable[[str], Progress] | None = None) -> TuningSet:
    """Audio embeddings and text-view features of the training clips of ``corpora`` (both cached)."""
    bar = progress or (lambda label: None)
    audio_rows, groups, views, offsets, counts = [], [], [], [], []
    skipped = 0
    for corpus in corpora:
        everything = read_manifest(corpus, "train")
        records = [r for r in everything if has_text(r)]
        skipped += len(everything) - len(records)
        if config.max_clips and len(records) > config.max_clips:
            rng = np.random.default_rng([config.seed, stable_key(str(corpus))])
            records = [records[i] for i in sorted(rng.choice(len(records), config.max_clips, replace=False))]
        kept, emb = corpus_embeddings(mulan, corpus, records, progress=bar(f"embedding {Path(corpus).name}"))
        skipped += len(records) - len(kept)
        for record, row in zip(kept, emb):
            texts = clip_text_views(record, config)
            if not texts:
                skipped += 1
                continue
            offsets.append(len(views))
            counts.append(len(texts))
            views += texts
            audio_rows.append(row)
            groups.append(stable_key(record.piece_id or record.id))
    if len(audio_rows) < 2:
        raise MusicLMError(f"fewer than 2 usable training clips in {', '.join(map(str, corpora))}")
    features = backbone_features(mulan, views, Path(corpora[0]) / CACHE_DIR, progress=bar("text features"))
    return TuningSet(F.normalize(torch.stack(audio_rows).float(), dim=-1), torch.tensor(groups),
                     features, torch.tensor(offsets), torch.tensor(counts), skipped)


# ------------------------------------------------------------------------------------------------- eval
def phrasing_report(mulan: MuLan, corpora: list[str | os.PathLike[str]], clips: int, seed: int = 0) -> dict[str, Any]:
    """Text->audio recall@10 on up to ``clips`` valid-split clips: captions, seen and held-out phrasing."""
    from musiclm.mulan.recipe import clip_labels

    records: list[tuple[str | os.PathLike[str], ClipRecord]] = [
        (c, r) for c in corpora for r in read_manifest(c, "valid") if clip_labels(r) is not None and r.caption]
    records.sort(key=lambda item: item[1].id)
    if len(records) > clips:
        rng = np.random.default_rng(seed)
        records = [records[i] for i in sorted(rng.choice(len(records), clips, replace=False))]
    audio_rows, kept = [], []
    for corpus in corpora:
        mine = [r for c, r in records if c == corpus]
        if mine:
            got, emb = corpus_embeddings(mulan, corpus, mine)
            kept += got
            audio_rows.append(emb)
    if len(kept) < 2:
        return {}
    audio = torch.cat(audio_rows)
    out: dict[str, Any] = {"clips": len(kept)}
    texts = {"caption": [r.caption or "" for r in kept]}
    texts.update({f"{name}_phrasing": phrasing_captions(kept, split, seed) for name, split in PHRASINGS})
    for name, batch in texts.items():
        out[f"{name}_r10"] = round(retrieval_metrics(mulan.embed_text(batch) @ audio.t())["r10"], 4)
    out["gap_points"] = round(100 * (out["seen_phrasing_r10"] - out["held_out_phrasing_r10"]), 2)
    return out


# ---------------------------------------------------------------------------------------------- training
def _fresh(projection: nn.Module, seed: int) -> nn.Module:
    """A copy of ``projection`` re-initialised from ``seed`` (the caller's random state is left alone)."""
    out = copy.deepcopy(projection)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in out.modules():
            if hasattr(module, "reset_parameters") and module is not out:
                module.reset_parameters()
    return out


def train_projection(projection: nn.Module, logit_scale: torch.Tensor, data: TuningSet, config: TextTuningConfig,
                     max_scale: float, progress: Progress = None) -> tuple[nn.Module, torch.Tensor, list[float]]:
    """Train ``projection`` (and the temperature) on ``data``; returns them and the loss every 50 steps."""
    projection = projection.float().train().requires_grad_(True)
    scale = nn.Parameter(logit_scale.detach().float().clone())
    decay = [p for p in projection.parameters() if p.ndim >= 2]
    other = [p for p in projection.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": [*other, scale], "weight_decay": 0.0}], lr=config.lr)
    warmup = max(1, int(config.warmup_fraction * config.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.batch_size, len(data.audio))
    losses: list[float] = []
    with torch.random.fork_rng():  # dropout draws from the global generator: seed it without disturbing callers
        torch.manual_seed(config.seed)
        _train_steps(projection, scale, opt, sched, data, config, batch, generator, max_scale, losses, progress)
    return projection.eval().requires_grad_(False), scale.detach(), losses


def _train_steps(projection: nn.Module, scale: nn.Parameter, opt: torch.optim.Optimizer, sched: Any,
                 data: TuningSet, config: TextTuningConfig, batch: int, generator: torch.Generator,
                 max_scale: float, losses: list[float], progress: Progress) -> None:
    for step in range(config.steps):
        clips, views = data.sample(batch, generator)
        feats = data.features[views]
        if config.feature_noise:
            noise = torch.randn(feats.shape, generator=generator)
            feats = feats + config.feature_noise * feats.std(-1, keepdim=True) * noise
        text = F.normalize(projection(feats), dim=-1)
        loss, _ = contrastive_loss(data.audio[clips], text, scale.exp().clamp(max=max_scale),
                                   groups=data.groups[clips], gather=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == config.steps - 1:
            losses.append(round(float(loss.detach()), 4))
        if progress is not None:
            progress(step + 1, config.steps)


def with_projection(mulan: MuLan, projection: nn.Module, logit_scale: torch.Tensor) -> MuLan:
    """A copy of ``mulan`` with a new text projection and temperature (audio tower and quantiser unchanged)."""
    model = copy.deepcopy(mulan.model)
    model.text.projection.load_state_dict(projection.state_dict())
    with torch.no_grad():
        model.logit_scale.copy_(logit_scale)
    out = MuLan(model, mulan.quantizer, mulan.device)
    out.source = mulan.source
    return out


def tune_text(mulan: MuLan, corpora: list[str | os.PathLike[str]], config: TextTuningConfig | None = None,
              progress: Callable[[str], Progress] | None = None) -> tuple[MuLan, dict[str, Any]]:
    """Retrain the text side of ``mulan`` on ``corpora``; returns the new model and a report."""
    config = config or TextTuningConfig()
    config.validate()
    if not mulan.model.text.frozen:
        raise MusicLMError("text tuning needs a frozen text backbone (text.finetune_layers = 0)")
    bar = progress or (lambda label: None)
    corpora = [str(c) for c in corpora]
    before = phrasing_report(mulan, corpora, config.eval_clips, config.seed) if config.eval_clips else {}
    data = build_tuning_set(mulan, corpora, config, progress)
    start = mulan.model.text.projection
    projection = copy.deepcopy(start) if config.start == "current" else _fresh(start, config.seed)
    projection, scale, losses = train_projection(projection, mulan.model.logit_scale, data, config,
                                                 mulan.config.max_logit_scale, bar("training the text projection"))
    tuned = with_projection(mulan, projection, scale)
    after = phrasing_report(tuned, corpora, config.eval_clips, config.seed) if config.eval_clips else {}
    report = {"config": to_dict(config), "corpora": corpora, "clips": len(data.audio), "views": len(data.features),
              "skipped_clips": data.skipped, "token_fingerprint": tuned.token_fingerprint(),
              "fingerprint_before": mulan.fingerprint(), "fingerprint": tuned.fingerprint(),
              "temperature": round(tuned.temperature, 5), "loss": losses, "valid_before": before,
              "valid_after": after}
    return tuned, report
