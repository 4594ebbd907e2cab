"""An independent audio tagger: the classifier behind KLD (the role of the paper's LEAF/AudioSet classifier).

A small CNN on log-mel spectrograms of 10 s clips with five heads, trained on the corpus labels (never on MuLan's
weights or objective, so it judges generated audio independently of the conditioning model):

- ``genre``: softmax over the genres of the training split;
- ``instruments``: multi-label (sigmoid) over instrument families (:func:`musiclm.data.vocabulary.gm_family`;
  drum-channel parts are ``drums``);
- ``mood``: softmax over the mood words of the training split; a clip's 2-3 moods share its target mass;
- ``tempo``: softmax over the caption tempo bands (:data:`musiclm.data.vocabulary.TEMPO_BANDS`);
- ``mode``: softmax over ``major`` / ``minor`` (:func:`musiclm.analysis.mode_family`; other modes are unlabelled).

The vocabularies are built from the training split (:func:`build_vocab`) and stored in the model's config, so a
saved tagger names its classes. A model folder holds ``config.yaml`` (:class:`TaggerConfig`) and
``tagger.safetensors`` (fp32); loading never unpickles.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from musiclm import SAMPLE_RATE, __version__
from musiclm.analysis import mode_family
from musiclm.audio import load_audio, resample
from musiclm.config import load_yaml, save_yaml
from musiclm.errors import AudioError, ConfigError
from musiclm.features import LogMel
from musiclm.fileio import atomic_path
from musiclm.train.checkpoint import CheckpointError, load_state, read_safetensors

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "tagger.safetensors"
HEADS = ("genre", "instruments", "mood", "tempo", "mode")
MULTILABEL_HEADS = frozenset({"instruments"})
DRUMS = "drums"
MODES = ("major", "minor")

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


# ------------------------------------------------------------------------------------------------ labels
@dataclass
class TaggerVocab:
    """The class names of every head, in output order."""

    genre: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    mood: list[str] = field(default_factory=list)
    tempo: list[str] = field(default_factory=list)
    mode: list[str] = field(default_factory=list)

    def head(self, name: str) -> list[str]:
        if name not in HEADS:
            raise ConfigError(f"unknown tagger head {name!r}; heads: {', '.join(HEADS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {h: len(self.head(h)) for h in HEADS}

    def validate(self) -> None:
        for head in HEADS:
            names = self.head(head)
            if len(set(names)) != len(names):
                raise ConfigError(f"vocab.{head} has duplicate class names")


def _tempo_band_name(bpm: Any) -> str | None:
    from musiclm.data.captions import tempo_band

    try:
        value = float(bpm)
    except (TypeError, ValueError):
        return None
    return tempo_band(value).name if np.isfinite(value) and value > 0 else None


def clip_tags(labels: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The tagger's classes of one clip from its manifest ``labels`` (heads the labels do not cover are empty)."""
    from musiclm.data.vocabulary import gm_family

    labels = labels or {}
    tags: dict[str, list[str]] = {h: [] for h in HEADS}
    if labels.get("genre"):
        tags["genre"] = [str(labels["genre"])]
    parts = labels.get("parts")
    if isinstance(parts, list) and parts:
        families = {DRUMS if p.get("is_drum") else gm_family(int(p.get("program", 0))) for p in parts
                    if isinstance(p, Mapping)}
        tags["instruments"] = sorted(families)
    mood = labels.get("mood")
    if isinstance(mood, list):
        tags["mood"] = sorted({str(m) for m in mood if m})
    elif isinstance(mood, str) and mood:
        tags["mood"] = [mood]
    band = _tempo_band_name(labels.get("bpm"))
    if band is not None:
        tags["tempo"] = [band]
    family = mode_family(str(labels["mode"])) if labels.get("mode") else None
    if family is not None:
        tags["mode"] = [family]
    return tags


