"""Token layouts of the three generation stages: which vocabularies, in which order, at which offsets.

Every stage is the same decoder-only Transformer over one flat vocabulary; a layout maps the stage's inputs
(MuLan tokens, semantic tokens, acoustic RVQ codes) into that vocabulary and back:

========  ===================================================  =====================================
stage     condition (prefix)                                    targets (sampled, frame-major)
========  ===================================================  =====================================
semantic  MuLan tokens (Q) · SEP                                semantic tokens, 25 per second
coarse    MuLan tokens (Q) · semantic tokens of the window · SEP  RVQ levels 1..4, 50 frames per second
fine      coarse codes of the window (4 per frame) · SEP        RVQ levels 5..12, 50 frames per second
========  ===================================================  =====================================

Multi-level targets are flattened frame by frame (``a1 a2 a3 a4`` of frame 0, then of frame 1, ...), as in
AudioLM, each level with its own vocabulary range so a step can only emit a code of the level it is at. MuLan
positions have "null" counterparts: condition dropout during training and classifier-free guidance at
inference replace the Q MuLan tokens by the Q null tokens, which keeps every sequence the same length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from musiclm.errors import ConfigError

STAGES = ("semantic", "coarse", "fine")
PAD = 0
SEP = 1
NUM_SPECIAL = 2
IGNORE = -100
"""Label value of positions that carry no loss (conditions, padding)."""


@dataclass
class TokenSpaces:
    """The sizes of the token vocabularies a stage sees (set from the token store it trains on)."""

    mulan_levels: int = 12
    mulan_codebook: int = 1024
    semantic_clusters: int = 1024
    acoustic_codebook: int = 1024
    coarse_levels: int = 4
    fine_levels: int = 8
    semantic_rate: int = 25
    acoustic_rate: int = 50
    melody_levels: int = 0  # melody tokens per melody window (0: the semantic stage takes no melody)
    melody_codebook: int = 0
    melody_slots: int = 0  # melody windows in one semantic-stage condition
    melody_hop_seconds: float = 3.0  # time between melody windows (the melody model's hop)
    contour_values: int = 0  # semantic/coarse stage: pitch-contour values per frame (0: it takes no contour)

    def validate(self) -> None:
        for name in ("mulan_levels", "mulan_codebook", "semantic_clusters", "acoustic_codebook", "coarse_levels",
                     "semantic_rate", "acoustic_rate"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tokens.{name} must be >= 1")
        if self.fine_levels < 0:
            raise ConfigError("tokens.fine_levels must be >= 0")
        if self.melody_levels < 0 or (self.melody_levels and (self.melody_codebook < 1 or self.melody_slots < 1)):
            raise ConfigError("melody conditioning needs melody_levels >= 1, melody_codebook >= 1 and "
                              "melody_slots >= 1 (or melody_levels 0 for none)")
        if self.contour_values < 0:
            raise ConfigError("tokens.contour_values must be >= 0 (0 for no pitch contour)")
        if self.melody_hop_seconds <= 0:
            raise ConfigError("tokens.melody_hop_seconds must be positive")
        if self.acoustic_rate % self.semantic_rate:
            raise ConfigError(f"the acoustic rate ({self.acoustic_rate} Hz) must be a multiple of the semantic "
                              f"rate ({self.semantic_rate} Hz)")

    @property
    def acoustic_per_semantic(self) -> int:
        return self.acoustic_rate // self.semantic_rate

    @property
    def acoustic_levels(self) -> int:
        return self.coarse_levels + self.fine_levels


class Vocabulary:
    """Named, contiguous ranges of one flat vocabulary, after the special tokens PAD and SEP."""

    def __init__(self, segments: list[tuple[str, int]]):
        self._ranges: dict[str, tuple[int, int]] = {}
        offset = NUM_SPECIAL
        for name, size in segments:
            if name in self._ranges:
                raise ConfigError(f"vocabulary segment {name!r} appears twice")
            self._ranges[name] = (offset, offset + size)
            offset += size
        self.size = offset

    def range(self, name: str) -> tuple[int, int]:
        """``[lo, hi)`` of a segment."""
        return self._ranges[name]

    def offset(self, name: str) -> int:
        return self._ranges[name][0]

    def __contains__(self, name: str) -> bool:
        return name in self._ranges

    def segments(self) -> dict[str, tuple[int, int]]:
        return dict(self._ranges)


class StageLayout:
    """How one stage lays out its condition and targets in its vocabulary.

    ``levels`` target values per frame; ``frame_rate`` target frames per second. Subclasses define the
    condition; the target side is shared.
    """

    name: str = ""
    uses_mulan: bool = False

    def __init__(self, spaces: TokenSpaces):
        spaces.validate()
        self.spaces = spaces
        segments: list[tuple[str, int]] = []
        if self.uses_mulan:
            segments.append(("mulan_null", spaces.mulan_levels))
            segments += [(f"mulan{q}", spaces.mulan_codebook) for q in range(spaces.mulan_levels)]
        segments += self._segments()
        self.vocab = Vocabulary(segments)
        offsets = [self.vocab.offset(name) for name in self.target_segments]
        self._target_offsets = torch.tensor(offsets, dtype=torch.long)
        self._target_sizes = torch.tensor([self.vocab.range(n)[1] - self.vocab.range(n)[0]
                                           for n in self.target_segments], dtype=torch.long)

    # -- what subclasses define
    def _segments(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    @property
    def target_segments(self) -> list[str]:
        raise NotImplementedError

    @property
    def frame_rate(self) -> int:
        raise NotImplementedError

    # -- sizes
    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    @property
    def levels(self) -> int:
        return len(self.target_segments)

    # -- MuLan conditioning
    def mulan_tokens(self, mulan: torch.Tensor) -> torch.Tensor:
        """``[B, Q]`` MuLan token ids -> their vocabulary ids."""
        if not self.uses_mulan:
            raise ConfigError(f"the {self.name} stage takes no MuLan tokens")
        q = self.spaces.mulan_levels
        if mulan.dim() != 2 or mulan.shape[1] != q:
            raise ConfigError(f"expected MuLan tokens of shape [batch, {q}], got {tuple(mulan.shape)}")
        _check_range(mulan, self.spaces.mulan_codebook, "MuLan token")
        offsets = torch.tensor([self.vocab.offset(f"mulan{i}") for i in range(q)], device=mulan.device)
        return mulan.long() + offsets

    def null_mulan(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``[B, Q]`` null tokens that stand for "no condition"."""
        lo, hi = self.vocab.range("mulan_null")
        return torch.arange(lo, hi, device=device).expand(batch, -1)

    def drop_condition(self, sequence: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Replace the MuLan tokens (the first Q positions) of the rows where ``drop`` is true by null tokens."""
        if not self.uses_mulan or not bool(drop.any()):
            return sequence
        q = self.spaces.mulan_levels
        out = sequence.clone()
        null = self.null_mulan(int(drop.sum()), sequence.device)
        out[drop, :q] = null
        return out

    # -- targets
    def encode_targets(self, values: torch.Tensor) -> torch.Tensor:
        """``[B, frames, levels]`` (or ``[B, frames]`` for one level) values -> ``[B, frames * levels]`` ids."""
        if values.dim() == 2:
            values = values.unsqueeze(-1)
        if values.dim() != 3 or values.shape[-1] != self.levels:
            raise ConfigError(f"expected {self.name} targets of shape [batch, frames, {self.levels}], "
                              f"got {tuple(values.shape)}")
        _check_range(values, int(self._target_sizes.max()), f"{self.name} target")
        ids = values.long() + self._target_offsets.to(values.device)
        return ids.reshape(values.shape[0], -1)

    def decode_targets(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, frames * levels]`` ids (starting at level 0) -> ``[B, frames, levels]`` values."""
        if ids.shape[-1] % self.levels:
            raise ConfigError(f"{ids.shape[-1]} tokens are not whole frames of {self.levels} levels")
        values = ids.reshape(ids.shape[0], -1, self.levels) - self._target_offsets.to(ids.device)
        sizes = self._target_sizes.to(ids.device)
        if bool((values < 0).any()) or bool((values >= sizes).any()):
            raise ConfigError(f"token ids outside the {self.name} target ranges")
        return values

    def target_ranges(self, frames: int) -> torch.Tensor:
        """``[frames * levels, 2]`` vocabulary range ``[lo, hi)`` of every sampling step (level 0 first)."""
        lo = self._target_offsets
        ranges = torch.stack([lo, lo + self._target_sizes], dim=-1)
        return ranges.repeat(frames, 1)

    def target_level_of(self, length: int) -> torch.Tensor:
        """``[length]`` level index of each position of a flattened target sequence."""
        return torch.arange(length) % self.levels

    # -- pitch contour (an aligned condition: one value per target frame)
    def contour_ids(self, contour: torch.Tensor | None, condition_length: int, frames: int, batch: int
                    ) -> torch.Tensor:
        """The aligned ids ``[B, condition_length + frames * levels - 1]`` of a window's input positions: the
        position that predicts a token of target frame ``f`` carries frame ``f``'s contour value + 1 (every
        level of a frame the same value); condition positions before SEP, and every position when ``contour``
        (``[B, >= frames]`` values, one per target frame) is None, carry 0 ("none")."""
        levels = self.levels
        ids = torch.zeros(batch, condition_length + frames * levels - 1, dtype=torch.long)
        if contour is None:
            return ids
        values = self.spaces.contour_values
        if not values:
            raise ConfigError(f"this {self.name} stage was trained without a pitch contour")
        if contour.dim() != 2 or contour.shape[0] != batch or contour.shape[1] < frames:
            raise ConfigError(f"expected a pitch contour of shape [{batch}, >= {frames}], got {tuple(contour.shape)}")
        _check_range(contour[:, :frames], values, "pitch contour value")
        ids[:, condition_length - 1:] = (contour[:, :frames].long().cpu() + 1).repeat_interleave(levels, dim=1)
        return ids

    def sequence(self, condition: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Condition ids followed by target ids."""
        return torch.cat([condition, targets], dim=1)


class SemanticLayout(StageLayout):
    """MuLan tokens -> semantic tokens."""

    name = "semantic"
    uses_mulan = True

    def _segments(self) -> list[tuple[str, int]]:
        s = self.spaces
        melody = []
        if s.melody_levels:
            melody = [("melody_null", s.melody_levels)] + [(f"melody{q}", s.melody_codebook)
                                                          for q in range(s.melody_levels)]
        return [*melody, ("semantic", s.semantic_clusters)]

    @property
    def target_segments(self) -> list[str]:
        return ["semantic"]

    @property
    def frame_rate(self) -> int:
        return self.spaces.semantic_rate

    def condition(self, mulan: torch.Tensor, melody: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, Q + 1]``: MuLan tokens then SEP; with melody conditioning ``[B, Q + slots * levels + 1]``:
        MuLan tokens, the melody tokens ``[B, slots, levels]`` (null tokens where ``melody`` is None), SEP."""
        sep = torch.full((mulan.shape[0], 1), SEP, dtype=torch.long, device=mulan.device)
        parts = [self.mulan_tokens(mulan)]
        if self.spaces.melody_levels:
            parts.append(self.melody_tokens(melody, mulan.shape[0], mulan.device))
        elif melody is not None:
            raise ConfigError("this semantic stage was trained without melody conditioning")
        return torch.cat([*parts, sep], dim=1)

    def melody_tokens(self, melody: torch.Tensor | None, batch: int,
                      device: torch.device | str = "cpu") -> torch.Tensor:
        """Melody token values ``[B, slots, levels]`` (or None: the null tokens) -> ``[B, slots * levels]`` ids."""
        s = self.spaces
        if melody is None:
            lo, hi = self.vocab.range("melody_null")
            return torch.arange(lo, hi, device=device).repeat(s.melody_slots).expand(batch, -1)
        if melody.dim() != 3 or melody.shape[0] != batch or melody.shape[1:] != (s.melody_slots, s.melody_levels):
            raise ConfigError(f"expected melody tokens of shape [{batch}, {s.melody_slots}, {s.melody_levels}], "
                              f"got {tuple(melody.shape)}")
        _check_range(melody, s.melody_codebook, "melody token")
        offsets = torch.tensor([self.vocab.offset(f"melody{q}") for q in range(s.melody_levels)], device=melody.device)
        return (melody.long() + offsets).reshape(batch, -1)


class CoarseLayout(StageLayout):
    """MuLan tokens + semantic tokens -> the first ``coarse_levels`` RVQ levels."""

    name = "coarse"
    uses_mulan = True

    def __init__(self, spaces: TokenSpaces, semantic_conditioning: bool = True):
        self.semantic_conditioning = semantic_conditioning
        super().__init__(spaces)

    def _segments(self) -> list[tuple[str, int]]:
        s = self.spaces
        return [("semantic", s.semantic_clusters)] + [(f"acoustic{q}", s.acoustic_codebook)
                                                       for q in range(s.coarse_levels)]

    @property
    def target_segments(self) -> list[str]:
        return [f"acoustic{q}" for q in range(self.spaces.coarse_levels)]

    @property
    def frame_rate(self) -> int:
        return self.spaces.acoustic_rate

    def condition(self, mulan: torch.Tensor, semantic: torch.Tensor | None) -> torch.Tensor:
        """``[B, Q + S + 1]``: MuLan tokens, the window's semantic tokens ``[B, S]``, SEP.

        Without semantic conditioning (the paper's ablation) the semantic tokens are left out: ``[B, Q + 1]``.
        """
        sep = torch.full((mulan.shape[0], 1), SEP, dtype=torch.long, device=mulan.device)
        if not self.semantic_conditioning:
            return torch.cat([self.mulan_tokens(mulan), sep], dim=1)
        if semantic is None or semantic.dim() != 2 or semantic.shape[0] != mulan.shape[0]:
            raise ConfigError(f"expected semantic tokens [batch, frames], got {tuple(semantic.shape)}")
        _check_range(semantic, self.spaces.semantic_clusters, "semantic token")
        return torch.cat([self.mulan_tokens(mulan), semantic.long() + self.vocab.offset("semantic"), sep], dim=1)


class FineLayout(StageLayout):
    """The coarse RVQ levels -> the remaining ``fine_levels`` levels."""

    name = "fine"
    uses_mulan = False

    def _segments(self) -> list[tuple[str, int]]:
        s = self.spaces
        return [(f"acoustic{q}", s.acoustic_codebook) for q in range(s.acoustic_levels)]

    @property
    def target_segments(self) -> list[str]:
        s = self.spaces
        return [f"acoustic{q}" for q in range(s.coarse_levels, s.acoustic_levels)]

    @property
    def frame_rate(self) -> int:
        return self.spaces.acoustic_rate

    def condition(self, coarse: torch.Tensor) -> torch.Tensor:
        """``[B, frames * coarse_levels + 1]``: the window's coarse codes ``[B, frames, coarse_levels]``, SEP."""
        s = self.spaces
        if coarse.dim() != 3 or coarse.shape[-1] != s.coarse_levels:
            raise ConfigError(f"expected coarse codes [batch, frames, {s.coarse_levels}], got {tuple(coarse.shape)}")
        _check_range(coarse, s.acoustic_codebook, "coarse code")
        offsets = torch.tensor([self.vocab.offset(f"acoustic{q}") for q in range(s.coarse_levels)],
                               device=coarse.device)
        ids = (coarse.long() + offsets).reshape(coarse.shape[0], -1)
        sep = torch.full((coarse.shape[0], 1), SEP, dtype=torch.long, device=coarse.device)
        return torch.cat([ids, sep], dim=1)


LAYOUTS: dict[str, type[StageLayout]] = {"semantic": SemanticLayout, "coarse": CoarseLayout, "fine": FineLayout}


def stage_layout(stage: str, spaces: TokenSpaces, semantic_conditioning: bool = True) -> StageLayout:
    """The layout of ``stage`` ("semantic", "coarse" or "fine"); ``semantic_conditioning`` False gives the
    coarse stage without semantic tokens (the paper's ablation)."""
    if stage not in LAYOUTS:
        raise ConfigError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    if stage == "coarse":
        return CoarseLayout(spaces, semantic_conditioning)
    return LAYOUTS[stage](spaces)


def _check_range(values: torch.Tensor, size: int, what: str) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= size):
        raise ConfigError(f"{what} ids must be within [0, {size}), got [{int(values.min())}, {int(values.max())}]")
