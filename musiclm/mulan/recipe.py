"""Training MuLan on the engine: augmented audio crops paired with varied text views of the same clip.

Every item is a pure function of ``(seed, epoch, index)`` (exact resume): a random crop of a corpus clip
with gain, a smooth random EQ and noise, paired with one text view of the clip: its manifest caption, a
fresh paraphrase of its labels (:func:`musiclm.data.captions.caption_clip`, training phrasings only), a
shuffled subset of its aspect list, or some sentences of a caption. Each view has ``variants`` fixed
versions per clip, so a frozen text backbone sees a bounded set of strings and caches their features.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from musiclm.config import to_dict
from musiclm.data.captions import caption_clip, split_sentences
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ClipRecord
from musiclm.data.piece import ClipLabels
from musiclm.mulan.config import AugmentConfig, MuLanTrainingConfig, TextViewConfig
from musiclm.mulan.losses import contrastive_loss
from musiclm.mulan.model import MuLanModel
from musiclm.train.engine import Phase, Recipe, StepContext, Trainer, TrainResult

log = logging.getLogger("musiclm.mulan")

VIEWS = ("caption", "paraphrase", "aspects", "partial")


def stable_key(text: str) -> int:
    """A small stable integer for a string (clip or piece id): seeds and group ids."""
    return zlib.crc32(text.encode("utf-8"))


def clip_labels(record: ClipRecord) -> ClipLabels | None:
    """The structured labels of a synthetic clip, or None when the record has none usable."""
    labels = record.labels or {}
    if "genre" not in labels or "parts" not in labels:
        return None
    try:
        return ClipLabels.from_dict(labels)
    except (TypeError, KeyError, ValueError):
        return None


def paraphrase_view(record: ClipRecord, variant: int, seed: int, split: str = "train") -> str | None:
    """Variant ``variant`` of a fresh caption of the record's labels, phrased as for ``split``."""
    labels = clip_labels(record)
    if labels is None:
        return None
    rng = np.random.default_rng([seed, stable_key(record.id), 1, variant, 0 if split == "train" else 1])
    return caption_clip(labels, rng, split)[0]


def aspects_view(record: ClipRecord, variant: int, seed: int) -> str | None:
    """A shuffled subset (at least two, when there are two) of the record's aspects, comma-joined."""
    aspects = [a for a in record.aspects if a.strip()]
    if not aspects:
        return None
    rng = np.random.default_rng([seed, stable_key(record.id), 2, variant])
    count = int(rng.integers(min(2, len(aspects)), len(aspects) + 1))
    order = rng.permutation(len(aspects))[:count]
    return ", ".join(aspects[i] for i in order)


def partial_view(record: ClipRecord, variant: int, seed: int) -> str | None:
    """Some sentences (in order, not all) of the caption (even variants) or of a paraphrase (odd ones)."""
    base = record.caption if variant % 2 == 0 or clip_labels(record) is None else paraphrase_view(
        record, variant, seed)
    if not base:
        return None
    sentences = split_sentences(base)
    if len(sentences) < 2:
        return base
    rng = np.random.default_rng([seed, stable_key(record.id), 3, variant])
    count = int(rng.integers(1, len(sentences)))
    keep = sorted(rng.choice(len(sentences), size=count, replace=False))
    return " ".join(sentences[i] for i in keep)


def text_view(record: ClipRecord, rng: np.random.Generator, config: TextViewConfig, seed: int) -> str:
    """One text view of a clip, drawn with ``rng``; falls back through the views that a record lacks."""
    weights = np.array([config.caption, config.paraphrase, config.aspects, config.partial], dtype=float)
    kind = int(rng.choice(len(VIEWS), p=weights / weights.sum()))
    variant = int(rng.integers(config.variants))
    makers = {
        "caption": lambda: record.caption or None,
        "paraphrase": lambda: paraphrase_view(record, variant, seed),
        "aspects": lambda: aspects_view(record, variant, seed),
        "partial": lambda: partial_view(record, variant, seed),
    }
    for name in (VIEWS[kind], *VIEWS):
        text = makers[name]()
        if text and text.strip():
            return text
    return ""