def build_vocab(label_sets: Iterable[Mapping[str, Any] | None]) -> TaggerVocab:
    """Class vocabularies from the labels of (training) clips: sorted names; tempo bands and modes in their
    natural order."""
    from musiclm.data.vocabulary import TEMPO_BANDS

    seen: dict[str, set[str]] = {h: set() for h in HEADS}
    for labels in label_sets:
        for head, names in clip_tags(labels).items():
            seen[head].update(names)
    return TaggerVocab(genre=sorted(seen["genre"]), instruments=sorted(seen["instruments"]),
                       mood=sorted(seen["mood"]), tempo=[b.name for b in TEMPO_BANDS if b.name in seen["tempo"]],
                       mode=[m for m in MODES if m in seen["mode"]])


def encode_tags(tags: Mapping[str, list[str]], vocab: TaggerVocab) -> dict[str, torch.Tensor]:
    """Targets of one clip: per head a ``[classes]`` float target and a 0/1 ``<head>_mask``.

    Softmax heads get the uniform distribution over the clip's known classes (one-hot for one class); the
    multi-label head gets a multi-hot vector. A head with no known class for the clip is masked out.
    """
    out: dict[str, torch.Tensor] = {}
    for head in HEADS:
        names = vocab.head(head)
        index = {n: i for i, n in enumerate(names)}
        target = torch.zeros(len(names))
        hits = [index[t] for t in tags.get(head, []) if t in index]
        if hits:
            target[hits] = 1.0
            if head not in MULTILABEL_HEADS:
                target /= target.sum()
        out[head] = target
        out[f"{head}_mask"] = torch.tensor(1.0 if hits else 0.0)
    return out


# ------------------------------------------------------------------------------------------------- model
@dataclass
class TaggerConfig:
    """Front end, CNN and heads of the tagger (its vocabularies included)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 960  # 25 frames/s at 24 kHz
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = 11_000.0
    clip_seconds: float = 10.0  # training crops and inference windows
    channels: tuple[int, ...] = (16, 32, 64, 128)  # one block each: two 3x3 conv-BN-ReLU, then a 2x2 max pool
    embed_dim: int = 128
    dropout: float = 0.2
    vocab: TaggerVocab = field(default_factory=TaggerVocab)

    def validate(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError("channels must be a non-empty list of positive integers")
        if self.n_mels < 2 ** len(self.channels):
            raise ConfigError(f"n_mels must be >= 2**len(channels) = {2 ** len(self.channels)}")
        if self.clip_seconds <= 0:
            raise ConfigError("clip_seconds must be positive")
        if self.min_samples > self.clip_samples:
            raise ConfigError("clip_seconds is too short for the CNN's pooling")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be within [0, 1)")
        if self.f_max is not None and not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError("need 0 <= f_min < f_max <= sample_rate / 2")
        self.vocab.validate()

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def min_samples(self) -> int:
        """The shortest input the pooling accepts (shorter audio is zero-padded)."""
        return (2 ** len(self.channels)) * self.hop_length


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class TaggerModel(nn.Module):
    """Waveforms ``[B, samples]`` -> per-head logits; :meth:`embed` gives the penultimate layer ``[B, embed_dim]``."""

    def __init__(self, config: TaggerConfig):
        super().__init__()
        config.validate()
        if not any(config.vocab.sizes().values()):
            raise ConfigError("the tagger's vocabulary is empty: build it from labelled clips (build_vocab)")
        self.config = config
        self.frontend = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels,
                               f_min=config.f_min, f_max=config.f_max)
        blocks, cin = [], 1
        for cout in config.channels:
            blocks.append(_conv_block(cin, cout))
            cin = cout
        self.cnn = nn.Sequential(*blocks)
        self.project = nn.Linear(2 * cin, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({h: nn.Linear(config.embed_dim, n) for h, n in config.vocab.sizes().items()
                                    if n > 0})

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Gain-normalised log-mel ``[B, 1, mels, frames]`` (the per-clip mean of the log-mel removed)."""
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.shape[-1] < self.config.min_samples:
            wav = F.pad(wav, (0, self.config.min_samples - wav.shape[-1]))
        mel = self.frontend(wav)
        return ((mel - mel.mean(dim=(1, 2), keepdim=True)) / 4.0).unsqueeze(1)

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: mean- and max-pooled CNN features, projected, ReLU."""
        features = self.cnn(self.log_mel(wav)).mean(dim=2)  # [B, C, frames]
        pooled = torch.cat([features.mean(dim=-1), features.amax(dim=-1)], dim=-1)
        return torch.relu(self.project(pooled))

    def logits_from_embedding(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.dropout(emb)
        return {h: head(emb) for h, head in self.heads.items()}

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.logits_from_embedding(self.embed(wav))


def head_kind(head: str) -> str:
    """``"multilabel"`` or ``"multiclass"``: the kind :mod:`musiclm.eval.divergence` needs for a head."""
    return "multilabel" if head in MULTILABEL_HEADS else "multiclass"


def probabilities(logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sigmoid for the multi-label head, softmax for the others."""
    return {h: (torch.sigmoid(x) if h in MULTILABEL_HEADS else torch.softmax(x, dim=-1)) for h, x in logits.items()}


