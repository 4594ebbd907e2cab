"""Mood, energy, dynamics and texture measured from the notes of a piece (or a window of it).

The words are derived from facts: tempo, onset density, velocities and their trend, how many pitched
notes sound at once, articulation, and the mode. The same function serves composed pieces, arranged
scores, and clips cut from either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pretty_midi

_BRIGHT = {"major", "lydian", "mixolydian"}
_DARK = {"minor", "phrygian"}


@dataclass(frozen=True)
class Character:
    """Descriptive labels and the measurements behind them."""

    mood: list[str]
    energy: str
    dynamics: str
    texture: str
    facts: dict[str, float] = field(default_factory=dict)


def measure(midi: pretty_midi.PrettyMIDI, start: float = 0.0, end: float | None = None) -> dict[str, float]:
    """Onset rate, mean velocity, velocity trend, polyphony and note length of the notes in [start, end)."""
    end = float(midi.get_end_time()) if end is None else end
    length = max(end - start, 1e-3)
    onsets, velocities, drum_onsets = [], [], 0
    pitched: list[tuple[float, float]] = []
    playing = set()
    distortion = 0.0
    for index, instrument in enumerate(midi.instruments):
        if not instrument.is_drum and instrument.program in (29, 30) and instrument.notes:
            distortion = 1.0
        for note in instrument.notes:
            if note.start < start or note.start >= end:
                continue
            playing.add(index)
            onsets.append(note.start)
            velocities.append((note.start, note.velocity))
            if instrument.is_drum:
                drum_onsets += 1
            else:
                pitched.append((note.start, min(note.end, end)))
    if not onsets:
        return {"onset_rate": 0.0, "velocity": 0.0, "trend": 0.0, "polyphony": 0.0, "note_seconds": 0.0,
                "drum_share": 0.0, "seconds": length, "parts": 0.0, "distortion": 0.0}
    distinct = len(np.unique(np.round(np.asarray(onsets) / 0.03)))
    times = np.array([t for t, _ in velocities])
    vels = np.array([v for _, v in velocities], dtype=np.float64)
    third = length / 3
    first = vels[times < start + third]
    last = vels[times >= end - third]
    trend = float(last.mean() - first.mean()) if len(first) and len(last) else 0.0
    grid = np.zeros(int(length / 0.05) + 2)
    lengths = []
    for s, e in pitched:
        a, b = int((s - start) / 0.05), int((e - start) / 0.05)
        grid[a:max(b, a + 1)] += 1
        lengths.append(e - s)
    sounding = grid[grid > 0]
    return {
        "onset_rate": distinct / length,
        "velocity": float(vels.mean()),
        "trend": trend,
        "polyphony": float(sounding.mean()) if len(sounding) else 0.0,
        "note_seconds": float(np.median(lengths)) if lengths else 0.0,
        "drum_share": drum_onsets / len(onsets),
        "seconds": length,
        "parts": float(len(playing)),
        "distortion": distortion,
    }


def describe(midi: pretty_midi.PrettyMIDI, bpm: float, mode: str, *, swing: bool = False,
             start: float = 0.0, end: float | None = None) -> Character:
    """Labels for the music in [start, end) of ``midi`` played at ``bpm`` in ``mode``."""
    facts = measure(midi, start, end)
    tempo = float(np.clip((bpm - 60.0) / 100.0, 0.0, 1.0))
    density = float(np.clip((facts["onset_rate"] - 2.0) / 8.0, 0.0, 1.0))
    loud = float(np.clip((facts["velocity"] - 50.0) / 45.0, 0.0, 1.0))
    score = 0.3 * tempo + 0.3 * density + 0.4 * loud
    facts["energy_score"] = score
    energy = "low" if score < 0.4 else ("medium" if score < 0.62 else "high")

    if facts["trend"] > 12:
        dynamics = "crescendo"
    elif facts["trend"] < -12:
        dynamics = "decrescendo"
    elif facts["velocity"] < 62:
        dynamics = "soft"
    elif facts["velocity"] > 90:
        dynamics = "loud"
    else:
        dynamics = "moderate"

    fullness = (0.45 * np.clip((facts["onset_rate"] - 2.0) / 9.0, 0.0, 1.0)
                + 0.35 * np.clip((facts["polyphony"] - 1.5) / 6.0, 0.0, 1.0)
                + 0.2 * np.clip((facts["parts"] - 2.0) / 4.0, 0.0, 1.0))
    facts["fullness"] = float(fullness)
    texture = "sparse" if fullness < 0.33 else ("moderate" if fullness < 0.6 else "dense")

    mood = _mood(mode, energy, loud, swing, facts)
    return Character(mood=mood, energy=energy, dynamics=dynamics, texture=texture, facts=facts)


def _mood(mode: str, energy: str, loud: float, swing: bool, facts: dict[str, float]) -> list[str]:
    """Two or three adjectives from mode (valence) and energy (arousal), refined by feel and articulation."""
    long_notes = facts["note_seconds"] > 1.2
    if mode == "blues":
        words = ["bluesy", "soulful" if energy != "high" else "gritty"]
    elif mode == "dorian":
        words = {"low": ["mellow", "mysterious"], "medium": ["cool", "groovy"],
                 "high": ["groovy", "driving"]}[energy]
    elif mode in _DARK:
        if energy == "high":
            if facts["distortion"] > 0 and loud > 0.6:
                words = ["dark", "aggressive"]
            else:
                words = ["intense", "driving"] if facts["drum_share"] > 0.3 else ["intense", "dramatic"]
        elif energy == "medium":
            words = ["melancholic", "tense"] if mode == "minor" else ["dark", "mysterious"]
        else:
            words = ["sad", "melancholic"] if not long_notes else ["somber", "melancholic"]
        if mode == "phrygian" and "exotic" not in words:
            words.append("exotic")
    else:
        if energy == "high":
            words = ["happy", "energetic"] if mode != "mixolydian" else ["bright", "energetic"]
        elif energy == "medium":
            words = ["cheerful", "warm"] if mode == "major" else ["bright", "uplifting"]
        else:
            words = ["peaceful", "relaxed"] if mode != "lydian" else ["dreamy", "peaceful"]
    if long_notes and energy == "low" and "dreamy" not in words and "calm" not in words:
        words.append("calm")
    if swing and energy != "low":
        words.append("playful" if mode in _BRIGHT else "groovy")
    seen: list[str] = []
    for word in words:
        if word not in seen:
            seen.append(word)
    return seen[:3]
