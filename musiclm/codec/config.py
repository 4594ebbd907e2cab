"""Configuration of the SoundStream codec: the model, its discriminators, its losses and its training.

:class:`CodecConfig` is everything inference needs (it is saved beside exported weights). The presets of
model ``"codec"`` are complete :class:`CodecTrainingConfig` objects (model + discriminators + losses +
engine settings), so ``musiclm config show codec`` prints a full, editable training config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from musiclm import SAMPLE_RATE
from musiclm.config import register_preset
from musiclm.errors import ConfigError
from musiclm.train.config import OptimizerConfig, TrainConfig

ARCHITECTURES = ("seanet", "spectral")
SPECTRAL_FIELDS = ("architecture", "spectral_fft", "spectral_subframes", "spectral_dim", "spectral_ffn",
                   "spectral_blocks", "spectral_kernel")
"""Fields that only the spectral architecture reads (left out of a SEANet codec's fingerprints, which were
computed before they existed)."""

BITRATES_KBPS = (1.5, 3.0, 6.0)
"""The bit rates the codec is trained to serve (3, 6 and 12 RVQ levels at 50 frames/s x 10 bits)."""


@dataclass
class CodecConfig:
    """An encoder/decoder around a residual vector quantiser (SoundStream).

    ``architecture`` picks the networks: ``"seanet"``, SoundStream's causal strided convolutions on the
    waveform, or ``"spectral"``, ConvNeXt blocks at the code frame rate on STFT frames with an inverse-STFT
    output (see ``spectral.py``). The quantiser, code rate and bit rates are the same for both.
    """

    sample_rate: int = SAMPLE_RATE
    architecture: str = "seanet"
    strides: tuple[int, ...] = (8, 5, 4, 3)  # encoder order; the decoder runs them reversed; product = hop
    encoder_channels: int = 16  # channels of the first (full-rate) block; doubled after every stride
    decoder_channels: int = 16  # channels of the last (full-rate) decoder block
    max_channels: int = 512
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in every block
    full_rate_residuals: bool = False  # residual units also at the full sample rate (most of the CPU cost)
    kernel_size: int = 7  # first and last convolutions
    residual_kernel_size: int = 3
    compress: int = 2  # residual units squeeze channels by this factor inside
    latent_dim: int = 64  # bottleneck and codebook dimension D
    num_quantizers: int = 12
    codebook_size: int = 1024
    coarse_levels: int = 4  # MusicLM's coarse stage models levels 1-4, the fine stage 5-12
    # quantiser training (EMA codebooks, k-means initialisation, dead-code replacement)
    kmeans_init: bool = True  # k-means on the first init_vectors latents (else random codes)
    init_vectors: int = 8192
    quantizer_warmup_batches: int = 0  # train as a plain autoencoder this long before collecting for k-means
    normalize_latent: bool = True  # quantise the latent centred/scaled by running statistics (see quantizer.py)
    latent_stats_decay: float = 0.5  # fast: the offset moves about one spread per step early in training
    kmeans_iters: int = 20
    codebook_decay: float = 0.99
    dead_code_window: float = 4.0  # a code unused over the last window x codebook_size vectors is re-seeded
    quantizer_dropout: float = 0.5  # probability that a batch is coded with 3, 6 or 9 levels only
    dropout_levels_multiple: int = 3  # dropped bit rates keep a multiple of this many levels
    # the spectral architecture (unused by seanet)
    spectral_fft: int = 1024  # STFT window of the encoder's input and the decoder's output
    spectral_subframes: int = 2  # STFT frames per code frame (STFT hop = hop_length / this)
    spectral_dim: int = 256  # width of the ConvNeXt blocks
    spectral_ffn: int = 640  # hidden width of their MLPs
    spectral_blocks: int = 5  # blocks in the encoder and again in the decoder
    spectral_kernel: int = 7  # depthwise kernel over code frames (odd)

    def validate(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError("sample_rate must be positive")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.architecture == "spectral":
            for name in ("spectral_fft", "spectral_subframes", "spectral_dim", "spectral_ffn", "spectral_blocks"):
                if getattr(self, name) < 1:
                    raise ConfigError(f"{name} must be >= 1")
            if self.hop_length % self.spectral_subframes:
                raise ConfigError("spectral_subframes must divide the hop length")
            if self.spectral_fft < 2 * (self.hop_length // self.spectral_subframes):
                raise ConfigError("spectral_fft must be at least twice the STFT hop (hop_length / spectral_subframes)"
                                  ", or the inverse STFT leaves the end of every signal silent")
            if self.spectral_kernel < 1 or self.spectral_kernel % 2 == 0:
                raise ConfigError("spectral_kernel must be a positive odd number")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ConfigError("strides must be a non-empty list of positive integers")
        for name in ("encoder_channels", "decoder_channels", "max_channels", "latent_dim", "kernel_size",
                     "residual_kernel_size", "compress", "num_quantizers", "codebook_size", "kmeans_iters",
                     "init_vectors", "dropout_levels_multiple"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if any(d < 1 for d in self.dilations):
            raise ConfigError("dilations must be positive")
        if not 1 <= self.coarse_levels <= self.num_quantizers:
            raise ConfigError("coarse_levels must be within [1, num_quantizers]")
        if not 0.0 < self.codebook_decay < 1.0 or not 0.0 <= self.latent_stats_decay < 1.0:
            raise ConfigError("codebook_decay must be within (0, 1) and latent_stats_decay within [0, 1)")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ConfigError("quantizer_dropout must be within [0, 1]")
        if self.quantizer_warmup_batches < 0:
            raise ConfigError("quantizer_warmup_batches must be >= 0")
        if self.dead_code_window < 0:
            raise ConfigError("dead_code_window must be >= 0 (0 turns dead-code replacement off)")

    @property
    def hop_length(self) -> int:
        """Samples per code frame (the total stride)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bits_per_level(self) -> float:
        return math.log2(self.codebook_size)

    def levels_for_bitrate(self, kbps: float) -> int:
        """RVQ levels that give ``kbps`` (1.5/3/6 kbps = 3/6/12 levels at the paper's settings)."""
        levels = kbps * 1000.0 / (self.frame_rate * self.bits_per_level)
        rounded = round(levels)
        if abs(levels - rounded) > 1e-6 or rounded not in self.served_levels():
            served = ", ".join(f"{self.bitrate_for_levels(n):g}" for n in self.served_levels())
            raise ConfigError(f"bitrate {kbps:g} kbps is not served by this codec; choose one of {served}")
        return rounded

    def served_levels(self) -> list[int]:
        """Level counts the codec is trained to decode: multiples of ``dropout_levels_multiple`` and all."""
        step = self.dropout_levels_multiple
        return sorted({n for n in range(step, self.num_quantizers, step)} | {self.num_quantizers})

    def bitrate_for_levels(self, levels: int) -> float:
        """kbps of ``levels`` RVQ levels."""
        return levels * self.frame_rate * self.bits_per_level / 1000.0


