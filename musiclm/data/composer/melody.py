"""The lead line: motifs, their variations and answers, phrased in 2- or 4-bar units over the harmony.

A section's melody is built from a one-bar motif (a rhythm and a contour in scale steps). A four-bar
phrase states the motif, varies it, restates it on the new harmony and closes with a cadence (open on a
chord tone, closed on the tonic); two-bar phrases are motif and answer. Strong beats land on chord tones.
Repeated sections reuse their melody, so the piece has recognisable repetition.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from musiclm.data.composer.common import Context, Meter, Note, Section, velocity
from musiclm.data.composer.styles import MelodySpec
from musiclm.data.composer.theory import MODE_INTERVALS

Rhythm = list[tuple[float, float]]  # (offset in the bar, length) in quarter notes

_SIMPLE_CELLS: tuple[tuple[Rhythm, float, bool], ...] = (  # (cell over one beat, notes per beat, syncopated)
    ([(0.0, 1.0)], 1.0, False),
    ([(0.0, 0.5), (0.5, 0.5)], 2.0, False),
    ([(0.0, 0.75), (0.75, 0.25)], 2.0, False),
    ([(0.0, 0.5), (0.5, 0.25), (0.75, 0.25)], 3.0, False),
    ([(0.0, 0.25), (0.25, 0.25), (0.5, 0.5)], 3.0, False),
    ([(0.0, 0.25), (0.25, 0.25), (0.5, 0.25), (0.75, 0.25)], 4.0, False),
    ([(0.5, 0.5)], 1.0, True),
    ([(0.25, 0.25), (0.5, 0.5)], 2.0, True),
)
_SIMPLE_PAIRS: tuple[tuple[Rhythm, float, bool], ...] = (  # cells over two beats
    ([(0.0, 2.0)], 0.5, False),
    ([(0.0, 1.5), (1.5, 0.5)], 1.0, False),
    ([(0.0, 0.5), (0.5, 1.0), (1.5, 0.5)], 1.5, True),
    ([(0.5, 1.0), (1.5, 0.5)], 1.0, True),
)
_COMPOUND_CELLS: tuple[tuple[Rhythm, float, bool], ...] = (
    ([(0.0, 1.5)], 1.0, False),
    ([(0.0, 1.0), (1.0, 0.5)], 2.0, False),
    ([(0.0, 0.5), (0.5, 0.5), (1.0, 0.5)], 3.0, False),
    ([(0.0, 0.75), (0.75, 0.25), (1.0, 0.5)], 3.0, False),
    ([(0.0, 0.5), (0.5, 1.0)], 2.0, True),
    ([(0.5, 0.5), (1.0, 0.5)], 2.0, True),
)
_COMPOUND_PAIRS: tuple[tuple[Rhythm, float, bool], ...] = (
    ([(0.0, 3.0)], 0.5, False),
    ([(0.0, 2.5), (2.5, 0.5)], 1.0, False),
)


@dataclass
class Motif:
    rhythm: Rhythm
    steps: list[int]  # scale steps between consecutive notes (first entry unused)


class ScaleLine:
    """Pitches of the melody's scale across the keyboard, addressed by index."""

    def __init__(self, tonic: int, mode: str, low: int, high: int):
        intervals = set(MODE_INTERVALS[mode])
        self.pitches = [p for p in range(0, 128) if (p - tonic) % 12 in intervals]
        self.low, self.high = low, high
        self.tonic = tonic
        self.per_octave = len(intervals)

    def index(self, pitch: int) -> int:
        """Index of the scale pitch nearest ``pitch``."""
        i = bisect.bisect_left(self.pitches, pitch)
        if i >= len(self.pitches):
            return len(self.pitches) - 1
        if i > 0 and pitch - self.pitches[i - 1] <= self.pitches[i] - pitch:
            return i - 1
        return i

    def pitch(self, index: int) -> int:
        return self.pitches[min(max(index, 0), len(self.pitches) - 1)]

    def fold(self, index: int) -> int:
        """Move an index back inside the register by octaves (keeps the pitch class)."""
        per_octave = self.per_octave
        while self.pitch(index) > self.high:
            index -= per_octave
        while self.pitch(index) < self.low:
            index += per_octave
        return index

    def snap(self, index: int, chord_pcs: tuple[int, ...], direction: int) -> int:
        """The nearest index (preferring ``direction``) whose pitch is a chord tone."""
        for distance in (0, 1, 2, 3):
            for sign in ((direction or 1), -(direction or 1)):
                candidate = index + sign * distance
                if self.pitch(candidate) % 12 in chord_pcs and self.low <= self.pitch(candidate) <= self.high:
                    return candidate
        return index


