"""The contract between the composer, the score arranger, the renderer and the captioner.

A :class:`Piece` is symbolic music with its exact ground truth. The composer
(:mod:`musiclm.data.composer`) and the score arranger (:mod:`musiclm.data.scores`) make pieces; the
renderer (:mod:`musiclm.data.render`) plays them through FluidSynth; the captioner
(:mod:`musiclm.data.captions`) describes them from their :class:`ClipLabels`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pretty_midi

ROLES = ("lead", "counter", "chords", "pad", "bass", "drums", "percussion")
"""What an instrument does in a piece."""

ENERGY_LEVELS = ("low", "medium", "high")
DYNAMICS = ("soft", "moderate", "loud", "crescendo", "decrescendo")
TEXTURES = ("sparse", "moderate", "dense")


@dataclass
class Part:
    """One instrument of a piece and its role (the MIDI data lives in ``Piece.midi``)."""

    name: str  # human name, e.g. "electric bass (finger)" or "drum kit"
    program: int  # General MIDI program 0-127 (0 for drums)
    is_drum: bool
    role: str  # one of ROLES


@dataclass
class ClipLabels:
    """Structured ground truth of a clip, stored beside its caption in the manifest as ``labels``."""

    genre: str  # style key from the composer's style table, e.g. "bossa_nova", or "chorale" for scores
    parts: list[Part]
    bpm: float
    key: str  # tonic spelled with sharps or flats: "C", "F#", "Bb", ...
    mode: str  # "major", "minor", "dorian", "mixolydian", "phrygian", "lydian", "blues"
    meter: str  # "4/4", "3/4", "6/8", ...
    mood: list[str]  # adjectives, e.g. ["happy", "relaxed"]
    energy: str  # one of ENERGY_LEVELS
    dynamics: str  # one of DYNAMICS
    texture: str  # one of TEXTURES
    sections: list[str] = field(default_factory=list)  # e.g. ["intro", "verse"]
    source: str = "composer"  # "composer" or "score:<music21 corpus path>"
    soundfont: str = ""  # filled in by the renderer
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"composer": "J.S. Bach", "swing": True}

    @property
    def instruments(self) -> list[str]:
        return [p.name for p in self.parts]

    @property
    def has_drums(self) -> bool:
        return any(p.is_drum for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["instruments"] = self.instruments
        data["programs"] = sorted({p.program for p in self.parts if not p.is_drum})
        data["has_drums"] = self.has_drums
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipLabels:
        known = {k: v for k, v in data.items() if k not in ("instruments", "programs", "has_drums")}
        known["parts"] = [Part(**p) for p in known.get("parts", [])]
        return cls(**known)


@dataclass
class Piece:
    """Symbolic music plus the exact facts about it.

    Times are in seconds from the start of ``midi``. ``piece_id`` names the source piece so that corpus
    splits never put two clips of one piece (or one score) in different splits.
    """

    piece_id: str
    midi: pretty_midi.PrettyMIDI
    labels: ClipLabels
    beat_times: list[float]
    bar_times: list[float]  # start of every bar (downbeats); clips are cut on these
    sections: list[tuple[str, float, float]]  # (name, start, end)
    melody: list[tuple[float, float, int]]  # (start, end, MIDI pitch) of the lead line
    chords: list[tuple[float, float, int, str]]  # (start, end, root pitch class 0-11, quality)

    @property
    def seconds(self) -> float:
        return float(self.midi.get_end_time())
