"""Discrete targets of masked prediction: k-means codebooks on 25 Hz features.

Iteration 0 clusters hand-made features of each 40 ms frame (one codebook per group):

- ``chroma``: 12 pitch-class energies (STFT of 4096 points), normalised to unit max: harmony and melody;
- ``onset``: positive log-mel flux in 4 bands at each of the frame's 4 mel hops (16 values): rhythm;
- ``mfcc``: 20 cepstral coefficients (DCT-II of the log-mel): timbre and loudness;
- ``logmel``: the mean 128-band log-mel of the frame (also baseline (a) of the evaluation).

Iteration 1 clusters ``teacher``: the features of layer ``teacher_layer`` of an iteration-0 model.

Each codebook stores the mean and standard deviation its features were standardised with and its centroids;
:class:`TargetSet` computes the codes of a batch of crops on the fly (on the training device), so targets
always line up with the crop the model sees.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import librosa
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn

from musiclm import SAMPLE_RATE
from musiclm.errors import MusicLMError
from musiclm.features import LogMel, Spectrogram
from musiclm.fileio import atomic_path, atomic_write_text
from musiclm.semantic.config import TargetConfig
from musiclm.semantic.model import SemanticModel, frames_for
from musiclm.train.checkpoint import read_safetensors

log = logging.getLogger("musiclm.semantic")

FRAME_HOP = 960
SUB_HOP = 240
SUBFRAMES = FRAME_HOP // SUB_HOP
TARGETS_DIR = "targets"
TARGETS_WEIGHTS = "targets.safetensors"
TARGETS_META = "targets.yaml"


class TargetError(MusicLMError):
    """Targets are missing, inconsistent or cannot be fit."""


def pad_to_frames(wav: torch.Tensor, frame_hop: int = FRAME_HOP) -> tuple[torch.Tensor, int]:
    """Zero-pad ``[B, T]`` audio to ``ceil(T / hop) * hop`` samples; returns it and the frame count."""
    frames = frames_for(wav.shape[-1], frame_hop)
    return F.pad(wav.float(), (0, frames * frame_hop - wav.shape[-1])), frames


class FrameFeatures(nn.Module):
    """Hand-made features of every 40 ms frame of 24 kHz audio: ``[B, T] -> [B, N, D]``, N = ceil(T / 960)."""

    DIMS: ClassVar[dict[str, int]] = {"chroma": 12, "onset": 4 * SUBFRAMES, "mfcc": 20, "logmel": 128}

    def __init__(self, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        if sample_rate != SAMPLE_RATE:
            raise TargetError(f"frame features are defined at {SAMPLE_RATE} Hz, got {sample_rate}")
        self.logmel = LogMel(sample_rate, n_fft=2048, hop_length=SUB_HOP, n_mels=128, f_min=30.0, f_max=11_000.0)
        self.chroma_spec = Spectrogram(n_fft=4096, hop_length=SUB_HOP, power=2.0)
        basis = librosa.filters.chroma(sr=sample_rate, n_fft=4096)
        self.register_buffer("chroma_basis", torch.from_numpy(basis).float(), persistent=False)
        dct = torch.from_numpy(_dct_matrix(128, self.DIMS["mfcc"])).float()
        self.register_buffer("dct", dct, persistent=False)
        bands = torch.zeros(4, 128)
        for band, (lo, hi) in enumerate(((0, 16), (16, 48), (48, 88), (88, 128))):
            bands[band, lo:hi] = 1.0 / (hi - lo)
        self.register_buffer("bands", bands, persistent=False)

    def forward(self, wav: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        wav, frames = pad_to_frames(wav)
        names = list(names)
        out: dict[str, torch.Tensor] = {}
        sub = frames * SUBFRAMES
        if {"logmel", "mfcc", "onset"} & set(names):
            mel = self.logmel(wav)[..., :sub]  # [B, 128, 4N]
            if "logmel" in names:
                out["logmel"] = _pool(mel, frames)
            if "mfcc" in names:
                out["mfcc"] = _pool(torch.einsum("km,bmt->bkt", self.dct, mel), frames)
            if "onset" in names:
                flux = torch.relu(torch.diff(mel, dim=-1, prepend=mel[..., :1]))
                banded = torch.einsum("km,bmt->bkt", self.bands, flux)  # [B, 4, 4N]
                per_frame = torch.log1p(banded).view(wav.shape[0], 4, frames, SUBFRAMES)
                out["onset"] = per_frame.permute(0, 2, 1, 3).reshape(wav.shape[0], frames, 4 * SUBFRAMES)
        if "chroma" in names:
            power = self.chroma_spec(wav)[..., :sub]
            chroma = torch.matmul(self.chroma_basis, power)
            chroma = chroma.view(wav.shape[0], 12, frames, SUBFRAMES).mean(-1)
            peak = chroma.amax(dim=1, keepdim=True).clamp_min(1e-2)  # silence stays near zero
            out["chroma"] = (chroma / peak).transpose(1, 2)
        unknown = [n for n in names if n not in out]
        if unknown:
            raise TargetError(f"unknown frame features {unknown}; known: {sorted(self.DIMS)}")
        return out


def _pool(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, D, 4N]`` -> mean over each frame's 4 sub-frames -> ``[B, N, D]``."""
    return x.view(x.shape[0], x.shape[1], frames, SUBFRAMES).mean(-1).transpose(1, 2)


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows ``[n_out, n_in]``."""
    n = np.arange(n_in)
    rows = [np.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt((1 if k == 0 else 2) / n_in) for k in range(n_out)]
    return np.stack(rows)


# ------------------------------------------------------------------------------------------ codebooks
@dataclass
class Codebook:
    """k-means centroids over standardised features: ``code = argmin_k |(x - mean) / std - c_k|``."""

    name: str
    mean: torch.Tensor  # [D]
    std: torch.Tensor  # [D]
    centroids: torch.Tensor  # [K, D]

    @property
    def size(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` features -> ``[...]`` int64 codes (nearest centroid in fp32)."""
        return nearest_centroid((features.float() - self.mean.to(features.device)) / self.std.to(features.device),
                                self.centroids.to(features.device))


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean) of every ``[..., D]`` vector, in fp32."""
    flat = x.reshape(-1, x.shape[-1]).float()
    c = centroids.float()
    distances = (c * c).sum(-1)[None, :] - 2.0 * flat @ c.T
    return distances.argmin(-1).reshape(x.shape[:-1])


def fit_kmeans(data: np.ndarray, clusters: int, seed: int, batch_size: int = 4096) -> np.ndarray:
    """Centroids ``[clusters, D]`` (float32) of ``data`` ``[n, D]`` with scikit-learn's MiniBatchKMeans."""
    from sklearn.cluster import MiniBatchKMeans

    if data.ndim != 2 or data.shape[0] < clusters:
        raise TargetError(f"k-means with {clusters} clusters needs at least {clusters} frames, got {data.shape[0]}")
    if not np.isfinite(data).all():
        raise TargetError("k-means input contains NaN or infinite values")
    restarts = 3 if data.shape[0] < 20_000 else 1  # large samples: one k-means++ start is enough
    kmeans = MiniBatchKMeans(n_clusters=clusters, batch_size=min(batch_size, data.shape[0]), random_state=seed,
                             n_init=restarts, max_iter=100, max_no_improvement=20, reassignment_ratio=0.01)
    kmeans.fit(data.astype(np.float32))
    return kmeans.cluster_centers_.astype(np.float32)