def tagger_loss(logits: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> tuple[
        torch.Tensor, dict[str, float]]:
    """Sum over heads of the masked mean loss: soft-target cross-entropy (softmax heads), BCE (multi-label)."""
    total = next(iter(logits.values())).new_zeros(())
    logs: dict[str, float] = {}
    for head, x in logits.items():
        target, mask = batch[head].float(), batch[f"{head}_mask"].float()
        if head in MULTILABEL_HEADS:
            per_clip = F.binary_cross_entropy_with_logits(x.float(), target, reduction="none").mean(dim=-1)
        else:
            per_clip = -(target * torch.log_softmax(x.float(), dim=-1)).sum(dim=-1)
        loss = (per_clip * mask).sum() / mask.sum().clamp_min(1.0)
        total = total + loss
        logs[head] = float(loss.detach())
    return total, logs


# -------------------------------------------------------------------------------------------------- API
def _signals(wavs: AudioInput) -> list[np.ndarray]:
    if isinstance(wavs, np.ndarray | torch.Tensor):
        array = wavs.detach().cpu().numpy() if isinstance(wavs, torch.Tensor) else np.asarray(wavs)
        if array.ndim not in (1, 2):
            raise AudioError(f"expected [samples], [batch, samples] or a list of signals, got shape {array.shape}")
        return [array] if array.ndim == 1 else list(array)
    return [s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s) for s in wavs]


