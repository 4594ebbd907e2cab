"""Configuration of the semantic tokenizer: the self-supervised model, its targets, k-means and training.

:class:`SemanticModelConfig` is everything inference needs (saved beside exported weights). The presets of
model ``"semantic"`` are complete :class:`SemanticTrainingConfig` objects (model + targets + tokenizer +
engine settings), so ``musiclm config show semantic`` prints a full, editable training config.

Frame rate: the model emits exactly ``sample_rate / frame_hop`` = 25 frames per second (hop 960 samples at
24 kHz); an input of ``T`` samples gives ``ceil(T / 960)`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from musiclm import SAMPLE_RATE
from musiclm.config import register_preset
from musiclm.errors import ConfigError
from musiclm.train.config import OptimizerConfig, TrainConfig

TOKEN_RATE = 25
"""Semantic tokens per second (MusicLM: w2v-BERT at 25 Hz)."""

TARGET_FEATURES = ("chroma", "mfcc", "onset", "logmel", "teacher")
"""Feature groups a masked-prediction codebook can be fit on (``teacher`` = a trained model's layer)."""


@dataclass
class SemanticModelConfig:
    """Log-mel front end -> conv feature encoder (4x down to 25 Hz) -> Transformer encoder -> target heads."""

    sample_rate: int = SAMPLE_RATE
    frame_hop: int = 960  # samples per output frame: 24 kHz / 960 = 25 frames/s
    n_fft: int = 2048
    mel_hop: int = 240  # log-mel frames per output frame = frame_hop / mel_hop (4)
    n_mels: int = 128
    f_min: float = 30.0
    f_max: float | None = 11_000.0
    conv_channels: int = 256
    d_model: int = 256
    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    pos_conv_kernel: int = 31  # convolutional relative position embedding (odd, at 25 Hz)
    pos_conv_groups: int = 16
    target_sizes: tuple[int, ...] = (64, 32)  # one head per target codebook (the recipe sets these)

    def validate(self) -> None:
        for name in ("sample_rate", "frame_hop", "n_fft", "mel_hop", "n_mels", "conv_channels", "d_model",
                     "num_layers", "num_heads", "ffn_dim", "pos_conv_kernel", "pos_conv_groups"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.frame_hop % self.mel_hop:
            raise ConfigError(f"mel_hop ({self.mel_hop}) must divide frame_hop ({self.frame_hop})")
        if self.d_model % self.num_heads:
            raise ConfigError(f"num_heads ({self.num_heads}) must divide d_model ({self.d_model})")
        if self.d_model % self.pos_conv_groups:
            raise ConfigError(f"pos_conv_groups ({self.pos_conv_groups}) must divide d_model ({self.d_model})")
        if self.pos_conv_kernel % 2 == 0:
            raise ConfigError("pos_conv_kernel must be odd (a centred convolution)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be within [0, 1)")
        if not self.target_sizes or any(k < 2 for k in self.target_sizes):
            raise ConfigError("target_sizes must be a non-empty list of codebook sizes >= 2")
        if self.f_max is not None and not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError("need 0 <= f_min < f_max <= sample_rate / 2")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_hop

    @property
    def mel_per_frame(self) -> int:
        return self.frame_hop // self.mel_hop


@dataclass
class TargetConfig:
    """The discrete targets of masked prediction: one k-means codebook per feature group.

    Iteration 0 uses hand-made features: ``chroma`` (harmony and melody) and ``onset`` (rhythm). ``mfcc``
    (timbre) is available but left out by default: with it, the tokens carried markedly more timbre and less
    melody (lead-instrument NMI 0.43 vs 0.31, melody pitch-class NMI 0.30 vs 0.35 in the same CPU budget).
    Iteration 1 uses ``teacher``: k-means on layer ``teacher_layer`` of a trained model.
    """

    iteration: int = 0
    features: tuple[str, ...] = ("chroma", "onset")
    clusters: tuple[int, ...] = (64, 32)  # codebook size per feature group
    teacher: str | None = None  # run folder or exported model folder of the iteration-0 model
    teacher_layer: int = 4
    teacher_clusters: int = 256  # codebook size of iteration 1 (``--iteration 1`` uses it)
    fit_clips: int = 400  # training clips the target k-means is fit on
    fit_frames: int = 100_000  # at most this many frames (sampled evenly) go into each k-means
    kmeans_batch: int = 4096
    seed: int = 0

    def validate(self) -> None:
        if self.iteration not in (0, 1):
            raise ConfigError("iteration must be 0 or 1")
        unknown = [f for f in self.features if f not in TARGET_FEATURES]
        if unknown or not self.features:
            raise ConfigError(f"features must be a non-empty list from {TARGET_FEATURES}, got {list(self.features)}")
        if len(set(self.features)) != len(self.features):
            raise ConfigError("features must not repeat")
        if len(self.clusters) != len(self.features) or any(k < 2 for k in self.clusters):
            raise ConfigError("clusters needs one codebook size >= 2 per feature group")
        if self.teacher_layer < 1 or self.teacher_clusters < 2:
            raise ConfigError("teacher_layer must be >= 1 and teacher_clusters >= 2")
        for name in ("fit_clips", "fit_frames", "kmeans_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


@dataclass
class MaskingConfig:
    """Span masking of the frames the model must predict (HuBERT style)."""

    mask_prob: float = 0.13  # probability that a frame starts a masked span
    mask_length: int = 5  # frames per span (0.2 s at 25 Hz)
    unmasked_weight: float = 0.0  # loss weight of the frames that were not masked

    def validate(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError("mask_prob must be within (0, 1)")
        if self.mask_length < 1:
            raise ConfigError("mask_length must be >= 1")
        if self.unmasked_weight < 0:
            raise ConfigError("unmasked_weight must be >= 0")


@dataclass
class TokenizerConfig:
    """Which layer is clustered, into how many tokens, and how long inputs are windowed."""

    layer: int = 4
    num_clusters: int = 512
    kmeans_clips: int = 1000  # training clips the token k-means is fit on
    kmeans_frames: int = 200_000
    kmeans_batch: int = 4096
    kmeans_seed: int = 0
    chunk_seconds: float = 30.0  # inputs longer than this are tokenized in windows ...
    context_seconds: float = 5.0  # ... with this much context on each side

    def validate(self) -> None:
        for name in ("layer", "kmeans_clips", "kmeans_frames", "kmeans_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.num_clusters < 2:
            raise ConfigError("num_clusters must be >= 2")
        if self.chunk_seconds <= 0 or self.context_seconds < 0:
            raise ConfigError("chunk_seconds must be positive and context_seconds >= 0")


@dataclass
class SemanticTrainingConfig:
    """Everything ``musiclm semantic train`` needs besides the corpus folders."""

    model: SemanticModelConfig = field(default_factory=SemanticModelConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    crop_seconds: float = 4.0  # 100 frames: several bars at any usual tempo
    gain_jitter_db: float = 6.0  # random gain of each training crop (+-), loudness is not semantic
    eval_clips: int = 16

    def validate(self) -> None:
        self.model.validate()
        self.targets.validate()
        self.masking.validate()
        self.tokenizer.validate()
        self.train.validate()
        if self.crop_seconds <= 0:
            raise ConfigError("crop_seconds must be positive")
        if self.gain_jitter_db < 0:
            raise ConfigError("gain_jitter_db must be >= 0")
        if self.tokenizer.layer > self.model.num_layers:
            raise ConfigError(f"tokenizer.layer ({self.tokenizer.layer}) exceeds model.num_layers "
                              f"({self.model.num_layers})")


@register_preset("semantic", "small")
def small_semantic() -> SemanticTrainingConfig:
    """CPU-trainable in hours: 6 layers x 256 (5.5M parameters), 4 s crops, 10k steps, 512 tokens from layer 4.

    About 0.45 steps/s on one CPU thread (batch 8 x 4 s): 10k steps take about 6 hours.
    """
    return SemanticTrainingConfig(
        train=TrainConfig(
            max_steps=10_000, batch_size=8, checkpoint_every=500, checkpoint_minutes=5.0, log_every=10,
            sample_every=1_000_000, eval_every=500,
            optimizer=OptimizerConfig(lr=8e-4, warmup_steps=300, weight_decay=0.01, grad_clip=1.0),
        ),
    )


@register_preset("semantic", "paper")
def paper_semantic() -> SemanticTrainingConfig:
    """w2v-BERT-sized for GPUs: 24 layers x 1024 (about 300M parameters), layer 7, 1024 clusters."""
    return SemanticTrainingConfig(
        model=SemanticModelConfig(conv_channels=512, d_model=1024, num_layers=24, num_heads=16, ffn_dim=4096,
                                  pos_conv_kernel=63),
        targets=TargetConfig(clusters=(256, 128), teacher_layer=8, teacher_clusters=500, fit_clips=20_000,
                             fit_frames=1_000_000, kmeans_batch=16_384),
        tokenizer=TokenizerConfig(layer=7, num_clusters=1024, kmeans_clips=50_000, kmeans_frames=2_000_000,
                                  kmeans_batch=16_384),
        crop_seconds=10.0,
        train=TrainConfig(
            max_steps=400_000, batch_size=32, num_workers=8, checkpoint_every=5000, eval_every=5000,
            sample_every=1_000_000, ema_decay=None,
            optimizer=OptimizerConfig(lr=2e-4, warmup_steps=32_000, weight_decay=0.01, grad_clip=1.0),
        ),
    )
