"""Tiny annotated corpora and tiny models for the semantic tests (imported by the test files beside it)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from musiclm.audio import save_audio
from musiclm.data.manifest import ClipRecord, write_manifest
from musiclm.semantic.config import MaskingConfig, SemanticModelConfig, SemanticTrainingConfig, TargetConfig
from musiclm.semantic.config import TokenizerConfig as TokConfig
from musiclm.semantic.model import SemanticModel
from musiclm.semantic.tokenizer import SemanticTokenizer
from musiclm.train.config import OptimizerConfig, TrainConfig

SR = 24_000


def tiny_model_config(**changes) -> SemanticModelConfig:
    base = SemanticModelConfig(n_fft=512, n_mels=32, conv_channels=32, d_model=32, num_layers=2, num_heads=2,
                               ffn_dim=64, dropout=0.0, pos_conv_kernel=5, pos_conv_groups=4, target_sizes=(8,))
    return replace(base, **changes)


def tiny_tokenizer(seed: int = 0, clusters: int = 16, layer: int = 2, **changes) -> SemanticTokenizer:
    torch.manual_seed(seed)
    model = SemanticModel(tiny_model_config(**changes))
    centroids = torch.randn(clusters, model.config.d_model, generator=torch.Generator().manual_seed(seed + 1))
    tokenizer = SemanticTokenizer(model, centroids, layer)
    # Centroids drawn from real features make every token reachable (random ones may leave most unused).
    rng = np.random.default_rng(seed)
    feats, _ = tokenizer.features(rng.standard_normal(SR * 2).astype(np.float32) * 0.1)
    pick = torch.from_numpy(rng.choice(feats.shape[1], size=clusters, replace=False))
    return SemanticTokenizer(model, feats[0, pick], layer)


def tone_clip(pitches: list[int], seconds: float, bpm: float, rng: np.random.Generator,
              program: int = 0) -> tuple[np.ndarray, dict]:
    """A melody of harmonic tones (one note per beat) with clicks on the beats, plus its annotations."""
    beat = 60.0 / bpm
    t = np.arange(int(seconds * SR)) / SR
    wav = np.zeros_like(t)
    melody, beats = [], []
    bright = 0.2 + 0.6 * (program % 2)
    for k in range(int(seconds / beat) + 1):
        start, end = k * beat, min((k + 1) * beat, seconds)
        if start >= seconds:
            break
        beats.append(round(start, 4))
        pitch = pitches[k % len(pitches)]
        freq = 440.0 * 2 ** ((pitch - 69) / 12)
        seg = (t >= start) & (t < end)
        env = np.exp(-3.0 * (t[seg] - start))
        for h in range(1, 5):
            wav[seg] += env * (bright ** (h - 1)) * np.sin(2 * np.pi * freq * h * t[seg]) / h
        click = (t >= start) & (t < start + 0.01)
        wav[click] += 0.3 * rng.standard_normal(int(click.sum()))
        melody.append([round(start, 4), round(end, 4), pitch])
    wav = (0.3 * wav / max(1e-6, np.abs(wav).max())).astype(np.float32)
    root = pitches[0] % 12
    annotations = {"beats": beats, "downbeats": beats[::4], "melody": melody,
                   "chords": [[0.0, seconds, root, "maj"]], "sections": [[0.0, seconds, "verse"]]}
    return wav, annotations


def make_corpus(folder: Path, clips: int = 12, seconds: float = 2.0, seed: int = 0) -> Path:
    """A corpus of annotated tone clips: 2/3 train, the rest split between valid and test."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(clips):
        root = int(rng.integers(57, 69))
        pitches = [root, root + 4, root + 7, root + 12, root + 7, root + 4]
        program = int(rng.choice([0, 40, 73]))
        wav, ann = tone_clip(pitches, seconds, float(rng.choice([100.0, 120.0, 150.0])), rng, program)
        split = "train" if i % 3 else ("valid" if i % 2 else "test")
        rel = f"audio/clip{i:03d}.wav"
        rel_ann = f"audio/clip{i:03d}.json"
        save_audio(folder / rel, wav, SR)
        (folder / rel_ann).write_text(json.dumps(ann))
        labels = {"parts": [{"name": "lead", "program": program, "is_drum": False, "role": "lead"}]}
        records.append(ClipRecord(id=f"clip{i:03d}", path=rel, seconds=seconds, sample_rate=SR, split=split,
                                  source="test", piece_id=f"piece{i}", labels=labels, annotations=rel_ann))
    write_manifest(folder, records)
    return folder


def tiny_training_config(steps: int = 30, **train_changes) -> SemanticTrainingConfig:
    train = TrainConfig(max_steps=steps, batch_size=4, checkpoint_every=1000, checkpoint_minutes=None, log_every=5,
                        sample_every=10_000, eval_every=10_000, progress=False, device="cpu",
                        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=3, grad_clip=1.0))
    train = replace(train, **train_changes)
    return SemanticTrainingConfig(
        model=tiny_model_config(),
        targets=TargetConfig(features=("chroma", "onset"), clusters=(8, 4), fit_clips=8, fit_frames=5000,
                             kmeans_batch=256),
        masking=MaskingConfig(mask_prob=0.2, mask_length=3),
        tokenizer=TokConfig(layer=2, num_clusters=8, kmeans_clips=8, kmeans_frames=5000, kmeans_batch=256),
        train=train, crop_seconds=1.0, gain_jitter_db=3.0, eval_clips=4,
    )
