"""Fitting the embedding quantiser of a trained MuLan run on the audio embeddings of its training corpus.

Fit data: for every training clip, its clip embedding (the inference path: 10 s windows, 1 s stride) plus
``fit_views - 1`` embeddings of random crops (3 s to a full window) with mild augmentation, so the codebooks
cover the embeddings the generation stages will condition on. Optional comparison of codebook sizes on the
held-out split: reconstruction, code usage and whether the TEXT embeddings of held-out captions land on codes
that the training audio uses often (a code rarely chosen in training is a conditioning token the generators
have barely seen), and how often a held-out caption's level-1 token equals its clip's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musiclm.audio import load_audio
from musiclm.data.manifest import read_manifest
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_write_text
from musiclm.mulan.api import QUANTIZER_FILE, QUANTIZER_REPORT, MuLan, run_config
from musiclm.mulan.config import AugmentConfig, QuantizerConfig
from musiclm.mulan.quantizer import EmbeddingQuantizer, fit_quantizer, level_stats, save_quantizer
from musiclm.mulan.recipe import augment_audio, stable_key
from musiclm.train.checkpoint import run_corpora
from musiclm.weights import FITTED_STEP_KEY

log = logging.getLogger("musiclm.mulan")
MIN_CROP_SECONDS = 3.0
RARE_CODE_COUNT = 4
"""A code that fewer training embeddings than this chose is one the generators barely saw as conditioning."""


def fit_embeddings(mulan: MuLan, corpora: list[str | os.PathLike[str]], views: int, seed: int = 0,
                   split: str = "train", augment: AugmentConfig | None = None,
                   progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``[clips * views, D]`` audio embeddings of a split: whole clips plus augmented random crops."""
    augment = augment or AugmentConfig(noise_prob=0.2)
    records = [(Path(root), r) for root in corpora for r in read_manifest(root, split)]
    if not records:
        raise MusicLMError(f"no clips in split {split!r} of {', '.join(map(str, corpora))}")
    sr = mulan.sample_rate
    window = int(mulan.config.audio.window_seconds * sr)
    rows: list[torch.Tensor] = []
    pending: list[np.ndarray] = []
    for n, (root, record) in enumerate(records):
        try:
            wav, _ = load_audio(root / record.path, sr)
        except MusicLMError as exc:
            log.warning("%s: skipped (%s)", record.id, exc)
            continue
        pending.append(wav)
        rng = np.random.default_rng([seed, stable_key(record.id), 11])
        for _ in range(views - 1):
            length = int(rng.uniform(min(MIN_CROP_SECONDS * sr, len(wav)), min(window, len(wav)) + 1))
            start = int(rng.integers(0, len(wav) - length + 1))
            pending.append(augment_audio(wav[start : start + length], rng, augment, sr))
        if len(pending) >= 32 or n == len(records) - 1:
            rows += _embed_signals(mulan, pending)
            pending = []
        if progress is not None:
            progress(n + 1, len(records))
    rows += _embed_signals(mulan, pending)
    if not rows:
        raise MusicLMError("no training clip could be embedded")
    return torch.cat(rows)


def _embed_signals(mulan: MuLan, signals: list[np.ndarray]) -> list[torch.Tensor]:
    """Embeddings of signals, batched; signals that cannot be embedded (silent crops) are left out."""
    if not signals:
        return []
    try:
        return [mulan.embed_audio(signals)]
    except MusicLMError:
        out = []
        for signal in signals:
            try:
                out.append(mulan.embed_audio(signal))
            except MusicLMError:
                continue
        return out