def _cells(meter: Meter) -> tuple[tuple[tuple[Rhythm, float, bool], ...], tuple[tuple[Rhythm, float, bool], ...]]:
    return (_COMPOUND_CELLS, _COMPOUND_PAIRS) if meter.compound else (_SIMPLE_CELLS, _SIMPLE_PAIRS)


def make_rhythm(meter: Meter, density: float, syncopation: float, rng: np.random.Generator,
                min_notes: int = 2) -> Rhythm:
    """One bar of melodic rhythm whose notes-per-beat hovers around ``density``."""
    singles, pairs = _cells(meter)
    beat = meter.beat_q
    for _attempt in range(8):
        rhythm: Rhythm = []
        position = 0.0
        while position < meter.bar_q - 1e-6:
            pool = [(cell, rate, sync, beat) for cell, rate, sync in singles]
            if meter.bar_q - position >= 2 * beat - 1e-6:
                pool += [(cell, rate, sync, 2 * beat) for cell, rate, sync in pairs]
            weights = np.array([math.exp(-abs(rate - density) * 1.6) * (2 * syncopation if sync else 1.0)
                                for _, rate, sync, _ in pool])
            cell, _, _, span = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
            rhythm.extend((position + offset, length) for offset, length in cell)
            position += span
        if len(rhythm) >= min_notes:
            return rhythm
    return [(k * beat, beat) for k in range(meter.beats_per_bar)]


def make_contour(count: int, leap: float, rng: np.random.Generator) -> list[int]:
    """Scale steps for ``count`` notes: mostly steps, some repeats and thirds, occasional leaps, arch-shaped."""
    sizes = np.array([0, 1, 2, 3, 4])
    weights = np.array([0.14, 0.46, 0.24, 0.1 * (0.5 + leap), 0.06 * (0.5 + leap)])
    steps = [0]
    for k in range(1, count):
        size = int(rng.choice(sizes, p=weights / weights.sum()))
        rising = k < count / 2
        sign = 1 if rng.random() < (0.65 if rising else 0.35) else -1
        steps.append(size * sign)
    return steps


def _vary(motif: Motif, rng: np.random.Generator) -> Motif:
    """A variation: inverted contour, or one note split/merged in the rhythm."""
    rhythm = list(motif.rhythm)
    steps = list(motif.steps)
    choice = rng.random()
    if choice < 0.4:
        steps = [0] + [-s for s in steps[1:]]
    elif choice < 0.7 and len(rhythm) >= 2:
        k = int(rng.integers(len(rhythm) - 1))
        (o1, d1), (_, d2) = rhythm[k], rhythm[k + 1]
        rhythm[k:k + 2] = [(o1, d1 + d2)]
        steps[k + 1:k + 2] = []
    else:
        k = int(np.argmax([d for _, d in rhythm]))
        o, d = rhythm[k]
        if d >= 0.5:
            rhythm[k:k + 1] = [(o, d / 2), (o + d / 2, d / 2)]
            steps[k + 1:k + 1] = [int(rng.choice([-1, 1]))]
    return Motif(rhythm, steps)


def _cadence_rhythm(meter: Meter, rng: np.random.Generator) -> Rhythm:
    """A cadence bar: one or two approach notes then a long note."""
    beat = meter.beat_q
    if meter.beats_per_bar <= 2 or rng.random() < 0.4:
        return [(0.0, meter.bar_q - (beat if rng.random() < 0.5 else 0.0) or meter.bar_q)]
    return [(0.0, beat / 2), (beat / 2, beat / 2), (beat, meter.bar_q - beat)]


class LeadWriter:
    """Writes the lead line of every section, reusing the melody of repeated sections."""

    def __init__(self, ctx: Context, spec: MelodySpec, low: int, high: int):
        self.ctx = ctx
        self.spec = spec
        melody_mode = ctx.mode if ctx.mode in MODE_INTERVALS else "major"
        self.line = ScaleLine(ctx.tonic, melody_mode, low, high)
        self.low, self.high = low, high
        self.cache: dict[str, tuple[int, list[Note]]] = {}  # section name -> (bars, notes from its start)

    def write(self, sections: list[Section]) -> list[Note]:
        notes: list[Note] = []
        for section in sections:
            if "lead" not in section.roles:
                continue
            key = section.name
            cached_bars, template = self.cache.get(key, (0, []))
            if cached_bars >= section.bars and not section.ending and section.name != "solo":
                shift = section.start_q
                limit = section.bars * self.ctx.meter.bar_q
                notes.extend(n._replace(start=n.start + shift, end=min(n.end, limit) + shift)
                             for n in template if n.start < limit - 1e-6)
                continue
            written = self._section(section)
            if not section.ending and section.bars >= cached_bars:
                self.cache[key] = (section.bars, [n._replace(start=n.start - section.start_q,
                                                             end=n.end - section.start_q) for n in written])
            notes.extend(written)
        return notes

    def _register(self, section: Section) -> tuple[int, int]:
        span = self.high - self.low
        centre = self.low + span * (0.42 if section.name not in ("chorus", "drop", "climax", "B part") else 0.55)
        low = max(self.low, int(centre - 8))
        high = min(self.high, int(centre + 9))
        return low, high

    def _section(self, section: Section) -> list[Note]:
        spec, rng, meter = self.spec, self.ctx.rng, self.ctx.meter
        density = spec.density * {"chorus": 1.1, "bridge": 0.85, "solo": 1.35, "breakdown": 0.6,
                                  "outro": 0.8, "coda": 0.8, "drop": 1.1}.get(section.name, 1.0)
        leap = spec.leap + (0.15 if section.name == "solo" else 0.0)
        low, high = self._register(section)
        self.line.low, self.line.high = low, high
        phrase = min(spec.phrase_bars, section.bars) if section.bars >= 2 else 1
        density *= 1.2  # cadence bars thin the line out; motif bars make up for it
        motif = self._motif(density, leap)
        answer = self._motif(density * 0.9, leap)
        index = self.line.fold(self.line.index((low + high) // 2))
        notes: list[Note] = []
        for bar in range(section.bars):
            bar_start = section.start_q + bar * meter.bar_q
            in_phrase = bar % phrase
            phrase_number = bar // phrase
            last_bar = bar == section.bars - 1
            if section.name == "solo" and in_phrase == 0:
                motif = self._motif(density, leap)
            if last_bar and section.ending:
                role = "close"
            elif in_phrase == phrase - 1 and phrase > 1:
                role = "close" if (phrase_number % 2 == 1 or last_bar) else "open"
            elif phrase == 4 and in_phrase == 1:
                role = "vary"
            elif phrase == 4 and in_phrase == 2:
                role = "motif" if phrase_number % 2 == 0 else "answer"
            elif phrase == 2 and in_phrase == 1:
                role = "answer"
            else:
                role = "motif"
            if role in ("open", "close"):
                bar_motif = Motif(_cadence_rhythm(meter, rng), [0, int(rng.choice([-1, 1])), 0])
            elif role == "vary":
                bar_motif = _vary(motif, rng)
            elif role == "answer":
                bar_motif = answer
            else:
                bar_motif = motif
            index, bar_notes = self._realise(bar_motif, bar_start, index, role, section)
            notes.extend(bar_notes)
        return notes

    def _motif(self, density: float, leap: float) -> Motif:
        rhythm = make_rhythm(self.ctx.meter, density, self.spec.syncopation, self.ctx.rng)
        return Motif(rhythm, make_contour(len(rhythm), leap, self.ctx.rng))

    def _realise(self, motif: Motif, bar_start: float, index: int, role: str,
                 section: Section) -> tuple[int, list[Note]]:
        ctx, meter, line = self.ctx, self.ctx.meter, self.line
        notes = []
        final_piece = role == "close" and section.ending
        for k, (offset, length) in enumerate(motif.rhythm):
            t = bar_start + offset
            chord = ctx.harmony.at(t)
            step = motif.steps[k] if k < len(motif.steps) else 0
            direction = int(np.sign(step))
            index = line.fold(index + step)
            strong = meter.strength(offset) >= 2 or length >= meter.beat_q
            last = k == len(motif.rhythm) - 1
            if last and role == "close":
                target_pcs = (ctx.tonic,) if (final_piece or chord.root == ctx.tonic) else (chord.root,)
                index = line.snap(index, target_pcs, direction)
            elif last and role == "open":
                index = line.snap(index, tuple(pc for pc in chord.pitch_classes if pc != ctx.tonic)
                                  or chord.pitch_classes, direction)
            elif strong:
                index = line.snap(index, chord.pitch_classes, direction)
            pitch = line.pitch(index)
            legato = min(1.0, self.spec.legato + (0.08 if length >= meter.beat_q else 0.0))
            if role in ("open", "close") and last:
                legato = 1.0 if final_piece else 0.92
            if final_piece and last:
                length = meter.bar_q - offset
            accent = 8 if meter.strength(offset) == 3 else (4 if meter.strength(offset) == 2 else 0)
            accent += 4 if length >= meter.beat_q else 0
            vel = velocity(ctx.style.loudness * 0.98, section.intensity, accent)
            notes.append(Note(t, t + length * legato, pitch, vel))
        return index, notes