class Tagger:
    """Inference face of the tagger: class probabilities per head and clip embeddings, for any audio length.

    Audio longer than ``clip_seconds`` is cut into ``clip_seconds`` windows with 50 % overlap (the last aligned
    to the end); a clip's probabilities and embedding are the means over its windows.
    """

    def __init__(self, model: TaggerModel, device: str | torch.device = "cpu"):
        self.model = copy.deepcopy(model).cpu().float().eval().requires_grad_(False)
        self.config: TaggerConfig = self.model.config
        self.source: str | None = None
        self.device = torch.device("cpu")
        self.to(device)

    @property
    def vocab(self) -> TaggerVocab:
        return self.config.vocab

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def heads(self) -> list[str]:
        return list(self.model.heads.keys())

    @property
    def head_kinds(self) -> dict[str, str]:
        return {h: head_kind(h) for h in self.heads}

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def to(self, device: str | torch.device) -> Tagger:
        from musiclm.device import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model.to(self.device)
        return self

    def _windows(self, signal: np.ndarray) -> list[np.ndarray]:
        size = self.config.clip_samples
        if signal.size <= size:
            return [signal]
        hop = size // 2
        starts = list(range(0, signal.size - size + 1, hop))
        if starts[-1] != signal.size - size:
            starts.append(signal.size - size)
        return [signal[s : s + size] for s in starts]

    def _prepare(self, wavs: AudioInput, sr: int | None) -> list[np.ndarray]:
        rate = self.sample_rate if sr is None else int(sr)
        out = []
        for i, signal in enumerate(_signals(wavs)):
            signal = np.asarray(signal, dtype=np.float32)
            if signal.ndim != 1 or signal.size == 0:
                raise AudioError(f"signal {i}: expected non-empty mono audio, got shape {signal.shape}")
            if not np.isfinite(signal).all():
                raise AudioError(f"signal {i}: audio contains NaN or infinite samples")
            if rate != self.sample_rate:
                signal = resample(signal, rate, self.sample_rate)
            out.append(signal)
        return out

    @torch.no_grad()
    def _run(self, wavs: AudioInput, sr: int | None, batch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        signals = self._prepare(wavs, sr)
        refs: dict[int, list[tuple[int, np.ndarray]]] = {}
        for clip, signal in enumerate(signals):
            for window in self._windows(signal):
                refs.setdefault(window.size, []).append((clip, window))
        probs = {h: np.zeros((len(signals), n)) for h, n in self.config.vocab.sizes().items() if n > 0}
        emb = np.zeros((len(signals), self.embed_dim))
        counts = np.zeros(len(signals))
        for group in refs.values():
            for start in range(0, len(group), batch):
                chunk = group[start : start + batch]
                x = torch.from_numpy(np.stack([w for _, w in chunk])).to(self.device)
                e = self.model.embed(x)
                p = probabilities(self.model.logits_from_embedding(e))
                for row, (clip, _) in enumerate(chunk):
                    counts[clip] += 1
                    emb[clip] += e[row].double().cpu().numpy()
                    for head in probs:
                        probs[head][clip] += p[head][row].double().cpu().numpy()
        counts = np.maximum(counts, 1)[:, None]
        return {h: (v / counts).astype(np.float32) for h, v in probs.items()}, (emb / counts).astype(np.float32)

    def predict(self, wavs: AudioInput, sr: int | None = None, batch: int = 16) -> dict[str, np.ndarray]:
        """Per-head class probabilities ``{head: [N, classes]}`` (class names in :attr:`vocab`)."""
        return self._run(wavs, sr, batch)[0]

    def embed(self, wavs: AudioInput, sr: int | None = None, batch: int = 16) -> np.ndarray:
        """Clip embeddings ``[N, embed_dim]`` from the penultimate layer."""
        return self._run(wavs, sr, batch)[1]

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], batch: int = 16) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(paths), batch):
            wavs = [load_audio(p, self.sample_rate, allow_silent=True)[0] for p in paths[start : start + batch]]
            for head, value in self.predict(wavs, batch=batch).items():
                out.setdefault(head, []).append(value)
        return {h: np.concatenate(v) for h, v in out.items()}

    def top_tags(self, probs: Mapping[str, np.ndarray], index: int = 0, top: int = 3) -> dict[str, list[tuple[str,
                                                                                                            float]]]:
        """The ``top`` most probable classes per head of clip ``index`` (multi-label: those above 0.5 first)."""
        out = {}
        for head, p in probs.items():
            names = self.vocab.head(head)
            order = np.argsort(-p[index])[:top]
            out[head] = [(names[i], float(p[index, i])) for i in order]
        return out

    # ------------------------------------------------------------------------------------------------ I/O
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and ``tagger.safetensors`` (fp32) into ``folder``, atomically file by file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"musiclm_version": __version__, "format": "musiclm-tagger"})
        save_yaml(self.config, folder / CONFIG_FILE)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> Tagger:
        """Load a folder written by :meth:`save` (or ``musiclm tagger export``)."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).exists() or not (folder / WEIGHTS_FILE).exists():
            raise CheckpointError(f"{folder}: not a tagger model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        config = load_yaml(TaggerConfig, folder / CONFIG_FILE)
        model = TaggerModel(config)
        tensors = read_safetensors(folder / WEIGHTS_FILE)
        load_state(model, tensors, folder / WEIGHTS_FILE)
        out = cls(model, device)
        out.source = str(folder)
        return out

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], prefer_ema: bool = True,
                 device: str | torch.device = "cpu") -> Tagger:
        """The latest checkpoint of a ``musiclm tagger train`` run (EMA weights when present and preferred)."""
        from musiclm.eval.tagger_recipe import run_config
        from musiclm.train.checkpoint import CheckpointManager, load_weights

        config = run_config(run_dir).model
        checkpoint = CheckpointManager(run_dir).latest()
        if checkpoint is None:
            raise CheckpointError(f"{run_dir}: no complete checkpoint")
        model = TaggerModel(config)
        ema = checkpoint.path / "ema-tagger.safetensors"
        path = ema if prefer_ema and ema.exists() else checkpoint.path / "model-tagger.safetensors"
        load_weights(model, path)
        out = cls(model, device)
        out.source = str(path)
        return out


