"""The melody embedding network: a ViT over a pitch spectrogram, one unit vector per 4 s window.

A plain ``nn.Module`` that does no I/O. The input is CQT-like: the STFT power spectrum (``torch.stft``)
pooled into log-spaced pitch bins (one or more per semitone, :func:`pitch_filterbank`), in dB. The encoder
normalises each window to its loudest bin (so gain does not matter), appends the octave-folded spectrum
(pitch classes) when configured, cuts the window into patches of a few frames by all bins, and runs a
pre-norm transformer; the mean of the output tokens is projected to ``embed_dim`` and L2-normalised.

Long audio is embedded window by window: windows of ``window_seconds`` start every ``hop_seconds``
(:func:`window_count`), all cut from one spectrogram of the whole signal, so a window's features do not
depend on where the signal was cut. Training crops are cut from cached spectrograms of whole clips the
same way (:meth:`MelodyEmbedder.embed_features` is the training call).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musiclm.features import Spectrogram
from musiclm.melody.config import EncoderConfig, FrontendConfig, MelodyConfig


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- frontend
def pitch_centres(config: FrontendConfig) -> np.ndarray:
    """Centre frequencies (Hz) of the pitch bins: ``bins_per_semitone`` per semitone from ``min_midi``."""
    steps = np.arange(config.pitch_bins) / config.bins_per_semitone
    return 440.0 * 2.0 ** ((config.min_midi + steps - 69.0) / 12.0)


def pitch_filterbank(config: FrontendConfig) -> np.ndarray:
    """``[pitch_bins, n_fft // 2 + 1]`` triangular weights pooling STFT bins into log-spaced pitch bins.

    A triangle spans one bin spacing on either side of its centre, or one STFT bin where that is wider (the
    lowest octave at short FFT sizes), so every row has weight; rows sum to one (a mean of powers).
    """
    freqs = np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft
    centres = pitch_centres(config)
    spacing = centres * (2.0 ** (1.0 / (12 * config.bins_per_semitone)) - 1.0)
    half_width = np.maximum(spacing, config.sample_rate / config.n_fft)
    weights = np.clip(1.0 - np.abs(freqs[None, :] - centres[:, None]) / half_width[:, None], 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


class PitchSpectrogram(nn.Module):
    """``[B, samples]`` -> pitch spectrogram in dB ``[B, pitch_bins, frames]`` (centred frames, 50/s by default)."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.spectrogram = Spectrogram(config.n_fft, config.hop_length, power=2.0)
        self.register_buffer("filterbank", torch.from_numpy(pitch_filterbank(config)), persistent=False)
        self.floor = 10.0 ** (config.floor_db / 10.0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        power = torch.matmul(self.filterbank, self.spectrogram(wav.float()))
        return 10.0 * torch.log10(power + self.floor)


def window_count(samples: int, config: MelodyConfig) -> int:
    """Windows of a signal of ``samples`` samples: window ``k`` starts at ``k * hop``; a window is kept when at
    least ``min_window_fraction`` of it is real audio, and there is always at least one."""
    window, hop = config.window_samples, config.hop_samples
    keep = config.min_window_fraction * window
    return max(1, int(math.floor((samples - keep) / hop)) + 1) if samples > keep else 1


# ----------------------------------------------------------------------------------------------- encoder
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU feed-forward, each with a residual."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim)
        self.attn = Attention(config.dim, config.heads, config.attention_head_dim, config.dropout)
        self.norm2 = nn.LayerNorm(config.dim)
        self.ffn = nn.Sequential(nn.Linear(config.dim, config.ffn), nn.GELU(), nn.Dropout(config.dropout),
                                 nn.Linear(config.ffn, config.dim))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class MelodyEncoder(nn.Module):
    """Pitch spectrogram windows (dB) ``[N, pitch_bins, window_frames]`` -> unit embeddings ``[N, embed_dim]``."""

    def __init__(self, config: MelodyConfig):
        super().__init__()
        self.config = config
        enc, front = config.encoder, config.frontend
        self.patches = config.window_frames // enc.patch_frames
        self.patch = nn.Linear(front.input_bins * enc.patch_frames, enc.dim)
        self.position = nn.Parameter(torch.randn(1, self.patches, enc.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(enc) for _ in range(enc.layers))
        self.norm = nn.LayerNorm(enc.dim)
        self.head = nn.Linear(enc.dim, config.embed_dim)
        self.apply(_init)

    def prepare(self, db: torch.Tensor) -> torch.Tensor:
        """dB windows -> the encoder input in [-1, 1]: relative to the window's loudest bin, clipped at
        ``range_db`` below it, with the octave-folded pitch classes appended as extra rows."""
        enc, front = self.config.encoder, self.config.frontend
        db = db.float()
        rows = [db]
        if front.chroma:
            per_octave = 12 * front.bins_per_semitone
            power = torch.pow(10.0, (db - db.amax(dim=(1, 2), keepdim=True)) / 10.0)
            folded = power.view(db.shape[0], front.octaves, per_octave, db.shape[2]).sum(1)
            rows.append(10.0 * torch.log10(folded + 1e-12))
        out = []
        for x in rows:
            x = (x - x.amax(dim=(1, 2), keepdim=True)).clamp_min(-enc.range_db)
            out.append(x / (enc.range_db / 2) + 1.0)
        return torch.cat(out, dim=1)

    def forward(self, db: torch.Tensor) -> torch.Tensor:
        if db.dim() != 3 or db.shape[1] != self.config.frontend.pitch_bins or db.shape[2] != self.config.window_frames:
            raise ValueError(f"expected [N, {self.config.frontend.pitch_bins}, {self.config.window_frames}] "
                             f"windows, got {tuple(db.shape)}")
        x = self.prepare(db)
        n, bins, _ = x.shape
        pf = self.config.encoder.patch_frames
        x = x.view(n, bins, self.patches, pf).permute(0, 2, 1, 3).reshape(n, self.patches, bins * pf)
        x = self.patch(x) + self.position
        for block in self.blocks:
            x = block(x)
        return F.normalize(self.head(self.norm(x).mean(dim=1)).float(), dim=-1)


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------- the model
class MelodyEmbedder(nn.Module):
    """Melody embedding model: audio -> pitch spectrogram -> one unit vector per window."""

    def __init__(self, config: MelodyConfig):
        super().__init__()
        config.validate()
        config.frontend.validate()
        config.encoder.validate()
        self.config = config
        self.frontend = PitchSpectrogram(config.frontend)
        self.encoder = MelodyEncoder(config)

    @property
    def device(self) -> torch.device:
        return self.encoder.position.device

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` (model sample rate) -> pitch spectrogram in dB ``[B, pitch_bins, frames]``."""
        return self.frontend(wav)

    def embed_features(self, db: torch.Tensor) -> torch.Tensor:
        """The training call: dB windows ``[N, pitch_bins, window_frames]`` -> unit vectors ``[N, embed_dim]``."""
        return self.encoder(db)

    forward = embed_features

    def windows(self, db: torch.Tensor, count: int) -> torch.Tensor:
        """Cut ``count`` windows (every ``hop_frames``) from a spectrogram ``[bins, frames]``, padding with
        silence: ``[count, bins, window_frames]``."""
        config = self.config
        need = (count - 1) * config.hop_frames + config.window_frames
        if db.shape[-1] < need:
            db = F.pad(db, (0, need - db.shape[-1]), value=config.frontend.floor_db)
        return db[..., :need].unfold(-1, config.window_frames, config.hop_frames).permute(1, 0, 2)

    def embed_signal(self, wav: torch.Tensor, window_batch: int = 64) -> torch.Tensor:
        """One signal ``[samples]`` at the model's rate, at least one window long -> ``[windows, embed_dim]``."""
        count = window_count(wav.shape[-1], self.config)
        need = (count - 1) * self.config.hop_samples + self.config.window_samples
        if wav.shape[-1] < need:
            wav = F.pad(wav, (0, need - wav.shape[-1]))
        db = self.features(wav.to(self.device)[None])[0]
        windows = self.windows(db, count)
        return torch.cat([self.embed_features(windows[i : i + window_batch])
                          for i in range(0, count, window_batch)])
