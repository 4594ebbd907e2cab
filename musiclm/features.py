"""Spectral features on ``torch.stft``: log-mel, chroma and framing, batched, on CPU or GPU.

The feature extractors are ``nn.Module``s holding their filterbanks as buffers, so ``.to(device)``
moves them with the model that owns them. Inputs are ``[samples]`` or ``[batch, samples]`` float
tensors; outputs are ``[batch, bins, frames]``.
"""

from __future__ import annotations

import librosa
import torch
from torch import nn

from musiclm import SAMPLE_RATE


def _as_batch(wav: torch.Tensor) -> torch.Tensor:
    if wav.dim() == 1:
        return wav.unsqueeze(0)
    if wav.dim() != 2:
        raise ValueError(f"expected [samples] or [batch, samples], got shape {tuple(wav.shape)}")
    return wav


def num_frames(samples: int, hop_length: int) -> int:
    """Number of frames a centred STFT with ``hop_length`` gives for ``samples`` samples."""
    return samples // hop_length + 1


class Spectrogram(nn.Module):
    """Magnitude (``power=1``) or power (``power=2``) spectrogram with a Hann window."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 240, power: float = 1.0, center: bool = True):
        super().__init__()
        self.n_fft, self.hop_length, self.power, self.center = n_fft, hop_length, power, center
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        wav = _as_batch(wav)
        spec = torch.stft(
            wav.float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=self.center,
            pad_mode="constant",
            return_complex=True,
        )
        return spec.abs().pow(self.power)


class LogMel(nn.Module):
    """Log-compressed mel spectrogram: ``log(mel + eps)``, shape ``[batch, n_mels, frames]``."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 1024,
        hop_length: int = 240,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 2.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, hop_length, power=power)
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.eps = eps
        self.hop_length = hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.spectrogram(wav)
        return torch.log(torch.matmul(self.mel_basis, spec) + self.eps)


class Chroma(nn.Module):
    """12-bin chromagram from an STFT, each frame normalised to unit max (as librosa's ``chroma_stft``)."""

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, n_fft: int = 4096, hop_length: int = 480, eps: float = 1e-8
    ):
        super().__init__()
        self.spectrogram = Spectrogram(n_fft, hop_length, power=2.0)
        fb = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft)
        self.register_buffer("chroma_basis", torch.from_numpy(fb).float(), persistent=False)
        self.eps = eps
        self.hop_length = hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        chroma = torch.matmul(self.chroma_basis, self.spectrogram(wav))
        return chroma / chroma.amax(dim=1, keepdim=True).clamp_min(self.eps)


def frame_signal(wav: torch.Tensor, frame_length: int, hop_length: int, pad_end: bool = True) -> torch.Tensor:
    """Cut ``[batch, samples]`` into ``[batch, frames, frame_length]`` windows (a view when possible).

    With ``pad_end`` the last partial frame is zero-padded so every sample lands in some frame.
    """
    wav = _as_batch(wav)
    if frame_length <= 0 or hop_length <= 0:
        raise ValueError("frame_length and hop_length must be positive")
    samples = wav.shape[-1]
    if pad_end:
        frames = max(1, -(-max(samples - frame_length, 0) // hop_length) + 1)
        needed = (frames - 1) * hop_length + frame_length
        if needed > samples:
            wav = torch.nn.functional.pad(wav, (0, needed - samples))
    elif samples < frame_length:
        raise ValueError(f"signal of {samples} samples is shorter than one frame of {frame_length}")
    return wav.unfold(-1, frame_length, hop_length)


def frame_rms(wav: torch.Tensor, frame_length: int = 2048, hop_length: int = 512) -> torch.Tensor:
    """Root-mean-square level per frame, ``[batch, frames]``."""
    return frame_signal(wav, frame_length, hop_length).pow(2).mean(-1).sqrt()


_CHROMA_MODULES: dict[tuple[int, int, int], Chroma] = {}


def chroma_and_rms(wav: torch.Tensor, sample_rate: int, n_fft: int, hop_length: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chroma ``[batch, 12, frames]`` (:class:`Chroma`) and the RMS of the same centred frames ``[batch, frames]``
    of ``[samples]`` or ``[batch, samples]`` audio; the filterbank of each setting is built once."""
    wav = _as_batch(wav)
    key = (sample_rate, n_fft, hop_length)
    if key not in _CHROMA_MODULES:
        _CHROMA_MODULES[key] = Chroma(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length)
    chroma = _CHROMA_MODULES[key].to(wav.device)(wav)
    padded = torch.nn.functional.pad(wav, (n_fft // 2, n_fft // 2))
    return chroma, frame_rms(padded, n_fft, hop_length)[:, : chroma.shape[-1]]
