"""MuLan's audio tower: log-mel windows -> one vector per window; long audio = mean over 10 s windows.

Two encoders share the front end: a small conv net (2-D stem, 1-D residual blocks, mean+std pooling) for
CPUs, and an audio spectrogram transformer (non-overlapping patches, factorised positions) at paper size.
The front end subtracts each window's mean log-energy, so the embedding does not depend on the gain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.features import LogMel
from musiclm.mulan.config import AudioTowerConfig


class ResidualBlock1d(nn.Module):
    """Pre-activation residual block of two dilated 1-D convolutions."""

    def __init__(self, channels: int, dilation: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(channels), nn.GELU(),
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.BatchNorm1d(channels), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """``[B, mels, frames]`` -> ``[B, out_dim]``: 2-D conv stages with 2x2 pooling, 1-D blocks, mean+std pooling."""

    def __init__(self, config: AudioTowerConfig, out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for channels in config.conv_channels:
            layers += [nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.GELU(),
                       nn.MaxPool2d(2)]
            previous = channels
        self.stem = nn.Sequential(*layers)
        flat = previous * (config.n_mels // 2 ** len(config.conv_channels))
        self.mix = nn.Conv1d(flat, config.hidden, 1)
        self.blocks = nn.Sequential(*[ResidualBlock1d(config.hidden, 2 ** (i % 4), config.dropout)
                                      for i in range(config.blocks)])
        self.norm = nn.BatchNorm1d(config.hidden)
        self.head = nn.Sequential(nn.Linear(2 * config.hidden, config.hidden), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.hidden, out_dim))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.stem(mel.unsqueeze(1))  # [B, C, mels', frames']
        x = self.mix(x.flatten(1, 2))
        x = F.gelu(self.norm(self.blocks(x)))
        pooled = torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=-1)
        return self.head(pooled)


class SpectrogramTransformer(nn.Module):
    """``[B, mels, frames]`` -> ``[B, out_dim]``: patch embedding, pre-norm Transformer, CLS + mean pooling.

    Positions are factorised (a frequency table plus a time table), so windows shorter than 10 s work.
    """

    def __init__(self, config: AudioTowerConfig, out_dim: int):
        super().__init__()
        self.patch_frames = config.patch_frames
        self.patch = nn.Conv2d(1, config.hidden, (config.patch_mels, config.patch_frames),
                               stride=(config.patch_mels, config.patch_frames))
        self.freq_pos = nn.Parameter(torch.zeros(config.n_mels // config.patch_mels, config.hidden))
        self.time_pos = nn.Parameter(torch.zeros(config.max_time_patches, config.hidden))
        self.cls = nn.Parameter(torch.zeros(1, 1, config.hidden))
        for table in (self.freq_pos, self.time_pos, self.cls):
            nn.init.trunc_normal_(table, std=0.02)
        layer = nn.TransformerEncoderLayer(config.hidden, config.heads, 4 * config.hidden, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(2 * config.hidden, out_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames = mel.shape[-1] - mel.shape[-1] % self.patch_frames
        x = self.patch(mel[..., :frames].unsqueeze(1))  # [B, D, F, T]
        _, _, n_freq, n_time = x.shape
        if n_time > self.time_pos.shape[0]:
            raise ValueError(f"window of {n_time} time patches exceeds max_time_patches={self.time_pos.shape[0]}")
        x = x.permute(0, 2, 3, 1) + self.freq_pos[:, None, :] + self.time_pos[None, :n_time, :]
        x = x.reshape(x.shape[0], n_freq * n_time, -1)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.encoder(x))
        return self.head(torch.cat([x[:, 0], x[:, 1:].mean(1)], dim=-1))


class AudioTower(nn.Module):
    """Waveforms (one window per row) -> unnormalised ``[B, out_dim]`` vectors."""

    def __init__(self, config: AudioTowerConfig, out_dim: int):
        super().__init__()
        self.config = config
        self.frontend = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels,
                               f_min=config.f_min, f_max=config.f_max)
        encoder = ConvEncoder if config.kind == "conv" else SpectrogramTransformer
        self.encoder = encoder(config, out_dim)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` -> gain-normalised log-mel ``[B, mels, frames]``."""
        mel = self.frontend(wav)
        return (mel - mel.mean(dim=(1, 2), keepdim=True)) / 4.0

    def spec_augment(self, mel: torch.Tensor) -> torch.Tensor:
        """Zero random bands of mel bins and frames (training only; torch's RNG, which the engine checkpoints)."""
        cfg = self.config
        batch, n_mels, frames = mel.shape
        mel = mel.clone()
        for _ in range(cfg.masks):
            for size, length, axis in ((cfg.freq_mask, n_mels, 1), (cfg.time_mask, frames, 2)):
                if size <= 0 or length <= 1:
                    continue
                width = torch.randint(0, min(size, length - 1) + 1, (batch,))
                start = (torch.rand(batch) * (length - width + 1)).long()
                positions = torch.arange(length)
                mask = (positions[None] >= start[:, None]) & (positions[None] < (start + width)[:, None])
                mask = mask.to(mel.device)
                mel = mel.masked_fill(mask[:, :, None] if axis == 1 else mask[:, None, :], 0.0)
        return mel

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Gain-normalised log-mel windows ``[B, mels, frames]`` -> ``[B, out_dim]``."""
        if self.training:
            mel = self.spec_augment(mel)
        return self.encoder(mel)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encode_mel(self.log_mel(wav))


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """First frames of the windows covering ``frames``: every ``stride``, plus one flush with the end.

    A signal no longer than one window is one window (starting at 0).
    """
    if frames <= window:
        return [0]
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts
