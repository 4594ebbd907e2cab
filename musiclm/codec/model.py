"""SoundStream: an encoder/decoder with a residual vector quantiser in between.

The default (``architecture: seanet``) is SoundStream's causal, streamable SEANet; the spectral networks
are in ``spectral.py``. In SEANet every convolution is causal (padded on the left only) and every stride is
matched by a transposed convolution whose right overhang is trimmed, so a code frame depends only on the
audio up to its own end and decoded sample ``t`` only on code frames up to the one holding ``t``: the codec
streams with one frame (``hop_length`` samples, 20 ms) of latency. Weight normalisation is used for training;
:func:`remove_weight_norm` folds it into plain weights for inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from musiclm.codec.config import CodecConfig
from musiclm.codec.quantizer import ResidualQuantizer
from musiclm.codec.spectral import SpectralDecoder, SpectralEncoder, reach_frames


def _zero_bias(conv: nn.Module) -> nn.Module:
    """Start biases at zero. PyTorch's default (uniform +-1/sqrt(fan_in), +-0.4 for the first layer) is far
    larger than audio-driven activations, so after ~20 layers the latent is a large constant offset plus a
    ~2 % signal; Adam then moves that offset by more than the signal's spread every step and every RVQ
    level collapses onto 1-2 codes (measured)."""
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)
    return conv


class CausalConv1d(nn.Module):
    """Conv1d padded on the left so that output ``i`` sees inputs up to ``(i + 1) * stride - 1``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = weight_norm(_zero_bias(nn.Conv1d(in_channels, out_channels, kernel_size, stride,
                                                     dilation=dilation)))
        self.padding = (kernel_size - 1) * dilation + 1 - stride
        if self.padding < 0:
            raise ValueError("kernel_size must be at least the stride")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.padding, 0)))