@dataclass
class DiscriminatorConfig:
    """EnCodec's multi-scale STFT discriminator plus HiFi-GAN's multi-period waveform discriminator."""

    stft_ffts: tuple[int, ...] = (2048, 1024, 512)  # one complex-STFT discriminator per window length
    stft_channels: int = 32
    stft_dilations: tuple[int, ...] = (1, 2, 4)
    stft_first_stride: int = 1  # 2 halves the frequency axis in the first layer (half the compute)
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)  # one period discriminator each; empty = none
    period_channels: int = 32  # first layer; grows x4 per layer up to period_max_channels
    period_max_channels: int = 512
    period_layers: int = 4

    def validate(self) -> None:
        if not self.stft_ffts and not self.periods:
            raise ConfigError("at least one discriminator (stft_ffts or periods) is needed")
        if any(n < 16 for n in self.stft_ffts):
            raise ConfigError("stft_ffts must be >= 16")
        if any(p < 2 for p in self.periods):
            raise ConfigError("periods must be >= 2")
        for name in ("stft_channels", "stft_first_stride", "period_channels", "period_max_channels",
                     "period_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


@dataclass
class LossConfig:
    """Reconstruction, adversarial and commitment terms and how they are weighed.

    With ``balancer`` the gradients that the waveform-level terms send into the decoder output are rescaled
    so each term contributes ``weight / sum(weights)`` of a unit-norm gradient (EnCodec's loss balancer);
    the result no longer depends on the scale of any one loss. Commitment is added outside the balancer.
    """

    time_l1: float = 0.1
    mel: float = 1.0
    stft: float = 1.0
    adversarial: float = 3.0
    feature_matching: float = 3.0
    commitment: float = 1.0
    balancer: bool = True
    mel_ffts: tuple[int, ...] = (256, 512, 1024, 2048)  # hop = n_fft / 4
    mel_bins: tuple[int, ...] = (32, 64, 80, 128)
    stft_ffts: tuple[int, ...] = (512, 1024, 2048)

    def validate(self) -> None:
        for name in ("time_l1", "mel", "stft", "adversarial", "feature_matching", "commitment"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if len(self.mel_ffts) != len(self.mel_bins):
            raise ConfigError("mel_ffts and mel_bins must have the same length")
        if self.mel + self.stft + self.time_l1 <= 0:
            raise ConfigError("at least one reconstruction weight (mel, stft, time_l1) must be positive")


@dataclass
class CodecTrainingConfig:
    """Everything ``musiclm codec train`` needs: model, discriminators, losses, data and engine settings."""

    model: CodecConfig = field(default_factory=CodecConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    crop_seconds: float = 1.0
    adversarial_start: int = 2000  # generator steps on reconstruction losses alone before the GAN starts
    discriminator_warmup: int = 200  # the discriminator trains this many steps before it steers the codec
    adversarial_ramp: int = 500  # the GAN terms' weight grows linearly from 0 over this many steps
    eval_clips: int = 8
    eval_seconds: float = 4.0
    sample_clips: int = 2
    init_from: str = ""  # an exported codec folder whose weights start a fresh run ("" = random)
    decoder_only: bool = False  # train the decoder alone: encoder and quantiser fixed, so the codes never change

    def validate(self) -> None:
        if self.decoder_only and not self.init_from:
            raise ConfigError("decoder_only needs init_from: the exported codec whose encoder and quantiser stay fixed")
        if self.crop_seconds * self.model.sample_rate < self.model.hop_length:
            raise ConfigError("crop_seconds must hold at least one code frame")
        if min(self.adversarial_start, self.discriminator_warmup, self.adversarial_ramp) < 0:
            raise ConfigError("adversarial_start, discriminator_warmup and adversarial_ramp must be >= 0")
        if self.eval_clips < 0 or self.sample_clips < 0 or self.eval_seconds <= 0:
            raise ConfigError("eval_clips and sample_clips must be >= 0, eval_seconds positive")

    @property
    def discriminator_start(self) -> int:
        return max(0, self.adversarial_start - self.discriminator_warmup)

    def adversarial_scale(self, step: int) -> float:
        """0 before ``adversarial_start``, then a linear ramp to 1 over ``adversarial_ramp`` steps."""
        if step < self.adversarial_start:
            return 0.0
        return min(1.0, (step - self.adversarial_start + 1) / max(1, self.adversarial_ramp))


def small_codec() -> CodecConfig:
    """About 1 M parameters (no residual units at the full sample rate); decodes ~100x real time on 2 CPU cores."""
    return CodecConfig()


def spectral_codec() -> CodecConfig:
    """About 4 M parameters, all running at 50 frames/s: twice SEANet-small's size at a lower CPU cost."""
    return CodecConfig(architecture="spectral")


def paper_codec() -> CodecConfig:
    """SoundStream-sized (as in MusicLM: 24 kHz, stride 480, 12 x 1024 RVQ); meant for GPUs."""
    return CodecConfig(strides=(3, 4, 5, 8), full_rate_residuals=True, encoder_channels=32, decoder_channels=32,
                       latent_dim=128, max_channels=1024)


def _discriminator_optimizer() -> OptimizerConfig:
    """The discriminator's schedule counts from its own first step: a short warmup, or it would still be
    near its random start (logits ~0, accuracy 0.5, measured) when its gradients reach the codec."""
    return OptimizerConfig(name="adamw", lr=3e-4, betas=(0.5, 0.9), weight_decay=0.0, warmup_steps=20,
                           min_lr_ratio=0.1, grad_clip=100.0)


@register_preset("codec", "small")
def small_training() -> CodecTrainingConfig:
    """Trains on one CPU machine: a light multi-scale STFT discriminator only (as EnCodec), 1 s crops."""
    return CodecTrainingConfig(
        model=small_codec(),
        discriminator=DiscriminatorConfig(stft_ffts=(1024, 512, 256), stft_channels=8, stft_first_stride=2,
                                          periods=()),
        train=TrainConfig(
            max_steps=60_000, batch_size=8, checkpoint_every=2000, sample_every=2000, eval_every=2000,
            log_every=25,
            optimizer=OptimizerConfig(name="adamw", lr=3e-4, betas=(0.5, 0.9), weight_decay=0.0,
                                      warmup_steps=500, min_lr_ratio=0.1, grad_clip=100.0),
            phase_optimizers={"disc": _discriminator_optimizer()},
        ),
        crop_seconds=1.0,
        adversarial_start=3000,
        discriminator_warmup=500,
        adversarial_ramp=1000,
    )


@register_preset("codec", "spectral")
def spectral_training() -> CodecTrainingConfig:
    """The spectral codec on one CPU machine: 1 s crops, batch 16, the GAN from step 20,000 (a GPU's share)."""
    base = small_training()
    base.model = spectral_codec()
    base.train.batch_size = 16
    base.train.optimizer.lr = 5e-4
    base.adversarial_start = 20_000
    return base


@register_preset("codec", "paper")
def paper_training() -> CodecTrainingConfig:
    """SoundStream/EnCodec-scale training on GPUs (EnCodec: batch 64 x 1 s, lr 3e-4, betas 0.5/0.9)."""
    return CodecTrainingConfig(
        model=paper_codec(),
        discriminator=DiscriminatorConfig(),
        train=TrainConfig(
            max_steps=400_000, batch_size=32, num_workers=8, checkpoint_every=5000, sample_every=5000,
            eval_every=5000, log_every=50,
            optimizer=OptimizerConfig(name="adamw", lr=3e-4, betas=(0.5, 0.9), weight_decay=0.0,
                                      warmup_steps=2000, min_lr_ratio=0.1, grad_clip=100.0),
            phase_optimizers={"disc": _discriminator_optimizer()},
        ),
        crop_seconds=1.0,
        adversarial_start=10_000,
        discriminator_warmup=1000,
        adversarial_ramp=2000,
    )