def compare_codebook_sizes(train: torch.Tensor, test_audio: torch.Tensor, test_text: torch.Tensor | None,
                           sizes: list[int], levels: int, iters: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """Per codebook size: reconstruction (train / held-out audio), code usage and text-token coverage."""
    out = []
    for size in sizes:
        quantizer, report = fit_quantizer(train, levels, size, min_points_per_code=1, iters=iters, seed=seed)
        row: dict[str, Any] = {"codebook_size": size, "points_per_code": round(len(train) / size, 2),
                               "train_cosine_l1": report.levels[0].cosine,
                               "train_cosine_all": report.levels[-1].cosine,
                               "level1_codes_used": report.levels[0].codes_used,
                               "level1_perplexity": round(report.levels[0].perplexity, 2)}
        held = level_stats(test_audio, quantizer)
        row.update({"test_cosine_l1": held[0].cosine, "test_cosine_all": held[-1].cosine})
        if test_text is not None and len(test_text):
            train_tokens = quantizer.encode(train)
            counts = [torch.bincount(col, minlength=size) for col in train_tokens.t()]
            text_tokens = quantizer.encode(test_text)
            rare = torch.stack([counts[lvl][text_tokens[:, lvl]] < RARE_CODE_COUNT for lvl in range(levels)], 1)
            row["text_tokens_rare_in_training"] = round(float(rare.float().mean()), 4)
            row["text_level1_rare_in_training"] = round(float(rare[:, 0].float().mean()), 4)
            if len(test_audio) == len(test_text):
                audio_tokens = quantizer.encode(test_audio)
                row["text_audio_level1_agreement"] = round(float((text_tokens[:, 0] == audio_tokens[:, 0])
                                                                 .float().mean()), 4)
        out.append(row)
    return out


def fit_run_quantizer(
    run_dir: str | os.PathLike[str],
    corpora: list[str | os.PathLike[str]] | None = None,
    config: QuantizerConfig | None = None,
    compare: list[int] | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[EmbeddingQuantizer, dict[str, Any]]:
    """Fit the quantiser of a run, write ``quantizer.safetensors`` and ``quantizer.json`` into the run folder."""
    run_dir = Path(run_dir)
    training = run_config(run_dir)
    qcfg = config or training.model.quantizer
    corpora = list(corpora) if corpora else run_corpora(run_dir)
    if not corpora:
        raise MusicLMError(f"{run_dir}: the run does not record its corpora; pass --corpus")
    mulan = MuLan.from_run(run_dir, device=device, with_quantizer=False)
    train = fit_embeddings(mulan, corpora, qcfg.fit_views, qcfg.seed, progress=progress)
    quantizer, report = fit_quantizer(train, qcfg.num_quantizers, qcfg.codebook_size,
                                      min_points_per_code=qcfg.min_points_per_code, iters=qcfg.kmeans_iters,
                                      seed=qcfg.seed)
    result: dict[str, Any] = {"fit": report.to_dict(), "corpora": [str(c) for c in corpora],
                              "fit_views": qcfg.fit_views, FITTED_STEP_KEY: mulan.checkpoint_step}
    if report.codebook_size < report.requested_codebook_size:
        log.warning("quantiser: %d embeddings allow %d codes per level (requested %d, min %d points per code)",
                    report.points, report.codebook_size, report.requested_codebook_size, qcfg.min_points_per_code)
    if compare:
        held_audio, held_text = _held_out(mulan, corpora)
        result["comparison"] = compare_codebook_sizes(train, held_audio, held_text, compare, qcfg.num_quantizers,
                                                      qcfg.kmeans_iters, qcfg.seed)
    save_quantizer(quantizer, run_dir / QUANTIZER_FILE)
    atomic_write_text(run_dir / QUANTIZER_REPORT, json.dumps(result, indent=2))
    return quantizer, result


def _held_out(mulan: MuLan, corpora: list[str | os.PathLike[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    audio, text = [], []
    for root in corpora:
        for record in read_manifest(root, "test"):
            if not (record.caption or "").strip():
                continue
            try:
                audio.append(mulan.embed_files([Path(root) / record.path]))
            except MusicLMError:
                continue
            text.append(record.caption)
    if not audio:
        raise MusicLMError("no held-out (test) clips to compare codebook sizes on")
    return torch.cat(audio), mulan.embed_text(text)