def has_text(record: ClipRecord) -> bool:
    return bool((record.caption or "").strip() or record.aspects or clip_labels(record) is not None)


# --------------------------------------------------------------------------------------------- audio
def random_eq(wav: np.ndarray, rng: np.random.Generator, sample_rate: int, std_db: float) -> np.ndarray:
    """Filter with a smooth random gain curve (anchors every octave from 40 Hz, in dB, interpolated)."""
    anchors = 40.0 * 2.0 ** np.arange(0, int(np.log2(sample_rate / 2 / 40.0)) + 1)
    gains_db = np.clip(rng.normal(0.0, std_db, len(anchors)), -2 * std_db, 2 * std_db)
    spectrum = np.fft.rfft(wav)
    freqs = np.fft.rfftfreq(len(wav), 1.0 / sample_rate)
    curve_db = np.interp(np.log2(np.maximum(freqs, 1.0)), np.log2(anchors), gains_db)
    return np.fft.irfft(spectrum * 10.0 ** (curve_db / 20.0), n=len(wav)).astype(np.float32)


def add_noise(wav: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """Add white or pink noise at ``snr_db`` below the signal's RMS."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    if rms <= 0:
        return wav
    noise = rng.standard_normal(len(wav))
    if rng.random() < 0.5:  # pink: 1/sqrt(f) amplitude
        spectrum = np.fft.rfft(noise)
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
        noise = np.fft.irfft(spectrum, n=len(wav))
    noise *= rms * 10.0 ** (-snr_db / 20.0) / max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    return (wav + noise).astype(np.float32)


def augment_audio(wav: np.ndarray, rng: np.random.Generator, config: AugmentConfig, sample_rate: int) -> np.ndarray:
    """Mild, label-preserving changes: random EQ, noise and gain."""
    out = wav.astype(np.float32, copy=True)
    if config.eq_db > 0 and rng.random() < config.eq_prob:
        out = random_eq(out, rng, sample_rate, config.eq_db)
    if rng.random() < config.noise_prob:
        out = add_noise(out, rng, float(rng.uniform(*config.snr_db)))
    if config.gain_db > 0:
        out = out * np.float32(10.0 ** (rng.uniform(-config.gain_db, config.gain_db) / 20.0))
    return out


class MuLanClips(Dataset):
    """Augmented crops of corpus clips with one text view each; item ``i`` depends only on (seed, epoch, i)."""

    def __init__(self, corpora: list[str | os.PathLike[str]], config: MuLanTrainingConfig, split: str = "train",
                 augment: bool = True):
        self.clips = ClipDataset(list(corpora), split, crop_seconds=config.crop_seconds,
                                 sample_rate=config.model.audio.sample_rate, seed=config.train.seed)
        kept = [(root, record) for root, record in self.clips.items if has_text(record)]
        if len(kept) < len(self.clips.items):
            log.warning("%d clips without caption, aspects or labels are left out of MuLan training",
                        len(self.clips.items) - len(kept))
        self.clips.items = kept
        self.config, self.augment, self.seed = config, augment, config.train.seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.clips.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def record(self, index: int) -> ClipRecord:
        return self.clips.items[index][1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        record = self.record(index)
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        wav = item["wav"].numpy()
        if self.augment:
            wav = augment_audio(wav, rng, self.config.augment, self.config.model.audio.sample_rate)
        text = text_view(record, rng, self.config.text_views, self.seed)
        group = stable_key(record.piece_id or record.id) if self.config.same_piece_positives else stable_key(record.id)
        return {"wav": torch.from_numpy(wav), "text": text, "group": group, "index": index}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"wav": torch.stack([i["wav"] for i in items]), "text": [i["text"] for i in items],
            "group": torch.tensor([i["group"] for i in items], dtype=torch.long),
            "index": torch.tensor([i["index"] for i in items], dtype=torch.long)}


class MuLanRecipe(Recipe):
    """One phase: the symmetric contrastive loss over both towers and the temperature."""

    def __init__(self, config: MuLanTrainingConfig, corpora: list[str | os.PathLike[str]]):
        self.config = config
        self.corpora = [str(c) for c in corpora]
        self._eval_set: tuple[list[torch.Tensor], list[str], list[str]] | None = None

    def build_models(self) -> dict[str, nn.Module]:
        return {"mulan": MuLanModel(self.config.model)}

    def build_dataset(self) -> Dataset:
        return MuLanClips(self.corpora, self.config, "train")

    def collate(self, items: list[Any]) -> Any:
        return collate(items)

    def phases(self) -> list[Phase]:
        return [Phase("contrastive", ("mulan",), self.loss, param_groups=self.param_groups)]

    def param_groups(self, models: dict[str, nn.Module]) -> list[dict[str, Any]]:
        """No weight decay on 1-D tensors; fine-tuned text-backbone layers at ``text_lr_scale`` of the rate."""
        opt = self.config.train.optimizer_for("contrastive")
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in models["mulan"].named_parameters():
            if param.requires_grad:
                groups.setdefault((name.startswith("text.backbone."), param.ndim >= 2), []).append(param)
        out = []
        for (backbone, decay), params in sorted(groups.items()):
            group: dict[str, Any] = {"params": params, "weight_decay": opt.weight_decay if decay else 0.0}
            if backbone:
                group["lr"] = opt.lr * self.config.text_lr_scale
            out.append(group)
        return out

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        audio, text, scale = ctx.model("mulan")(ctx.batch["wav"], ctx.batch["text"])
        return contrastive_loss(audio, text, scale, groups=ctx.batch["group"])

    def config_dict(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "corpora": self.corpora}

    def _eval_data(self) -> tuple[list[torch.Tensor], list[str], list[str]]:
        if self._eval_set is None:
            from musiclm.audio import load_audio
            from musiclm.data.manifest import read_manifest

            records = [(root, r) for root in self.corpora for r in read_manifest(root, "valid")
                       if (r.caption or "").strip()]
            records = sorted(records, key=lambda item: item[1].id)[: self.config.eval_clips]
            wavs = [torch.from_numpy(load_audio(Path(root) / r.path, self.config.model.audio.sample_rate,
                                                allow_silent=True)[0]) for root, r in records]
            self._eval_set = (wavs, [r.caption or "" for _, r in records],
                              [(r.labels or {}).get("genre", "") for _, r in records])
        return self._eval_set

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Retrieval on valid-split clips (manifest captions) and zero-shot genre accuracy."""
        if self.config.eval_clips == 0:
            return {}
        from musiclm.mulan.eval import retrieval_metrics, zero_shot_accuracy
        from musiclm.mulan.zeroshot import genre_prompts

        wavs, captions, genres = self._eval_data()
        if len(wavs) < 2:
            return {}
        model: MuLanModel = models["mulan"]
        audio = model.embed_audio_long(wavs).cpu()
        text = torch.cat([model.encode_text(captions[i : i + 64]) for i in range(0, len(captions), 64)]).cpu()
        metrics = retrieval_metrics(text @ audio.t())
        out = {f"t2a_{k}": v for k, v in metrics.items()}
        out.update({f"a2t_{k}": v for k, v in retrieval_metrics(audio @ text.t()).items()})
        if any(genres):
            classes, prompts = genre_prompts(sorted({g for g in genres if g}))
            out["zero_shot_genre"] = zero_shot_accuracy(model, audio, genres, classes, prompts)
        return out


def train_mulan(config: MuLanTrainingConfig, corpora: list[str | os.PathLike[str]],
                run_dir: str | os.PathLike[str]) -> TrainResult:
    """Train (or resume) MuLan on corpus folders; checkpoints go to ``run_dir``."""
    return Trainer(MuLanRecipe(config, corpora), config.train, run_dir).fit()
