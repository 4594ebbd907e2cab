"""Helpers for the MuLan tests: a tiny captioned corpus of four audibly different styles and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musiclm.audio import save_audio
from musiclm.data.captions import caption_aspects, caption_clip
from musiclm.data.manifest import ClipRecord, write_manifest
from musiclm.data.piece import ClipLabels, Part
from musiclm.mulan.config import (
    AudioTowerConfig,
    MuLanConfig,
    MuLanTrainingConfig,
    QuantizerConfig,
    TextTowerConfig,
)
from musiclm.train.config import OptimizerConfig, TrainConfig

SR = 24_000


def _tones(rng: np.random.Generator, n: int, low: int, high: int, decay: float, harmonics: int) -> np.ndarray:
    out = np.zeros(n)
    start = 0
    while start < n:
        length = int(rng.uniform(0.15, 0.4) * SR)
        t = np.arange(length) / SR
        f0 = 110.0 * 2 ** (rng.integers(low, high) / 12)
        env = np.minimum(1.0, t / 0.005) * np.exp(-t * decay)
        note = sum(0.6**k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(harmonics))
        out[start : start + length] += (env * note)[: n - start]
        start += length
    return out


def style_audio(style: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A few seconds of one of four styles with clearly different spectra and rhythms."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    if style == "classical_piano":
        out = _tones(rng, n, 12, 36, 4.0, 4)
    elif style == "techno":
        beat = (t % 0.5) < 0.12
        kick = np.sin(2 * np.pi * 55 * t) * beat * np.exp(-(t % 0.5) * 30)
        hat = rng.standard_normal(n) * (((t + 0.25) % 0.5) < 0.03) * 0.3
        out = kick + hat
    elif style == "ambient":
        f0 = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        out = sum(np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 6)) for r in (1.0, 1.005, 1.5, 2.01)) * (
            0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t))
    else:  # rock: clipped bright tones plus noise bursts
        out = np.clip(3 * _tones(rng, n, 0, 24, 1.0, 8), -1, 1) + rng.standard_normal(n) * ((t % 0.5) < 0.05) * 0.5
    out = out / max(np.abs(out).max(), 1e-6) * 0.5
    return out.astype(np.float32)


STYLE_LABELS = {
    "classical_piano": dict(parts=[Part("acoustic grand piano", 0, False, "lead")], bpm=72.0, mood=["calm"],
                            energy="low", dynamics="soft", texture="sparse"),
    "techno": dict(parts=[Part("synth bass", 38, False, "bass"), Part("drum kit", 0, True, "drums")], bpm=128.0,
                   mood=["energetic"], energy="high", dynamics="loud", texture="moderate"),
    "ambient": dict(parts=[Part("warm pad", 89, False, "pad")], bpm=60.0, mood=["dreamy"], energy="low",
                    dynamics="soft", texture="sparse"),
    "rock": dict(parts=[Part("distortion guitar", 30, False, "lead"), Part("drum kit", 0, True, "drums")],
                 bpm=140.0, mood=["aggressive"], energy="high", dynamics="loud", texture="dense"),
}


def write_tiny_corpus(folder: str | Path, per_style: int = 6, seconds: float = 2.0, seed: int = 0) -> Path:
    """``4 * per_style`` clips: per style, clip 0 is test, clip 1 valid, the rest train; real captions."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    records = []
    for style, facts in STYLE_LABELS.items():
        for i in range(per_style):
            labels = ClipLabels(genre=style, key="C", mode="major", meter="4/4", **facts)
            split = "test" if i == 0 else "valid" if i == 1 else "train"
            caption, _ = caption_clip(labels, rng, split)
            path = f"audio/{style}-{i}.wav"
            save_audio(folder / path, style_audio(style, rng, seconds), SR)
            records.append(ClipRecord(id=f"{style}-{i}", path=path, seconds=seconds, sample_rate=SR, split=split,
                                      source="composer", piece_id=f"{style}-piece{i}", caption=caption,
                                      aspects=caption_aspects(labels), labels=labels.to_dict()))
    write_manifest(folder, records)
    return folder


def tiny_model_config(kind: str = "conv") -> MuLanConfig:
    audio = AudioTowerConfig(kind=kind, n_fft=512, hop_length=240, n_mels=32, conv_channels=(4, 8), hidden=32,
                             blocks=1, heads=2, patch_mels=8, patch_frames=8, max_time_patches=32,
                             window_seconds=2.0, window_stride_seconds=0.5, min_seconds=0.5, time_mask=10)
    return MuLanConfig(embed_dim=16, audio=audio, text=TextTowerConfig(hidden=32),
                       quantizer=QuantizerConfig(num_quantizers=12, codebook_size=8, fit_views=2, kmeans_iters=20))


def tiny_training_config(steps: int = 30) -> MuLanTrainingConfig:
    return MuLanTrainingConfig(
        model=tiny_model_config(),
        train=TrainConfig(max_steps=steps, batch_size=8, device="cpu", checkpoint_every=1000, eval_every=1000,
                          sample_every=1000, log_every=1000, checkpoint_minutes=None, progress=False,
                          optimizer=OptimizerConfig(lr=3e-3, warmup_steps=2, weight_decay=0.0)),
        crop_seconds=1.5, eval_clips=4,
    )