class CausalConvTranspose1d(nn.Module):
    """Transposed conv upsampling by ``stride``; the right overhang is trimmed so output length = in * stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = weight_norm(_zero_bias(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)))
        self.trim = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim] if self.trim else y


class ResidualUnit(nn.Module):
    """ELU -> dilated causal conv (channels / compress) -> ELU -> 1x1 conv, plus the identity."""

    def __init__(self, channels: int, dilation: int, kernel_size: int, compress: int):
        super().__init__()
        hidden = max(1, channels // compress)
        self.block = nn.Sequential(
            nn.ELU(),
            CausalConv1d(channels, hidden, kernel_size, dilation=dilation),
            nn.ELU(),
            CausalConv1d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _channels(base: int, level: int, cap: int) -> int:
    return min(base * 2**level, cap)


class Encoder(nn.Module):
    """[B, 1, T] -> [B, D, T / hop]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, _channels(cfg.encoder_channels, 0, cfg.max_channels),
                                                cfg.kernel_size)]
        for level, stride in enumerate(cfg.strides):
            channels = _channels(cfg.encoder_channels, level, cfg.max_channels)
            if level > 0 or cfg.full_rate_residuals:
                layers += [ResidualUnit(channels, d, cfg.residual_kernel_size, cfg.compress)
                           for d in cfg.dilations]
            out = _channels(cfg.encoder_channels, level + 1, cfg.max_channels)
            layers += [nn.ELU(), CausalConv1d(channels, out, 2 * stride, stride=stride)]
        top = _channels(cfg.encoder_channels, len(cfg.strides), cfg.max_channels)
        layers += [nn.ELU(), CausalConv1d(top, cfg.latent_dim, cfg.kernel_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)


class Decoder(nn.Module):
    """[B, D, F] -> [B, 1, F * hop]."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        depth = len(cfg.strides)
        top = _channels(cfg.decoder_channels, depth, cfg.max_channels)
        layers: list[nn.Module] = [CausalConv1d(cfg.latent_dim, top, cfg.kernel_size)]
        for i, stride in enumerate(reversed(cfg.strides)):
            level = depth - i
            channels = _channels(cfg.decoder_channels, level, cfg.max_channels)
            out = _channels(cfg.decoder_channels, level - 1, cfg.max_channels)
            layers += [nn.ELU(), CausalConvTranspose1d(channels, out, 2 * stride, stride)]
            if level > 1 or cfg.full_rate_residuals:
                layers += [ResidualUnit(out, d, cfg.residual_kernel_size, cfg.compress) for d in cfg.dilations]
        layers += [nn.ELU(), CausalConv1d(_channels(cfg.decoder_channels, 0, cfg.max_channels), 1, cfg.kernel_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, T]
    codes: torch.Tensor  # [B, levels, F]
    commitment: torch.Tensor  # scalar
    levels: int


class SoundStream(nn.Module):
    """Encoder -> residual vector quantiser -> decoder, on ``[B, T]`` waveforms at ``config.sample_rate``."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        config.validate()
        self.config = config
        spectral = config.architecture == "spectral"
        self.encoder = SpectralEncoder(config) if spectral else Encoder(config)
        self.quantizer = ResidualQuantizer(config)
        self.decoder = SpectralDecoder(config) if spectral else Decoder(config)
        self.tokenizer_frozen = False

    def freeze_tokenizer(self) -> SoundStream:
        """Fix the encoder and quantiser (no gradients, no codebook or statistics updates, even in training
        mode), so only the decoder learns and the codes of any audio stay exactly what they were: every token
        store and generation stage made with this codec stays valid (the training config's ``decoder_only``)."""
        self.tokenizer_frozen = True
        self.encoder.requires_grad_(False)
        self.quantizer.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True) -> SoundStream:
        super().train(mode)
        if self.tokenizer_frozen:
            self.encoder.eval()
            self.quantizer.eval()
        return self

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 2:
            raise ValueError(f"expected [batch, samples], got shape {tuple(wav.shape)}")
        missing = -wav.shape[-1] % self.hop_length
        return F.pad(wav, (0, missing)) if missing else wav

    def _latent(self, wav: torch.Tensor) -> torch.Tensor:
        """The encoder's latent [B, D, ceil(T / hop)] of waveforms [B, T] (zero-padded to whole frames)."""
        return self.encoder(self._pad(wav).unsqueeze(1))

    def _synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, F * hop] of a latent [B, D, F], cast to the decoder's dtype."""
        dtype = next(self.decoder.parameters()).dtype
        return self.decoder(latent.to(dtype)).squeeze(1)

    def forward(self, wav: torch.Tensor, levels: int | None = None) -> CodecOutput:
        """Encode, quantise (updating codebooks in training) and decode; output length = input length."""
        length = wav.shape[-1]
        if levels is None and self.training and self.tokenizer_frozen:
            levels = self.quantizer.training_levels()  # quantiser dropout still trains the decoder on 3/6/9 levels
        latent = self._latent(wav)
        q = self.quantizer(latent, levels)
        audio = self.decoder(q.quantized.to(latent.dtype)).squeeze(1)[..., :length]
        return CodecOutput(audio, q.codes, q.commitment, q.levels)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Codes [B, levels, ceil(T / hop)] of waveforms [B, T] (the end is zero-padded to whole frames)."""
        return self.quantizer.encode(self._latent(wav), levels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, F * hop] of codes [B, levels, F] (any number of leading levels)."""
        return self._synthesize(self.quantizer.decode(codes))

    @torch.no_grad()
    def reconstruct_unquantized(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, T] of waveforms [B, T] through the encoder and decoder alone, skipping the quantiser
        (the ceiling that the quantiser's bit rate is measured against)."""
        return self._synthesize(self._latent(wav))[..., : wav.shape[-1]]

    def lookahead_frames(self) -> int:
        """Code frames of right context a code or a decoded sample depends on (0: SEANet is causal)."""
        return reach_frames(self.config) if self.config.architecture == "spectral" else 0

    def receptive_field_frames(self) -> int:
        """Code frames of left context after which neither a code nor a decoded sample depends on earlier
        input (chunked encoding/decoding with this much overlap equals processing the whole signal)."""
        if self.config.architecture == "spectral":
            return reach_frames(self.config)
        reach, jump = 0, 1  # encoder: input samples that one code frame sees
        for module in self.encoder.modules():
            if isinstance(module, CausalConv1d):
                conv = module.conv
                reach += (conv.kernel_size[0] - 1) * conv.dilation[0] * jump
                jump *= conv.stride[0]
        back, unit = 0, 1  # decoder: output samples back to the earliest code a sample depends on
        for module in reversed(list(self.decoder.modules())):
            if isinstance(module, CausalConv1d):
                back += (module.conv.kernel_size[0] - 1) * module.conv.dilation[0] * unit
            elif isinstance(module, CausalConvTranspose1d):
                stride = module.conv.stride[0]
                back += 2 * stride * unit
                unit *= stride
        return max(-(-reach // self.hop_length), -(-back // self.hop_length)) + 1


def folded_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state with weight normalisation folded in, keyed as in a model without it; the module is
    left as it is (removing parametrisations from a deep copy would break the original, which shares its
    parametrised classes)."""
    state = {k: v for k, v in module.state_dict().items() if ".parametrizations." not in k}
    for name, child in module.named_modules():
        if parametrize.is_parametrized(child, "weight"):
            state[f"{name}.weight" if name else "weight"] = child.weight.detach()
    return state


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold weight normalisation into plain weights (faster inference; outputs unchanged)."""
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
