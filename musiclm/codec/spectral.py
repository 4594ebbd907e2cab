"""The spectral encoder and decoder: the codec's networks run at the code frame rate on STFT frames.

The encoder reads the log-magnitude STFT (``spectral_subframes`` STFT frames per code frame, stacked), runs
ConvNeXt blocks at 50 frames/s and projects to the latent the residual quantiser codes. The decoder runs
ConvNeXt blocks on the quantised latent and predicts, per STFT frame, a log-magnitude and a phase for every
bin; an inverse STFT turns them into the waveform (as the Vocos vocoder does). Neither network touches the
24 kHz sample rate, so both are far cheaper than SEANet's strided convolutions at the same width, and the
encoder sees pitch directly at the STFT's frequency resolution. Both are non-causal with a finite reach:
:meth:`reach_frames` bounds how many code frames either side one output depends on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.codec.config import CodecConfig

_LOG_FLOOR = 1e-5
_MAX_LOG_MAGNITUDE = 6.0  # exp(6) ~ 400: far above any STFT bin of audio within [-1, 1]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time -> LayerNorm -> pointwise MLP (GELU), scaled and added to the input."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, F]
        y = self.depthwise(x).transpose(1, 2)
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


def _blocks(cfg: CodecConfig) -> nn.Sequential:
    scale = 1.0 / cfg.spectral_blocks
    return nn.Sequential(*(ConvNeXtBlock(cfg.spectral_dim, cfg.spectral_ffn, cfg.spectral_kernel, scale)
                           for _ in range(cfg.spectral_blocks)))


class _ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``[B, D, F]`` tensor."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _SpectralNetwork(nn.Module):
    """What both sides share: the STFT framing (window, hop, STFT frames per code frame) and the ConvNeXt
    trunk between two channel norms."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.n_fft = cfg.spectral_fft
        self.stft_hop = cfg.hop_length // cfg.spectral_subframes
        self.subframes = cfg.spectral_subframes
        self.bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.norm_in = _ChannelNorm(cfg.spectral_dim)
        self.blocks = _blocks(cfg)
        self.norm_out = _ChannelNorm(cfg.spectral_dim)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.blocks(self.norm_in(x)))


class SpectralEncoder(_SpectralNetwork):
    """[B, 1, F * hop] -> [B, D, F]: log-magnitude STFT frames, stacked per code frame, through ConvNeXt."""

    def __init__(self, cfg: CodecConfig):
        super().__init__(cfg)
        self.project = nn.Conv1d(self.bins * self.subframes, cfg.spectral_dim, kernel_size=1)
        self.out = nn.Conv1d(cfg.spectral_dim, cfg.latent_dim, kernel_size=1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        audio = wav.squeeze(1).float()
        spec = torch.stft(audio, self.n_fft, self.stft_hop, window=self.window, center=True, pad_mode="constant",
                          return_complex=True)[..., :-1]  # [B, bins, F * subframes], frame j centred at j * hop
        logmag = torch.log(spec.abs().clamp_min(_LOG_FLOOR))
        batch, bins, frames = logmag.shape
        stacked = logmag.reshape(batch, bins, frames // self.subframes, self.subframes)
        stacked = stacked.permute(0, 3, 1, 2).reshape(batch, self.subframes * bins, frames // self.subframes)
        return self.out(self.trunk(self.project(stacked.to(self.project.weight.dtype))))


class SpectralDecoder(_SpectralNetwork):
    """[B, D, F] -> [B, 1, F * hop]: ConvNeXt, then per STFT frame a log-magnitude and phase, then iSTFT."""

    def __init__(self, cfg: CodecConfig):
        super().__init__(cfg)
        self.project = nn.Conv1d(cfg.latent_dim, cfg.spectral_dim, kernel_size=cfg.spectral_kernel,
                                 padding=cfg.spectral_kernel // 2)
        self.head = nn.Conv1d(cfg.spectral_dim, 2 * self.bins * self.subframes, kernel_size=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(self.project(latent))).float()  # [B, subframes * 2 * bins, F]
        batch, _, frames = out.shape
        out = out.reshape(batch, self.subframes, 2 * self.bins, frames).permute(0, 2, 3, 1)
        out = out.reshape(batch, 2 * self.bins, frames * self.subframes)
        log_magnitude, phase = out.split(self.bins, dim=1)
        spec = torch.polar(torch.exp(log_magnitude.clamp(max=_MAX_LOG_MAGNITUDE)), phase)
        wav = torch.istft(spec, self.n_fft, self.stft_hop, window=self.window, center=True,
                          length=frames * self.subframes * self.stft_hop)
        return wav.unsqueeze(1)


def reach_frames(cfg: CodecConfig) -> int:
    """Code frames on either side beyond which a code no longer depends on the audio, nor a decoded sample
    on the codes: half the STFT window, every block's kernel and the decoder's input convolution."""
    hop = cfg.hop_length
    window = -(-(cfg.spectral_fft // 2 + hop) // hop)
    per_side = cfg.spectral_blocks * (cfg.spectral_kernel // 2)
    encoder = window + per_side
    decoder = per_side + cfg.spectral_kernel // 2 + window
    return max(encoder, decoder) + 1
