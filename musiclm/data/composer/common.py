"""Shared small types of the composer: meter, note events, sections and the composition context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from musiclm.data.composer.harmony import Harmony
    from musiclm.data.composer.styles import StyleSpec


class Note(NamedTuple):
    """A note on the quarter-note time line (before swing and humanisation)."""

    start: float
    end: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Meter:
    """A time signature and the grid it implies (16th-note steps of 0.25 quarter notes)."""

    numerator: int
    denominator: int

    @classmethod
    def parse(cls, text: str) -> Meter:
        num, den = text.split("/")
        return cls(int(num), int(den))

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"

    @property
    def compound(self) -> bool:
        return self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3

    @property
    def bar_q(self) -> float:
        """Bar length in quarter notes."""
        return self.numerator * 4.0 / self.denominator

    @property
    def beat_q(self) -> float:
        """Felt beat in quarter notes: the dotted quarter in compound meters, else the denominator note."""
        return 1.5 if self.compound else 4.0 / self.denominator

    @property
    def beats_per_bar(self) -> int:
        return int(round(self.bar_q / self.beat_q))

    @property
    def steps(self) -> int:
        """16th-note steps per bar."""
        return int(round(self.bar_q / 0.25))

    @property
    def qpm_per_bpm(self) -> float:
        """MIDI quarter-note tempo per felt beat per minute (1.5 in 6/8, 1 in x/4)."""
        return self.beat_q

    def strength(self, offset: float) -> int:
        """Metric weight of a position in the bar: 3 downbeat, 2 other beats, 1 eighths, 0 sixteenths."""
        if abs(offset) < 1e-6:
            return 3
        if abs(offset / self.beat_q - round(offset / self.beat_q)) < 1e-6:
            return 2
        return 1 if abs(offset / 0.5 - round(offset / 0.5)) < 1e-6 else 0


@dataclass
class Section:
    """One section of a piece's form, in bars and quarter notes."""

    name: str
    start_bar: int
    bars: int
    start_q: float
    end_q: float
    intensity: float  # 0 (sparse, soft) .. 1 (full, loud)
    roles: frozenset[str]
    fill: bool = False  # a drum fill in its last bar leads into the next section
    ending: bool = False  # the final section: cadence and hold on the tonic


@dataclass
class Context:
    """Everything a part writer needs to know about the piece being written."""

    style: StyleSpec
    meter: Meter
    bpm: float
    tonic: int
    mode: str
    scale: tuple[int, ...]
    harmony: Harmony
    rng: np.random.Generator
    swing: float = 0.5  # long/short ratio of a swung pair as the long fraction; 0.5 is straight
    swing_unit: float = 1.0  # length of a swung pair in quarter notes (1.0 eighths, 0.5 sixteenths)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def seconds_per_quarter(self) -> float:
        return 60.0 / (self.bpm * self.meter.qpm_per_bpm)


def velocity(base: float, intensity: float, accent: float = 0.0) -> int:
    """A MIDI velocity from a base level, the section intensity (0-1) and an accent in velocity units."""
    value = base * (0.72 + 0.4 * intensity) + accent
    return int(min(127, max(1, round(value))))
