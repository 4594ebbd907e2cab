"""Helpers of the codec tests: a tiny synthetic music corpus (harmonic notes plus percussive noise) and
tiny codec configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.codec.config import CodecConfig, CodecTrainingConfig, DiscriminatorConfig, LossConfig
from musiclm.config import merge
from musiclm.data.manifest import ClipRecord, write_manifest
from musiclm.train.config import OptimizerConfig, TrainConfig


def synth_clip(rng: np.random.Generator, seconds: float, sample_rate: int = 24_000) -> np.ndarray:
    """A few seconds of notes (1-3 note chords, random timbre and envelope) and noise hits."""
    total = int(round(seconds * sample_rate))
    out = np.zeros(total, dtype=np.float64)
    t_note = 0
    while t_note < total:
        length = int(rng.uniform(0.12, 0.6) * sample_rate)
        t = np.arange(length) / sample_rate
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1.5, 8.0))
        for _ in range(int(rng.integers(1, 4))):
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            brightness = rng.uniform(0.3, 0.9)
            for k in range(1, 8):
                if f0 * k < sample_rate / 2:
                    out[t_note : t_note + length] += (envelope * brightness**k * np.sin(
                        2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)))[: total - t_note]
        if rng.random() < 0.4:  # a percussive noise hit
            hit = min(int(0.08 * sample_rate), total - t_note)
            decay = np.exp(-np.arange(hit) / (0.015 * sample_rate))
            out[t_note : t_note + hit] += 0.5 * rng.standard_normal(hit) * decay
        t_note += length
    out *= 0.5 / max(np.abs(out).max(), 1e-6)
    return out.astype(np.float32)


def write_corpus(folder: str | Path, clips: int = 12, seconds: float = 2.0, seed: int = 0,
                 valid: int = 2, sample_rate: int = 24_000) -> Path:
    """Write ``clips`` WAV clips and their manifest (the last ``valid`` clips form the valid split)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(clips):
        wav = synth_clip(rng, seconds, sample_rate)
        path = f"audio/clip{i:04d}.wav"
        save_audio(folder / path, wav, sample_rate)
        split = "valid" if i >= clips - valid else "train"
        records.append(ClipRecord(id=f"clip{i:04d}", path=path, seconds=seconds, sample_rate=sample_rate,
                                  split=split, source="synthetic-test", piece_id=f"piece{i}"))
    write_manifest(folder, records)
    return folder


def tiny_codec_config(**overrides: object) -> CodecConfig:
    """A codec with the real token layout (24 kHz, stride 480, 12 x 1024) but tiny convolutions."""
    fields: dict[str, object] = {"encoder_channels": 4, "decoder_channels": 4, "max_channels": 32, "latent_dim": 8,
                                 "dilations": (1, 3), "init_vectors": 256, "kmeans_iters": 4}
    fields.update(overrides)
    return CodecConfig(**fields)  # type: ignore[arg-type]


def tiny_training_config(**overrides: object) -> CodecTrainingConfig:
    """A codec training config that runs a few dozen steps in seconds on a CPU."""
    config = CodecTrainingConfig(
        model=tiny_codec_config(),
        discriminator=DiscriminatorConfig(stft_ffts=(256, 128), stft_channels=4, stft_first_stride=2,
                                          periods=(2,), period_channels=4, period_max_channels=8, period_layers=2),
        loss=LossConfig(mel_ffts=(256, 512), mel_bins=(32, 48), stft_ffts=(256, 512)),
        train=TrainConfig(max_steps=30, batch_size=4, checkpoint_every=30, sample_every=30, eval_every=30,
                          log_every=5, progress=False, checkpoint_minutes=None, device="cpu",
                          optimizer=OptimizerConfig(lr=2e-3, betas=(0.5, 0.9), weight_decay=0.0, warmup_steps=5,
                                                    grad_clip=None)),
        crop_seconds=0.3, adversarial_start=20, discriminator_warmup=5, eval_clips=2, eval_seconds=0.5,
        sample_clips=1,
    )
    return merge(config, overrides) if overrides else config


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and far faster on a busy machine (no OpenMP stalls)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
