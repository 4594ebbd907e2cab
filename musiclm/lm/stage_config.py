"""Configuration of a generation stage: its token layout, its Transformer, its window and its sampling defaults.

:class:`StageConfig` is what inference needs (saved beside exported weights); :class:`StageTrainingConfig`
adds the engine settings. Presets are registered per stage as models ``lm-semantic``, ``lm-coarse`` and
``lm-fine`` (``musiclm config show lm-coarse``).

Windows: a stage is trained on crops of ``window_seconds`` and generates in windows of the same length; after
the first window each new one keeps ``window_seconds - stride_seconds`` of what was already generated as its
context and adds ``stride_seconds`` of new tokens (MusicLM: 30 s semantic windows with a 15 s stride).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from musiclm.config import register_preset
from musiclm.errors import ConfigError
from musiclm.lm.config import TRANSFORMER_PRESETS, TransformerConfig
from musiclm.lm.layout import STAGES, StageLayout, TokenSpaces, stage_layout
from musiclm.lm.sampling import SamplingParams
from musiclm.train.config import OptimizerConfig, TrainConfig

DEFAULT_SAMPLING = {
    "semantic": SamplingParams(temperature=1.0, top_k=None, top_p=None, cfg_scale=3.0),
    "coarse": SamplingParams(temperature=0.95, top_k=None, top_p=None, cfg_scale=3.0),
    "fine": SamplingParams(temperature=0.4, top_k=None, top_p=None, cfg_scale=1.0),
}
"""MusicLM's temperatures (1.0 / 0.95 / 0.4); guidance 3.0 on the stages that see MuLan tokens."""
CONTOUR_STAGES = ("semantic", "coarse")
"""The stages that can take a pitch contour (the ones that also see MuLan tokens)."""