def fit_codebook(name: str, data: np.ndarray, clusters: int, seed: int, batch_size: int = 4096) -> Codebook:
    """Standardise ``data`` ``[n, D]`` per dimension and fit ``clusters`` centroids on it."""
    mean = data.mean(axis=0)
    std = np.maximum(data.std(axis=0), 1e-4)
    centroids = fit_kmeans((data - mean) / std, clusters, seed, batch_size)
    return Codebook(name, torch.from_numpy(mean).float(), torch.from_numpy(std).float(), torch.from_numpy(centroids))


def subsample_rows(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` rows, chosen uniformly without replacement (deterministic from ``seed``)."""
    if rows.shape[0] <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(rows.shape[0], size=limit, replace=False))
    return rows[keep]


@torch.no_grad()
def compute_features(frame_features: FrameFeatures, wav: torch.Tensor, names: Iterable[str],
                     teacher: SemanticModel | None = None, teacher_layer: int = 0) -> dict[str, torch.Tensor]:
    """``[B, T]`` audio -> ``[B, N, D]`` features of each named group (``teacher``: a model's layer)."""
    names = list(names)
    frame_features.to(wav.device)
    out = frame_features(wav, [n for n in names if n != "teacher"])
    if "teacher" in names:
        if teacher is None:
            raise TargetError("'teacher' features need a teacher model")
        teacher.to(wav.device)
        states, _ = teacher.hidden_states(wav.float(), max_layer=teacher_layer)
        out["teacher"] = states[teacher_layer].float()
    return out


# ---------------------------------------------------------------------------------------- target set
class TargetSet(nn.Module):
    """The codebooks of one training run and what they are computed from (hand features or a teacher)."""

    def __init__(self, codebooks: list[Codebook], teacher: SemanticModel | None = None, teacher_layer: int = 0,
                 teacher_source: str | None = None):
        super().__init__()
        if not codebooks:
            raise TargetError("a target set needs at least one codebook")
        if any(cb.name == "teacher" for cb in codebooks) and teacher is None:
            raise TargetError("the 'teacher' codebook needs its teacher model")
        self.codebooks = codebooks
        self.features = FrameFeatures()
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.teacher_layer = teacher_layer
        self.teacher_source = teacher_source

    @property
    def names(self) -> list[str]:
        return [cb.name for cb in self.codebooks]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(cb.size for cb in self.codebooks)

    @torch.no_grad()
    def raw_features(self, wav: torch.Tensor, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Unstandardised ``[B, N, D]`` features of each named group (default: every codebook's)."""
        return compute_features(self.features, wav, self.names if names is None else names, self.teacher,
                                self.teacher_layer)

    @torch.no_grad()
    def assign(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T]`` audio -> one ``[B, ceil(T / 960)]`` int64 code tensor per codebook."""
        feats = self.raw_features(wav)
        return [cb.assign(feats[cb.name]) for cb in self.codebooks]

    # ---------------------------------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """``targets.safetensors`` (means, stds, centroids) + ``targets.yaml`` (names, teacher) in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for cb in self.codebooks:
            tensors.update({f"{cb.name}.mean": cb.mean.contiguous(), f"{cb.name}.std": cb.std.contiguous(),
                            f"{cb.name}.centroids": cb.centroids.contiguous()})
        with atomic_path(folder / TARGETS_WEIGHTS) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "musiclm-semantic-targets"})
        meta = {"codebooks": self.names, "sizes": list(self.sizes), "teacher": self.teacher_source,
                "teacher_layer": self.teacher_layer}
        atomic_write_text(folder / TARGETS_META, yaml.safe_dump(meta, sort_keys=False))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str],
             load_teacher: Callable[[str, int], SemanticModel] | None = None) -> TargetSet:
        """Read a folder written by :meth:`save`; ``load_teacher(source, layer)`` rebuilds a teacher."""
        folder = Path(folder)
        if not (folder / TARGETS_META).exists() or not (folder / TARGETS_WEIGHTS).exists():
            raise TargetError(f"{folder}: no fitted targets ({TARGETS_META} and {TARGETS_WEIGHTS})")
        meta = yaml.safe_load((folder / TARGETS_META).read_text()) or {}
        tensors = read_safetensors(folder / TARGETS_WEIGHTS, TargetError)
        codebooks = []
        for name in meta.get("codebooks", []):
            try:
                codebooks.append(Codebook(name, tensors[f"{name}.mean"], tensors[f"{name}.std"],
                                          tensors[f"{name}.centroids"]))
            except KeyError as exc:
                raise TargetError(f"{folder / TARGETS_WEIGHTS}: missing tensor {exc}") from None
        teacher = None
        if "teacher" in meta.get("codebooks", []):
            if load_teacher is None:
                raise TargetError(f"{folder}: targets need the teacher model {meta.get('teacher')}")
            teacher = load_teacher(str(meta["teacher"]), int(meta["teacher_layer"]))
        return cls(codebooks, teacher, int(meta.get("teacher_layer") or 0), meta.get("teacher"))


def fit_targets(config: TargetConfig, clips: Iterable[torch.Tensor], teacher: SemanticModel | None = None,
                teacher_source: str | None = None, device: str | torch.device = "cpu") -> TargetSet:
    """Fit one codebook per feature group of ``config`` on ``clips`` (each ``[T]`` audio at 24 kHz)."""
    config.validate()
    if "teacher" in config.features and teacher is None:
        raise TargetError("targets on 'teacher' features need a teacher model (train iteration 0 first)")
    features = FrameFeatures()
    if teacher is not None:
        teacher = teacher.eval().requires_grad_(False)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in config.features}
    count = 0
    for wav in clips:
        feats = compute_features(features, wav.to(device).unsqueeze(0), config.features, teacher,
                                 config.teacher_layer)
        for name in config.features:
            rows[name].append(feats[name][0].cpu().numpy())
        count += 1
    if count == 0:
        raise TargetError("no clips to fit the targets on")
    codebooks = []
    for index, (name, k) in enumerate(zip(config.features, config.clusters)):
        data = subsample_rows(np.concatenate(rows[name]), config.fit_frames, config.seed + index)
        log.info("fitting %d %s clusters on %d frames of %d clips", k, name, data.shape[0], count)
        codebooks.append(fit_codebook(name, data, k, config.seed + index, config.kmeans_batch))
    return TargetSet(codebooks, teacher, config.teacher_layer, teacher_source)
