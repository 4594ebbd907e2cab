"""Training the melody model on the engine, and fitting its quantiser afterwards.

Data: every clip's pitch spectrogram is computed once by the model's own front end and cached beside the
pair set (:class:`FeatureCache`, float16, memory-mapped), so a training step costs only the network. A
dataset item is one melody and a partner melody (its hard negative when it has one, else often a melody in
the same key), ``views_per_melody`` versions of each, all cropped at the same point of the tune: the crop
start is drawn on the melody's own time line and mapped into each clip through its stored
:class:`~musiclm.melody.pairs.TimeMap` (tempo change, drift and detuning), plus a little jitter. Crops are
augmented in the spectrogram domain (EQ, noise floor, time masks). Item ``i`` depends only on
``(seed, epoch, i)`` (exact resume).

The loss is the semi-hard triplet loss over the whole batch (:mod:`musiclm.melody.losses`); versions of a
melody are positives, everything else negatives, and one melody cut at two points of the tune by two items
is neither. The evaluation hook ranks held-out (valid) melodies: one version against one other version of
up to ``eval_melodies`` melodies (:mod:`musiclm.melody.evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from musiclm.audio import load_audio
from musiclm.config import to_dict
from musiclm.data.manifest import read_manifest
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path, atomic_write_text
from musiclm.melody.config import FeatureAugmentConfig, FrontendConfig, MelodyQuantizerConfig, MelodyTrainingConfig
from musiclm.melody.losses import semi_hard_triplet_loss
from musiclm.melody.model import MelodyEmbedder, PitchSpectrogram, window_count
from musiclm.melody.pairs import PairError, PairSet, read_pairs
from musiclm.mulan.quantizer import save_quantizer
from musiclm.train.checkpoint import run_corpora
from musiclm.train.engine import Phase, Recipe, StepContext, Trainer, TrainResult

log = logging.getLogger("musiclm.melody")

CACHE_DIR = "features"
CACHE_FORMAT = 1


# ------------------------------------------------------------------------------------------ feature cache
def frontend_key(config: FrontendConfig) -> str:
    """A short hash of a front-end config: caches made with another front end are not reused."""
    return hashlib.sha1(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:10]


class FeatureCache:
    """The pitch spectrograms (dB, float16 ``[clips, bins, frames]``) of every clip of one pair-set folder.

    Built on first use into ``<folder>/features/pitch-<key>.npy`` (with an index ``.json``), rebuilt when the
    manifest's clips change, memory-mapped when read. Frames past a clip's end hold the silence floor.
    """

    def __init__(self, folder: str | os.PathLike[str], frontend: FrontendConfig,
                 progress: Callable[[int, int], None] | None = None, build: bool = True):
        self.folder, self.frontend = Path(folder), frontend
        key = frontend_key(frontend)
        self.array_path = self.folder / CACHE_DIR / f"pitch-{key}.npy"
        self.index_path = self.folder / CACHE_DIR / f"pitch-{key}.json"
        ids = sorted(r.id for r in read_manifest(self.folder))
        if not self._fresh(ids):
            if not build:
                raise PairError(f"{self.folder}: no up-to-date feature cache")
            self._build(ids, progress)
        index = json.loads(self.index_path.read_text())
        self.row = {clip: i for i, clip in enumerate(index["ids"])}
        self.frames = index["frames"]
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        """The memory-mapped spectrograms (opened on first use in each process)."""
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r", allow_pickle=False)
        return self._array

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers re-open the map instead of copying it
        return {**self.__dict__, "_array": None}

    def _fresh(self, ids: list[str]) -> bool:
        if not (self.array_path.exists() and self.index_path.exists()):
            return False
        try:
            index = json.loads(self.index_path.read_text())
        except json.JSONDecodeError:
            return False
        return index.get("format") == CACHE_FORMAT and index.get("ids") == ids

    def _build(self, ids: list[str], progress: Callable[[int, int], None] | None) -> None:
        records = {r.id: r for r in read_manifest(self.folder)}
        front = PitchSpectrogram(self.frontend).eval()
        hop, sr = self.frontend.hop_length, self.frontend.sample_rate
        frames = [int(round(records[c].seconds * sr)) // hop + 1 for c in ids]
        width = max(frames)
        log.info("computing pitch spectrograms of %d clips in %s (once)", len(ids), self.folder)
        actual: list[int] = []
        with atomic_path(self.array_path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                            shape=(len(ids), self.frontend.pitch_bins, width))
            for start in range(0, len(ids), 16):
                chunk = ids[start : start + 16]
                wavs = [load_audio(self.folder / records[c].path, sr, allow_silent=True)[0] for c in chunk]
                length = max(len(w) for w in wavs)
                batch = torch.zeros(len(wavs), length)
                for i, wav in enumerate(wavs):
                    batch[i, : len(wav)] = torch.from_numpy(wav)
                with torch.no_grad():
                    db = front(batch).numpy()
                for i, wav in enumerate(wavs):
                    n = min(len(wav) // hop + 1, width)
                    out[start + i, :, :n] = db[i, :, :n]
                    out[start + i, :, n:] = self.frontend.floor_db
                    actual.append(n)
                if progress is not None:
                    progress(min(start + 16, len(ids)), len(ids))
            out.flush()
            del out
        atomic_write_text(self.index_path, json.dumps({"format": CACHE_FORMAT, "ids": ids, "frames": actual,
                                                       "frontend": to_dict(self.frontend)}))

    def full(self, clip_id: str) -> np.ndarray:
        """The whole spectrogram of a clip ``[bins, frames]`` (float32)."""
        row = self.row[clip_id]
        return np.asarray(self.array[row, :, : self.frames[row]], dtype=np.float32)

    def crop(self, clip_id: str, start: int, frames: int) -> np.ndarray:
        """``frames`` frames from ``start`` (may lie before 0 or past the end: silence there), float32."""
        row = self.row[clip_id]
        have = self.frames[row]
        out = np.full((self.frontend.pitch_bins, frames), self.frontend.floor_db, dtype=np.float32)
        a, b = max(start, 0), min(start + frames, have)
        if b > a:
            out[:, a - start : b - start] = self.array[row, :, a:b]
        return out


def load_caches(folders: list[str | os.PathLike[str]], frontend: FrontendConfig,
                progress: Callable[[int, int], None] | None = None) -> dict[Path, FeatureCache]:
    """One cache per pair-set folder; under DDP rank 0 builds missing caches while the others wait."""
    import torch.distributed as dist

    from musiclm.train.distributed import barrier

    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        barrier()
        return {Path(f): FeatureCache(f, frontend, build=False) for f in folders}
    caches = {Path(f): FeatureCache(f, frontend, progress) for f in folders}
    if distributed:
        barrier()
    return caches


# ---------------------------------------------------------------------------------------- augmentation
def augment_features(db: np.ndarray, rng: np.random.Generator, config: FeatureAugmentConfig,
                     frontend: FrontendConfig) -> np.ndarray:
    """Label-preserving changes of a dB crop ``[bins, frames]``: a smooth EQ over the pitch axis, a noise
    floor (white or pink, fluctuating per bin and frame) and short silences."""
    out = db.astype(np.float32, copy=True)
    bins, frames = out.shape
    if config.eq_db > 0 and rng.random() < config.eq_prob:
        per_octave = 12 * frontend.bins_per_semitone
        anchors = np.arange(0, bins + per_octave, per_octave)
        gains = np.clip(rng.normal(0.0, config.eq_db, len(anchors)), -2 * config.eq_db, 2 * config.eq_db)
        out += np.interp(np.arange(bins), anchors, gains).astype(np.float32)[:, None]
    if rng.random() < config.noise_prob:
        power = np.power(10.0, out / 10.0)
        level = float(power.max()) * 10.0 ** (-rng.uniform(*config.snr_db) / 10.0)
        shape = np.ones(bins) if rng.random() < 0.5 else 2.0 ** (-np.arange(bins) / (12 * frontend.bins_per_semitone))
        noise = rng.exponential(1.0, size=(bins, frames)) * (level * shape / shape.max())[:, None]
        out = (10.0 * np.log10(power + noise + 10.0 ** (frontend.floor_db / 10.0))).astype(np.float32)
    if config.time_masks and config.time_mask_frames and rng.random() < config.time_mask_prob:
        for _ in range(config.time_masks):
            width = int(rng.integers(1, config.time_mask_frames + 1))
            start = int(rng.integers(0, max(1, frames - width)))
            out[:, start : start + width] = frontend.floor_db
    return out


# --------------------------------------------------------------------------------------------- dataset
class MelodyViews(Dataset):
    """Items: a melody and its partner, ``views_per_melody`` aligned crops of each; depends on (seed, epoch, i)."""

    def __init__(self, corpora: list[str | os.PathLike[str]], config: MelodyTrainingConfig, split: str = "train",
                 augment: bool = True, caches: dict[Path, FeatureCache] | None = None):
        self.pairs: PairSet = read_pairs([str(c) for c in corpora], split)
        if len(self.pairs.melodies) < 2:
            raise PairError(f"split {split!r} of {', '.join(map(str, corpora))} has {len(self.pairs.melodies)} "
                            "melodies with two or more versions; at least 2 are needed")
        self.config, self.augment, self.seed = config, augment, config.train.seed
        self.caches = caches or load_caches(list(corpora), config.model.frontend)
        self.melody_ids = self.pairs.melody_ids
        self.index_of = {m: i for i, m in enumerate(self.melody_ids)}
        self.by_key: dict[str, list[str]] = {}
        for melody in self.melody_ids:
            self.by_key.setdefault(self.clip(melody, 0).key, []).append(melody)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.melody_ids)

    def clip(self, melody: str, k: int) -> Any:
        return self.pairs.clips[self.pairs.melodies[melody][k]]

    def cache_for(self, clip: Any) -> FeatureCache:
        return self.caches[clip.root]

    def partner(self, melody: str, rng: np.random.Generator) -> str:
        """Its hard negative (``twin_prob``), else a melody in the same key (``same_key_prob``), else any other."""
        twin = self.pairs.twins.get(melody)
        if twin is not None and rng.random() < self.config.twin_prob:
            return twin
        if rng.random() < self.config.same_key_prob:
            pool = self.by_key[self.clip(melody, 0).key]
            if len(pool) > 1:
                choice = pool[int(rng.integers(len(pool) - 1))]
                return choice if choice != melody else pool[-1]
        other = int(rng.integers(len(self.melody_ids) - 1))
        return self.melody_ids[other if other < self.index_of[melody] else other + 1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.config
        model = cfg.model
        rng = np.random.default_rng([self.seed, self.epoch, index, 13])
        melody = self.melody_ids[index]
        partner = self.partner(melody, rng)
        length = min(self.clip(melody, 0).seconds, self.clip(partner, 0).seconds)
        latest = length - model.window_seconds
        if rng.random() < cfg.tail_crop_prob:
            latest = length - model.window_seconds * model.min_window_fraction
        onset = float(rng.uniform(0.0, max(latest, 0.0)))  # on the melody's own time line
        rate = model.frontend.frame_rate
        features, labels = [], []
        for name in (melody, partner):
            clips = self.pairs.melodies[name]
            chosen = rng.choice(len(clips), size=cfg.views_per_melody, replace=len(clips) < cfg.views_per_melody)
            for k in chosen:
                clip = self.pairs.clips[clips[int(k)]]
                start = float(clip.time_map.clip_time(onset)) + rng.uniform(-cfg.crop_jitter_seconds,
                                                                           cfg.crop_jitter_seconds)
                crop = self.cache_for(clip).crop(clip.id, int(round(start * rate)), model.window_frames)
                if self.augment:
                    crop = augment_features(crop, rng, cfg.augment, model.frontend)
                features.append(crop)
                labels.append(self.index_of[name])
        return {"features": torch.from_numpy(np.stack(features)), "labels": torch.tensor(labels, dtype=torch.long),
                "items": torch.full((len(labels),), index, dtype=torch.long)}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([item[key] for item in items]) for key in ("features", "labels", "items")}


# --------------------------------------------------------------------------------------- clip windows
def clip_windows(model: MelodyEmbedder, cache: FeatureCache, clip_id: str, seconds: float) -> torch.Tensor:
    """The inference windows of a cached clip ``[windows, bins, frames]`` (as :meth:`MelodyModel.embed` cuts
    them from the clip's audio)."""
    count = window_count(int(round(seconds * model.config.frontend.sample_rate)), model.config)
    return model.windows(torch.from_numpy(cache.full(clip_id)), count)


@torch.no_grad()
def embed_cached_clips(model: MelodyEmbedder, pairs: PairSet, caches: dict[Path, FeatureCache],
                       indices: list[int], batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Window embeddings of clips ``[N, max windows, D]`` and a validity mask ``[N, max windows]``."""
    windows = [clip_windows(model, caches[pairs.clips[i].root], pairs.clips[i].id, pairs.clips[i].seconds)
               for i in indices]
    flat = torch.cat(windows)
    device = model.device
    emb = torch.cat([model.embed_features(flat[i : i + batch].to(device)).cpu() for i in range(0, len(flat), batch)])
    most = max(len(w) for w in windows)
    out = torch.zeros(len(indices), most, emb.shape[1])
    mask = torch.zeros(len(indices), most, dtype=torch.bool)
    position = 0
    for row, w in enumerate(windows):
        out[row, : len(w)] = emb[position : position + len(w)]
        mask[row, : len(w)] = True
        position += len(w)
    return out, mask


# ---------------------------------------------------------------------------------------------- recipe
class MelodyRecipe(Recipe):
    """One phase: the semi-hard triplet loss over the batch's window embeddings."""

    def __init__(self, config: MelodyTrainingConfig, corpora: list[str | os.PathLike[str]]):
        self.config = config
        self.corpora = [str(c) for c in corpora]
        self._caches: dict[Path, FeatureCache] | None = None
        self._eval: tuple[PairSet, list[int], list[str]] | None = None

    def caches(self) -> dict[Path, FeatureCache]:
        if self._caches is None:
            self._caches = load_caches(self.corpora, self.config.model.frontend)
        return self._caches

    def build_models(self) -> dict[str, nn.Module]:
        return {"melody": MelodyEmbedder(self.config.model)}

    def build_dataset(self) -> Dataset:
        return MelodyViews(self.corpora, self.config, "train", caches=self.caches())

    def collate(self, items: list[Any]) -> Any:
        return collate(items)

    def phases(self) -> list[Phase]:
        return [Phase("triplet", ("melody",), self.loss)]

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        embeddings = ctx.model("melody")(ctx.batch["features"])
        return semi_hard_triplet_loss(embeddings, ctx.batch["labels"], self.config.margin, items=ctx.batch["items"])

    def config_dict(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "corpora": self.corpora}

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Retrieval among held-out (valid) melodies, and the invariance ratio."""
        from musiclm.melody.evaluate import retrieval_report

        if self.config.eval_melodies == 0:
            return {}
        if self._eval is None:
            try:
                pairs = read_pairs(self.corpora, "valid")
            except PairError:
                pairs = PairSet([])
            chosen = pairs.melody_ids[: self.config.eval_melodies]
            indices = [i for m in chosen for i in pairs.melodies[m]]
            self._eval = (pairs, indices, chosen)
        pairs, indices, chosen = self._eval
        if len(chosen) < 2:
            return {}
        emb, mask = embed_cached_clips(models["melody"], pairs, self.caches(), indices)
        melody_of = [pairs.clips[i].melody_id for i in indices]
        report = retrieval_report(emb, mask, melody_of, candidates=len(chosen), seed=0)
        return {k: report[k] for k in ("top1", "top5", "invariance_ratio", "twin_accuracy") if k in report}


def train_melody(config: MelodyTrainingConfig, corpora: list[str | os.PathLike[str]],
                 run_dir: str | os.PathLike[str]) -> TrainResult:
    """Train (or resume) the melody model on pair-set folders; checkpoints go to ``run_dir``."""
    return Trainer(MelodyRecipe(config, corpora), config.train, run_dir).fit()


# ----------------------------------------------------------------------------------------- quantiser
def fit_windows(model: MelodyEmbedder, pairs: PairSet, caches: dict[Path, FeatureCache], views: int, seed: int,
                progress: Callable[[int, int], None] | None = None, batch: int = 256) -> torch.Tensor:
    """``[N, D]`` window embeddings to fit the quantiser on: every inference window of every clip, plus
    ``views - 1`` windows shifted by up to one hop with mild augmentation."""
    augment = FeatureAugmentConfig(eq_db=2.0, noise_prob=0.2, time_mask_prob=0.0)
    frames = model.config.window_frames
    rows: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if pending:
            stack = torch.cat(pending)
            with torch.no_grad():
                rows.append(torch.cat([model.embed_features(stack[i : i + batch].to(model.device)).cpu()
                                       for i in range(0, len(stack), batch)]))
            pending.clear()

    for n, clip in enumerate(pairs.clips):
        cache = caches[clip.root]
        pending.append(clip_windows(model, cache, clip.id, clip.seconds))
        rng = np.random.default_rng([seed, n, 17])
        for _ in range(views - 1):
            count = window_count(int(round(clip.seconds * model.config.frontend.sample_rate)), model.config)
            start = int(rng.integers(0, max(1, (count - 1) * model.config.hop_frames + 1)))
            crop = augment_features(cache.crop(clip.id, start, frames), rng, augment, model.config.frontend)
            pending.append(torch.from_numpy(crop)[None])
        if sum(len(p) for p in pending) >= 4 * batch:
            flush()
        if progress is not None:
            progress(n + 1, len(pairs.clips))
    flush()
    if not rows:
        raise MusicLMError("no training clip to fit the quantiser on")
    return torch.cat(rows)


def fit_run_quantizer(
    run_dir: str | os.PathLike[str],
    corpora: list[str | os.PathLike[str]] | None = None,
    config: MelodyQuantizerConfig | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit a run's residual quantiser on its training windows; writes ``quantizer.safetensors`` and
    ``quantizer.json`` into the run folder. Held-out (test) windows report how well it reconstructs."""
    from musiclm.melody import api
    from musiclm.mulan.quantizer import fit_quantizer, level_stats

    run_dir = Path(run_dir)
    qcfg = config or api.run_config(run_dir).model.quantizer
    qcfg.validate()
    corpora = [str(c) for c in corpora] if corpora else run_corpora(run_dir)
    if not corpora:
        raise MusicLMError(f"{run_dir}: the run does not record its pair sets; pass --corpus")
    melody = api.MelodyModel.from_run(run_dir, device=device, with_quantizer=False)
    caches = load_caches(corpora, melody.config.frontend)
    train = fit_windows(melody.model, read_pairs(corpora, "train"), caches, qcfg.fit_views, qcfg.seed, progress)
    quantizer, report = fit_quantizer(train, qcfg.num_quantizers, qcfg.codebook_size,
                                      min_points_per_code=qcfg.min_points_per_code, iters=qcfg.kmeans_iters,
                                      seed=qcfg.seed)
    from musiclm.weights import FITTED_STEP_KEY

    result: dict[str, Any] = {"fit": report.to_dict(), "corpora": corpora, "fit_views": qcfg.fit_views,
                              FITTED_STEP_KEY: melody.checkpoint_step}
    if report.codebook_size < report.requested_codebook_size:
        log.warning("quantiser: %d window embeddings allow %d codes per level (requested %d)", report.points,
                    report.codebook_size, report.requested_codebook_size)
    try:
        held = read_pairs(corpora, "test")
    except PairError:
        held = PairSet([])
    if held.clips:
        emb, mask = embed_cached_clips(melody.model, held, caches, list(range(len(held.clips))))
        stats = level_stats(emb[mask], quantizer)
        result["held_out"] = {"windows": int(mask.sum()), "cosine_level1": stats[0].cosine,
                              "cosine_all": stats[-1].cosine}
    save_quantizer(quantizer, run_dir / api.QUANTIZER_FILE, kind="melody")
    atomic_write_text(run_dir / api.QUANTIZER_REPORT, json.dumps(result, indent=2))
    return quantizer, result
