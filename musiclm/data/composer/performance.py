"""From quarter-note events to a PrettyMIDI performance: swing, humanised timing and velocity, MIDI meta data."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pretty_midi

from musiclm.data.composer.common import Meter, Note
from musiclm.data.piece import Part


@dataclass
class Track:
    """One instrument's notes on the quarter-note time line and how to perform them."""

    part: Part
    notes: list[Note]
    midi_program: int  # the GM program, or the drum-kit preset for drum parts
    timing_ms: float = 8.0  # humanisation: timing jitter (standard deviation)
    velocity_sd: float = 5.0  # humanisation: velocity jitter (standard deviation)
    swing: bool = True


def swing_positions(q: np.ndarray, ratio: float, unit: float) -> np.ndarray:
    """Delay the second half of each ``unit``-long pair so the first takes ``ratio`` of it (0.5 = straight)."""
    if abs(ratio - 0.5) < 1e-6:
        return q
    base = np.floor(q / unit + 1e-9) * unit
    frac = (q - base) / unit
    mapped = np.where(frac < 0.5, frac * 2 * ratio, ratio + (frac - 0.5) * 2 * (1 - ratio))
    return base + mapped * unit


def perform(tracks: list[Track], *, meter: Meter, qpm: float, key_number: int | None, swing: float,
            swing_unit: float, rng: np.random.Generator,
            min_end: float = 0.0) -> tuple[pretty_midi.PrettyMIDI, list[pretty_midi.Instrument | None]]:
    """Render tracks into a PrettyMIDI with tempo, time and key signatures; no overlapping same-pitch notes.

    Returns the MIDI and, for each track, its instrument (``None`` for a track without notes).
    """
    spq = 60.0 / qpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(meter.numerator, meter.denominator, 0.0))
    if key_number is not None:
        midi.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    latest_end = 0.0
    instruments: list[pretty_midi.Instrument | None] = []
    for track in tracks:
        if not track.notes:
            instruments.append(None)
            continue
        data = np.array([(n.start, n.end, n.pitch, n.velocity) for n in track.notes], dtype=np.float64)
        starts_q, ends_q = data[:, 0], data[:, 1]
        if track.swing:
            starts_q = swing_positions(starts_q, swing, swing_unit)
            ends_q = swing_positions(ends_q, swing, swing_unit)
        starts = starts_q * spq
        ends = ends_q * spq
        if track.timing_ms > 0:
            sd = track.timing_ms / 1000.0
            jitter = np.clip(rng.normal(0.0, sd, len(starts)), -2.5 * sd, 2.5 * sd)
            starts = np.maximum(starts + jitter, 0.0)
            ends = ends + jitter * 0.5
        if track.part.is_drum:
            ends = starts + 0.12
        ends = np.maximum(ends, starts + 0.03)
        vels = data[:, 3]
        if track.velocity_sd > 0:
            vels = vels + rng.normal(0.0, track.velocity_sd, len(vels))
        vels = np.clip(np.round(vels), 1, 127).astype(int)
        pitches = np.clip(data[:, 2], 0, 127).astype(int)
        instrument = pretty_midi.Instrument(program=track.midi_program, is_drum=track.part.is_drum,
                                            name=track.part.name)
        order = np.lexsort((starts, pitches))
        for a, b in itertools.pairwise(order):  # cut a note where the same key is struck again
            if pitches[a] == pitches[b] and ends[a] > starts[b] - 0.005:
                ends[a] = max(starts[a] + 0.02, starts[b] - 0.005)
        instrument.notes = [
            pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e))
            for s, e, p, v in sorted(zip(starts, ends, pitches, vels, strict=True))
        ]
        latest_end = max(latest_end, float(ends.max()))
        midi.instruments.append(instrument)
        instruments.append(instrument)
    if latest_end < min_end:
        _extend_last_notes(midi, min_end)
    return midi, instruments


def _extend_last_notes(midi: pretty_midi.PrettyMIDI, min_end: float) -> None:
    """Let the final notes ring until ``min_end``."""
    pitched = [i for i in midi.instruments if not i.is_drum and i.notes] or [i for i in midi.instruments if i.notes]
    for instrument in pitched:
        last = max(n.end for n in instrument.notes)
        for note in instrument.notes:
            if note.end >= last - 0.25:
                note.end = max(note.end, min_end)
