"""Configuration of the melody embedding model, its quantiser and its training.

:class:`MelodyConfig` is everything inference needs (saved beside exported weights). The presets of model
``"melody"`` are complete :class:`MelodyTrainingConfig` objects, so ``musiclm config show melody`` prints a
full, editable training config:

- ``small``: a 4-layer, 128-wide transformer over 160 ms time patches of a semitone spectrogram; 192-d
  embeddings; 12 x 256 quantiser. Trains on one CPU core in about an hour.
- ``paper``: MusicLM's melody model: a ViT with 12 layers, 6 heads, width 512 and FFN 1024 over a
  half-semitone spectrogram; 192-d embeddings per 4 s window with a 3 s hop; 24 x 512 quantiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from musiclm import SAMPLE_RATE
from musiclm.config import register_preset
from musiclm.errors import ConfigError
from musiclm.train.config import OptimizerConfig, TrainConfig


@dataclass
class FrontendConfig:
    """The pitch-sensitive input: STFT power pooled into log-spaced pitch bins (a CQT-like spectrogram, in dB)."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 4096  # 171 ms at 24 kHz: 5.9 Hz resolution, about a semitone at 100 Hz
    hop_length: int = 480  # 50 frames/s
    min_midi: int = 36  # centre of the lowest bin (C2, 65 Hz)
    octaves: int = 6  # up to C8 (4.2 kHz)
    bins_per_semitone: int = 1
    chroma: bool = True  # the encoder also sees the octave-folded spectrum (pitch classes)
    floor_db: float = -100.0  # power floor (absolute), the value of digital silence

    def validate(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "octaves", "bins_per_semitone"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if not 0 <= self.min_midi <= 127:
            raise ConfigError("min_midi must be a MIDI pitch (0-127)")
        top = 440.0 * 2.0 ** ((self.min_midi + 12 * self.octaves - 69) / 12.0)
        if top >= self.sample_rate / 2:
            raise ConfigError(f"the top pitch bin ({top:.0f} Hz) must lie below the Nyquist frequency")

    @property
    def pitch_bins(self) -> int:
        return 12 * self.octaves * self.bins_per_semitone

    @property
    def input_bins(self) -> int:
        """Rows the encoder sees per frame: the pitch bins plus one octave of chroma bins."""
        return self.pitch_bins + (12 * self.bins_per_semitone if self.chroma else 0)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class EncoderConfig:
    """A ViT over the normalised spectrogram of one window: patches of ``patch_frames`` frames by all bins."""

    dim: int = 128
    layers: int = 4
    heads: int = 4
    head_dim: int = 0  # 0: dim // heads; the paper's width 512 with 6 heads uses 64 (attention width 384)
    ffn: int = 256
    patch_frames: int = 8
    dropout: float = 0.1
    range_db: float = 80.0  # the input is clipped this far below the window's loudest bin

    def validate(self) -> None:
        for name in ("dim", "layers", "heads", "ffn", "patch_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.head_dim < 0:
            raise ConfigError("head_dim must be >= 0 (0 = dim // heads)")
        if self.head_dim == 0 and self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}; set head_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout must be within [0, 1)")
        if self.range_db <= 0:
            raise ConfigError("range_db must be positive")

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim or self.dim // self.heads


@dataclass
class MelodyQuantizerConfig:
    """Residual k-means over window embeddings: ``num_quantizers`` melody tokens per window."""

    num_quantizers: int = 12
    codebook_size: int = 256  # requested; a small fit set may shrink it (see min_points_per_code)
    min_points_per_code: int = 8
    fit_views: int = 2  # embeddings per training window: the window itself plus augmented shifted crops
    kmeans_iters: int = 50
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_quantizers", "min_points_per_code", "fit_views", "kmeans_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.codebook_size < 2:
            raise ConfigError("codebook_size must be >= 2")


@dataclass
class MelodyConfig:
    """The melody embedding model: one L2-normalised ``embed_dim`` vector per ``window_seconds`` window,
    windows every ``hop_seconds``."""

    embed_dim: int = 192
    window_seconds: float = 4.0
    hop_seconds: float = 3.0
    min_seconds: float = 1.0  # shorter melodies are refused; melodies shorter than a window are looped
    min_window_fraction: float = 0.5  # a trailing window is kept when this much of it is real audio
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    quantizer: MelodyQuantizerConfig = field(default_factory=MelodyQuantizerConfig)

    def validate(self) -> None:
        if self.embed_dim < 2:
            raise ConfigError("embed_dim must be >= 2")
        if self.window_seconds <= 0 or self.hop_seconds <= 0:
            raise ConfigError("window_seconds and hop_seconds must be positive")
        if not 0 < self.min_seconds <= self.window_seconds:
            raise ConfigError("min_seconds must be within (0, window_seconds]")
        if not 0.0 < self.min_window_fraction <= 1.0:
            raise ConfigError("min_window_fraction must be within (0, 1]")
        rate = self.frontend.frame_rate
        for name in ("window_seconds", "hop_seconds"):
            frames = getattr(self, name) * rate
            if abs(frames - round(frames)) > 1e-6:
                raise ConfigError(f"{name} must be a whole number of frames ({1 / rate:g} s each)")
        if self.window_frames % self.encoder.patch_frames:
            raise ConfigError(f"a window of {self.window_frames} frames is not a whole number of "
                              f"{self.encoder.patch_frames}-frame patches")

    @property
    def window_frames(self) -> int:
        return int(round(self.window_seconds * self.frontend.frame_rate))

    @property
    def hop_frames(self) -> int:
        return int(round(self.hop_seconds * self.frontend.frame_rate))

    @property
    def window_samples(self) -> int:
        return self.window_frames * self.frontend.hop_length

    @property
    def hop_samples(self) -> int:
        return self.hop_frames * self.frontend.hop_length


@dataclass
class FeatureAugmentConfig:
    """Augmentation of training crops in the spectrogram domain (drawn per item from the item's generator)."""

    eq_db: float = 4.0  # std of a smooth random EQ curve over the pitch bins (anchors every octave)
    eq_prob: float = 0.7
    noise_prob: float = 0.4
    snr_db: tuple[float, float] = (12.0, 40.0)  # noise floor below the crop's loudest bin
    time_masks: int = 1  # masks of up to ``time_mask_frames`` frames set to silence
    time_mask_frames: int = 8
    time_mask_prob: float = 0.3

    def validate(self) -> None:
        if self.eq_db < 0 or self.time_masks < 0 or self.time_mask_frames < 0:
            raise ConfigError("eq_db, time_masks and time_mask_frames must be >= 0")
        for name in ("eq_prob", "noise_prob", "time_mask_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1]")
        if self.snr_db[0] > self.snr_db[1]:
            raise ConfigError("snr_db must be (low, high)")


@dataclass
class MelodyTrainingConfig:
    """Everything ``musiclm melody train`` needs: model, views, loss, augmentation and engine settings.

    A dataset item is one melody and a partner (its hard-negative twin when it has one, else a melody in the
    same key, else any other), ``views_per_melody`` versions of each, all cut at the same point of the tune;
    ``train.batch_size`` counts items.
    """

    model: MelodyConfig = field(default_factory=MelodyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: FeatureAugmentConfig = field(default_factory=FeatureAugmentConfig)
    margin: float = 0.2  # triplet margin on squared distances of unit vectors (range 0-4)
    views_per_melody: int = 2
    twin_prob: float = 0.75  # chance that a melody with a hard-negative twin gets the twin as its partner
    same_key_prob: float = 0.5  # otherwise: chance that the partner is a melody in the same key and mode
    crop_jitter_seconds: float = 0.08  # positives are cut up to this far apart
    tail_crop_prob: float = 0.1  # crops that run past the end of the clip (padded, as the last window of a clip)
    eval_melodies: int = 100  # held-out (valid) melodies ranked by the evaluation hook (0 = none)

    def validate(self) -> None:
        if self.margin <= 0:
            raise ConfigError("margin must be positive")
        if self.views_per_melody < 2:
            raise ConfigError("views_per_melody must be >= 2 (anchor and positive)")
        for name in ("twin_prob", "same_key_prob", "tail_crop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1]")
        if self.crop_jitter_seconds < 0 or self.eval_melodies < 0:
            raise ConfigError("crop_jitter_seconds and eval_melodies must be >= 0")


def small_melody() -> MelodyConfig:
    """0.64M parameters: 4 layers x 128 over 25 patches of 160 ms (72 semitone bins + 12 chroma bins)."""
    return MelodyConfig()


def paper_melody() -> MelodyConfig:
    """The paper's sizes: ViT 12 layers, 6 heads, d 512, FFN 1024; 192-d per 4 s window, 3 s hop; RVQ 24 x 512."""
    return MelodyConfig(
        frontend=FrontendConfig(min_midi=33, octaves=7, bins_per_semitone=2),
        encoder=EncoderConfig(dim=512, layers=12, heads=6, head_dim=64, ffn=1024, patch_frames=4),
        quantizer=MelodyQuantizerConfig(num_quantizers=24, codebook_size=512, min_points_per_code=16,
                                        fit_views=4, kmeans_iters=100),
    )


@register_preset("melody", "small")
def small_training() -> MelodyTrainingConfig:
    """A CPU run: batches of 16 items (64 crops of 4 s), 8000 steps: about an hour on one (busy) core."""
    return MelodyTrainingConfig(
        model=small_melody(),
        train=TrainConfig(
            max_steps=8000, batch_size=16, checkpoint_every=1000, eval_every=500, sample_every=1_000_000,
            log_every=25, checkpoint_minutes=10.0,
            optimizer=OptimizerConfig(name="adamw", lr=3e-4, weight_decay=0.02, warmup_steps=300,
                                      min_lr_ratio=0.05, grad_clip=2.0),  # 1e-3 collapses the triplet loss
        ),
    )


@register_preset("melody", "paper")
def paper_training() -> MelodyTrainingConfig:
    """GPU training: batches of 64 items per rank (256 crops; negatives gathered across ranks), EMA weights."""
    return MelodyTrainingConfig(
        model=paper_melody(),
        train=TrainConfig(
            max_steps=200_000, batch_size=64, num_workers=4, ema_decay=0.999, checkpoint_every=5000,
            eval_every=5000, sample_every=1_000_000, log_every=50,
            optimizer=OptimizerConfig(name="adamw", lr=3e-4, weight_decay=0.05, warmup_steps=4000,
                                      min_lr_ratio=0.05, grad_clip=1.0),
        ),
        eval_melodies=100,
    )
