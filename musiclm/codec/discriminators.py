"""Discriminators of the codec GAN: EnCodec's multi-scale STFT discriminator and HiFi-GAN's multi-period one.

Every discriminator returns ``(logits, features)``; :class:`Discriminators` runs them all on a ``[B, T]``
batch and returns one such pair per sub-discriminator. None of them uses batch statistics, so real and fake
audio can share one forward pass (which DDP needs: one forward per backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from musiclm.codec.config import DiscriminatorConfig

DiscOutput = tuple[torch.Tensor, list[torch.Tensor]]

_SLOPE = 0.2


class STFTDiscriminator(nn.Module):
    """2-D convolutions over the real and imaginary parts of one complex STFT (time x frequency)."""

    def __init__(self, n_fft: int, channels: int, dilations: tuple[int, ...], first_stride: int = 1):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), stride=(1, first_stride), padding=(1, 4)))]
        for dilation in dilations:
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                                padding=(dilation, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, window=self.window, center=True,
                          normalized=True, return_complex=True)  # [B, freq, time]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, time, freq]
        # channels-last runs these thin 2-D convolutions (and above all their backward) ~1.5x faster on CPU
        x = x.to(self.post.weight.dtype).contiguous(memory_format=torch.channels_last)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _SLOPE)
            features.append(x)
        return self.post(x), features


class PeriodDiscriminator(nn.Module):
    """The waveform folded into ``period`` columns; 2-D convolutions that stride along time only."""

    def __init__(self, period: int, channels: int, max_channels: int, num_layers: int):
        super().__init__()
        self.period = period
        layers, in_ch = [], 1
        for i in range(num_layers):
            out_ch = min(channels * 4**i, max_channels)
            layers.append(weight_norm(nn.Conv2d(in_ch, out_ch, (5, 1), stride=(3, 1), padding=(2, 0))))
            in_ch = out_ch
        layers.append(weight_norm(nn.Conv2d(in_ch, in_ch, (5, 1), padding=(2, 0))))
        self.layers = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(in_ch, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        missing = -wav.shape[-1] % self.period
        if missing:
            wav = F.pad(wav, (0, missing), mode="reflect" if wav.shape[-1] > missing else "constant")
        x = wav.reshape(wav.shape[0], 1, -1, self.period).to(self.post.weight.dtype)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), _SLOPE)
            features.append(x)
        return self.post(x), features


class Discriminators(nn.Module):
    """All sub-discriminators of a :class:`DiscriminatorConfig`.

    Biases start at zero: with PyTorch's default bias initialisation the untrained discriminator is a nearly
    constant function of its input (logits set by the biases), and it stayed at accuracy 0.5 for 50+ steps
    on an easy real-versus-low-passed task; with zero biases it separates them within ~20 steps (measured).
    """

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        config.validate()
        self.stft = nn.ModuleList(STFTDiscriminator(n, config.stft_channels, config.stft_dilations,
                                                    config.stft_first_stride) for n in config.stft_ffts)
        self.period = nn.ModuleList(PeriodDiscriminator(p, config.period_channels, config.period_max_channels,
                                                        config.period_layers) for p in config.periods)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, wav: torch.Tensor) -> list[DiscOutput]:
        """One ``(logits, features)`` per sub-discriminator for ``wav`` [B, T]."""
        return [d(wav) for d in self.stft] + [d(wav) for d in self.period]


def split_outputs(outputs: list[DiscOutput], real_size: int) -> tuple[list[DiscOutput], list[DiscOutput]]:
    """Split the outputs of a ``cat([real, fake])`` batch into the real half and the fake half."""
    real, fake = [], []
    for logits, features in outputs:
        real.append((logits[:real_size], [f[:real_size] for f in features]))
        fake.append((logits[real_size:], [f[real_size:] for f in features]))
    return real, fake