@dataclass
class StageConfig:
    """One stage: which layout, which Transformer, which window, which sampling defaults."""

    stage: str = "semantic"
    tokens: TokenSpaces = field(default_factory=TokenSpaces)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    window_seconds: float = 10.0
    stride_seconds: float = 5.0
    condition_dropout: float = 0.1  # probability that a training sequence sees null MuLan tokens (for CFG)
    melody_dropout: float = 0.5  # semantic stage with melody tokens: share of windows trained without them
    sampling: SamplingParams = field(default_factory=SamplingParams)
    semantic_conditioning: bool = True  # coarse stage only: False = the ablation without semantic tokens
    store_fingerprint: str = ""  # the token store (codec + semantic tokenizer + MuLan) the stage was trained on
    melody_fingerprint: str = ""  # semantic stage with melody conditioning: the melody model of its tokens
    contour_conditioning: bool = False  # semantic or coarse stage: also take the pitch contour (a store's)
    contour_dropout: float = 0.3  # with the contour: share of windows trained without it (text-only still works)
    contour_fingerprint: str = ""  # the pitch-contour extractor (settings) the stage was trained with
    mulan_modulation: bool = False  # semantic or coarse stage: MuLan tokens also modulate every block (adaLN)

    def __post_init__(self) -> None:
        if self.transformer.prefix_modulation != self.prefix_modulation():  # the flag decides, also under --set
            self.transformer = replace(self.transformer, prefix_modulation=self.prefix_modulation())

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        self.tokens.validate()
        self.sampling.validate()
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ConfigError("condition_dropout must be within [0, 1)")
        if not 0.0 <= self.melody_dropout <= 1.0:
            raise ConfigError("melody_dropout must be within [0, 1]")
        if not 0.0 <= self.contour_dropout <= 1.0:
            raise ConfigError("contour_dropout must be within [0, 1]")
        if self.tokens.contour_values and self.stage not in CONTOUR_STAGES:
            raise ConfigError(f"only the {' and '.join(CONTOUR_STAGES)} stages take a pitch contour")
        if self.transformer.aligned_vocab != self.aligned_vocab():
            raise ConfigError(f"transformer.aligned_vocab {self.transformer.aligned_vocab} != "
                              f"{self.aligned_vocab()} for {self.tokens.contour_values} contour values "
                              f"(use StageConfig.resolved())")
        if self.transformer.prefix_modulation != self.prefix_modulation():
            raise ConfigError(f"transformer.prefix_modulation {self.transformer.prefix_modulation} != "
                              f"{self.prefix_modulation()} for mulan_modulation={self.mulan_modulation} "
                              f"(use StageConfig.resolved())")
        if self.window_seconds <= 0 or not 0 < self.stride_seconds <= self.window_seconds:
            raise ConfigError("need 0 < stride_seconds <= window_seconds")
        layout = self.layout()
        if self.mulan_modulation and not layout.uses_mulan:
            raise ConfigError(f"the {self.stage} stage takes no MuLan tokens, so it has none for mulan_modulation")
        if self.stride_frames(layout) < 1:
            raise ConfigError(f"stride_seconds {self.stride_seconds} is shorter than one {self.stage} frame")
        needed = self.sequence_length(layout)
        transformer = self.transformer
        if transformer.vocab_size != layout.vocab_size:
            raise ConfigError(f"transformer.vocab_size {transformer.vocab_size} != the {self.stage} layout's "
                              f"{layout.vocab_size} (use StageConfig.resolved())")
        if transformer.max_seq_len < needed:
            raise ConfigError(f"transformer.max_seq_len {transformer.max_seq_len} < the {needed} tokens of one "
                              f"{self.window_seconds} s window")
        transformer.validate()

    def layout(self) -> StageLayout:
        return stage_layout(self.stage, self.tokens, self.semantic_conditioning)

    def _frames(self, seconds: float, layout: StageLayout) -> int:
        frames = int(round(seconds * layout.frame_rate))
        if self.stage != "semantic":  # acoustic windows cover whole semantic frames
            step = self.tokens.acoustic_per_semantic
            frames = max(step, frames // step * step)
        return frames

    def window_frames(self, layout: StageLayout | None = None) -> int:
        """Target frames of one window (= one training crop)."""
        return self._frames(self.window_seconds, layout or self.layout())

    def stride_frames(self, layout: StageLayout | None = None) -> int:
        """New target frames each window after the first adds."""
        layout = layout or self.layout()
        return min(self._frames(self.stride_seconds, layout), self.window_frames(layout))

    def condition_length(self, layout: StageLayout | None = None) -> int:
        """Tokens of the condition prefix of one full window (SEP included)."""
        layout = layout or self.layout()
        s = self.tokens
        frames = self.window_frames(layout)
        if self.stage == "semantic":
            return s.mulan_levels + s.melody_slots * s.melody_levels + 1
        if self.stage == "coarse":
            if not self.semantic_conditioning:
                return s.mulan_levels + 1
            return s.mulan_levels + math.ceil(frames / s.acoustic_per_semantic) + 1
        return frames * s.coarse_levels + 1

    def sequence_length(self, layout: StageLayout | None = None) -> int:
        """Tokens of one full window: condition + targets."""
        layout = layout or self.layout()
        return self.condition_length(layout) + self.window_frames(layout) * layout.levels

    def aligned_vocab(self) -> int:
        """Size of the Transformer's aligned embedding: contour values + 1 (0 = none), or 0 without a contour."""
        return self.tokens.contour_values + 1 if self.tokens.contour_values else 0

    def prefix_modulation(self) -> int:
        """Leading tokens that modulate every block: the MuLan tokens with ``mulan_modulation``, else none."""
        return self.tokens.mulan_levels if self.mulan_modulation else 0

    def resolved(self) -> StageConfig:
        """This config with the Transformer's vocabulary and length set from the layout."""
        layout = self.layout()
        transformer = replace(self.transformer, vocab_size=layout.vocab_size, aligned_vocab=self.aligned_vocab(),
                              prefix_modulation=self.prefix_modulation(),
                              max_seq_len=max(self.transformer.max_seq_len, self.sequence_length(layout)))
        return replace(self, transformer=transformer)


@dataclass
class StageTrainingConfig:
    """Everything ``musiclm lm train`` needs besides the token store."""

    model: StageConfig = field(default_factory=StageConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batches: int = 8  # validation crops = eval_batches x batch_size (fixed, seeded)
    sample_every_eval: bool = False
    level_softmax: bool = True  # cross-entropy over each target's own level range (what sampling draws from)
    init_from: str = ""  # an exported stage folder whose weights start a fresh run (fine-tuning; "" = random)

    def validate(self) -> None:
        self.model.validate()
        self.train.validate()
        if self.eval_batches < 1:
            raise ConfigError("eval_batches must be >= 1")


_WINDOWS = {  # (window, stride) seconds per stage and preset
    # small: sized for CPU training. A training step costs about 6 x parameters x tokens, and one 4 s coarse
    # window is 913 tokens (8 s per batch-8 step on one loaded core), a 2 s one 463; the acoustic stages are
    # local (AudioLM's fine stage sees 3 s), the long-range structure lives in the 10 s semantic windows.
    "small": {"semantic": (10.0, 5.0), "coarse": (2.0, 1.0), "fine": (1.0, 0.5)},
    "paper": {"semantic": (30.0, 15.0), "coarse": (10.0, 5.0), "fine": (3.0, 1.5)},
}


def stage_preset(stage: str, size: str) -> StageTrainingConfig:
    """The training config of ``stage`` at preset ``size`` (vocabulary resolved for the default token spaces)."""
    window, stride = _WINDOWS[size][stage]
    transformer = TransformerConfig(**TRANSFORMER_PRESETS[size])
    model = StageConfig(stage=stage, transformer=transformer, window_seconds=window, stride_seconds=stride,
                        sampling=DEFAULT_SAMPLING[stage]).resolved()
    if size == "small":
        train = TrainConfig(max_steps=20_000, batch_size=8, checkpoint_every=1000, checkpoint_minutes=10.0,
                            log_every=10, sample_every=1_000_000, eval_every=500,
                            optimizer=OptimizerConfig(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.05,
                                                      warmup_steps=500, grad_clip=1.0))
    else:
        train = TrainConfig(max_steps=200_000, batch_size=16, checkpoint_every=2000, log_every=50,
                            sample_every=1_000_000, eval_every=2000, ema_decay=None,
                            optimizer=OptimizerConfig(lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                                      warmup_steps=4000, grad_clip=1.0))
    return StageTrainingConfig(model=model, train=train)


for _stage in STAGES:
    for _size in ("small", "paper"):
        register_preset(f"lm-{_stage}", _size)(lambda stage=_stage, size=_size: stage_preset(stage, size))
