"""Figures people would rather look at than read: the log-mel spectrogram of generated audio."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from musiclm.fileio import atomic_write_bytes


def spectrogram_png_bytes(wav: np.ndarray, sample_rate: int, title: str | None = None, n_mels: int = 128,
                          width: float = 10.0, height: float = 3.2) -> bytes:
    """A PNG (bytes) of the log-mel spectrogram of mono ``wav``, time in seconds, frequency in Hz."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    hop = max(sample_rate // 100, 1)
    mel = librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=2048, hop_length=hop, n_mels=n_mels,
                                         fmax=sample_rate / 2)
    db = librosa.power_to_db(mel + 1e-10, ref=max(float(mel.max()), 1e-10), top_db=80.0)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        seconds = len(wav) / sample_rate
        image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
                          extent=(0.0, seconds, 0, n_mels))
        mel_freqs = librosa.mel_frequencies(n_mels=n_mels, fmax=sample_rate / 2)
        ticks = [i for i in range(0, n_mels, max(n_mels // 6, 1))]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{mel_freqs[i] / 1000:.1f}k" if mel_freqs[i] >= 1000 else f"{mel_freqs[i]:.0f}"
                            for i in ticks])
        ax.set_xlabel("time (s)")
        ax.set_ylabel("Hz (mel scale)")
        if title:
            ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=10)
        fig.colorbar(image, ax=ax, label="dB", pad=0.01)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save_spectrogram(path: str | os.PathLike[str], wav: np.ndarray, sample_rate: int,
                     title: str | None = None) -> Path:
    """Write :func:`spectrogram_png_bytes` to ``path`` atomically."""
    return atomic_write_bytes(path, spectrogram_png_bytes(wav, sample_rate, title))
