"""Pitch classes, scales, chord qualities, roman-numeral progressions and key spelling."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
PITCH_CLASS = {name: pc for names in (SHARP_NAMES, FLAT_NAMES) for pc, name in enumerate(names)}
PITCH_CLASS.update({"Cb": 11, "Fb": 4, "E#": 5, "B#": 0})

MODE_INTERVALS: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
"""Scale steps above the tonic; "blues" is the six-note blues scale (its harmony is dominant sevenths)."""

MODE_OFFSET = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7, "minor": 9, "blues": 0}
"""Semitones from the parent major scale's tonic to the mode's tonic (for spelling the key)."""

MINOR_LIKE = frozenset({"minor", "dorian", "phrygian"})

CHORD_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "5": (0, 7),
    "6": (0, 4, 7, 9),
    "min6": (0, 3, 7, 9),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "7sus4": (0, 5, 7, 10),
    "add9": (0, 4, 7, 14),
    "9": (0, 4, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14),
    "min9": (0, 3, 7, 10, 14),
    "13": (0, 4, 10, 14, 21),
}
"""Chord qualities (the ``quality`` of :attr:`Piece.chords`) as semitones above the root."""

_MAJOR_STEPS = MODE_INTERVALS["major"]
_NUMERALS = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}
_ROMAN = re.compile(r"^(?P<acc>b|#)?(?P<num>VII|VI|IV|V|III|II|I|vii|vi|iv|v|iii|ii|i)(?P<suffix>.*)$")
_UPPER_SUFFIX = {"": "maj", "7": "7", "maj7": "maj7", "6": "6", "9": "9", "maj9": "maj9", "add9": "add9",
                 "sus2": "sus2", "sus4": "sus4", "7sus4": "7sus4", "5": "5", "+": "aug", "13": "13"}
_LOWER_SUFFIX = {"": "min", "7": "min7", "6": "min6", "9": "min9", "o": "dim", "o7": "dim7", "hd7": "m7b5",
                 "5": "5"}


@dataclass(frozen=True)
class Chord:
    """A chord as root pitch class and quality."""

    root: int
    quality: str

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in CHORD_INTERVALS[self.quality])

    @property
    def intervals(self) -> tuple[int, ...]:
        return CHORD_INTERVALS[self.quality]


def parse_roman(token: str, tonic: int) -> Chord:
    """Resolve a roman numeral such as ``"bVII"``, ``"ii7"``, ``"V7"`` or ``"viio"`` in the key of ``tonic``.

    Degrees are counted on the major scale (so minor-key chords carry flats: ``"bVI"``); upper case is a
    major-type chord, lower case a minor-type chord; the suffix picks the quality.
    """
    match = _ROMAN.match(token)
    if match is None:
        raise ValueError(f"not a roman numeral: {token!r}")
    numeral, suffix = match["num"], match["suffix"]
    step = _MAJOR_STEPS[_NUMERALS[numeral.lower()]]
    step += {"b": -1, "#": 1, None: 0}[match["acc"]]
    table = _UPPER_SUFFIX if numeral.isupper() else _LOWER_SUFFIX
    if suffix not in table:
        raise ValueError(f"unknown chord suffix {suffix!r} in {token!r}")
    return Chord((tonic + step) % 12, table[suffix])


def colour_chord(chord: Chord, tonic: int, colour: str) -> Chord:
    """Re-voice a triad in a style's harmonic colour: "triad", "seventh", "extended", "power" or "sus"."""
    quality = chord.quality
    if colour == "power":
        return Chord(chord.root, "5")
    if quality not in ("maj", "min", "dim"):
        return chord  # explicit qualities are kept
    dominant = (chord.root - tonic) % 12 == 7
    if colour == "seventh":
        mapping = {"maj": "7" if dominant else "maj7", "min": "min7", "dim": "m7b5"}
    elif colour == "extended":
        mapping = {"maj": "9" if dominant else "maj9", "min": "min9", "dim": "m7b5"}
    elif colour == "sus":
        mapping = {"maj": "sus2" if not dominant else "7sus4", "min": "min7", "dim": "dim"}
    else:
        return chord
    return Chord(chord.root, mapping[quality])


def scale_pitch_classes(tonic: int, mode: str) -> tuple[int, ...]:
    """Pitch classes of ``mode`` on ``tonic``."""
    return tuple((tonic + i) % 12 for i in MODE_INTERVALS[mode])


def spell_key(tonic: int, mode: str) -> str:
    """Name a tonic the way its key signature spells it (flat keys with flats, sharp keys with sharps)."""
    parent = (tonic - MODE_OFFSET[mode]) % 12
    flat_parents = {5, 10, 3, 8, 1}
    names = FLAT_NAMES if parent in flat_parents else SHARP_NAMES
    return names[tonic % 12]


def key_signature_number(tonic: int, mode: str) -> int:
    """The pretty_midi key number (0-11 major, 12-23 minor) whose signature this key uses."""
    if mode in ("minor", "dorian", "phrygian"):
        relative_minor = (tonic - MODE_OFFSET[mode] + 9) % 12
        return 12 + relative_minor
    return (tonic - MODE_OFFSET[mode]) % 12


def nearest_pitch(pc: int, target: float, low: int = 0, high: int = 127) -> int:
    """The MIDI pitch of pitch class ``pc`` closest to ``target`` within [low, high]."""
    base = int(round(target)) - 6
    pitch = base + ((pc - base) % 12)
    if pitch - target > 6:
        pitch -= 12
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def close_voicing(chord: Chord, centre: float, previous: list[int] | None = None,
                  low: int = 40, high: int = 84, max_notes: int = 4) -> list[int]:
    """A close-position voicing near ``centre``, voice-led from ``previous`` when given."""
    intervals = chord.intervals
    if len(intervals) > max_notes:  # drop the fifth first, it adds least colour
        intervals = tuple(i for i in intervals if i != 7)[:max_notes]
    pcs = [(chord.root + i) % 12 for i in intervals]
    best: list[int] | None = None
    best_cost = float("inf")
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        bottom = nearest_pitch(order[0], centre - 5, low, high)
        voicing = [bottom]
        for pc in order[1:]:
            nxt = voicing[-1] + ((pc - voicing[-1]) % 12 or 12)
            voicing.append(nxt)
        if voicing[-1] > high:
            voicing = [p - 12 for p in voicing]
        if voicing[0] < low:
            continue
        if previous:
            cost = sum(abs(a - b) for a, b in zip(sorted(previous), voicing, strict=False))
            cost += abs(len(previous) - len(voicing)) * 3
        else:
            cost = abs(sum(voicing) / len(voicing) - centre)
        if cost < best_cost:
            best, best_cost = voicing, cost
    if best is None:
        best = sorted(nearest_pitch(pc, centre, low, high) for pc in pcs)
    return best


def open_voicing(chord: Chord, bass_target: float, low: int = 36, high: int = 84) -> list[int]:
    """A spread voicing: root low, fifth above, then third and the colour tones an octave higher."""
    root = nearest_pitch(chord.root, bass_target, low, high)
    notes = [root]
    for interval in chord.intervals[1:]:
        pitch = root + interval + (12 if interval in (3, 4, 10, 11) else 0)  # third and seventh go up
        while pitch > high:
            pitch -= 12
        notes.append(pitch)
    return sorted(set(notes))


def power_voicing(chord: Chord, bass_target: float, low: int = 36, high: int = 72,
                  octave: bool = True) -> list[int]:
    """Root, fifth and (optionally) octave, the distorted-guitar voicing."""
    root = nearest_pitch(chord.root, bass_target, low, high)
    notes = [root, root + 7]
    if octave:
        notes.append(root + 12)
    return notes


def shell_voicing(chord: Chord, centre: float, previous: list[int] | None = None) -> list[int]:
    """A jazz left-hand voicing without the root: third, seventh and a colour tone, near ``centre``."""
    intervals = chord.intervals
    third = next((i for i in intervals if i in (3, 4, 5, 2)), 4)
    seventh = next((i for i in intervals if i in (9, 10, 11)), 7)
    colour = next((i for i in intervals if i >= 12), None)
    pcs = [(chord.root + third) % 12, (chord.root + seventh) % 12]
    if colour is not None:
        pcs.append((chord.root + colour) % 12)
    else:
        pcs.append((chord.root + 7) % 12)
    best: list[int] | None = None
    best_cost = float("inf")
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        voicing = [nearest_pitch(order[0], centre - 4, 48, 72)]
        for pc in order[1:]:
            voicing.append(voicing[-1] + ((pc - voicing[-1]) % 12 or 12))
        if previous:
            cost = sum(abs(a - b) for a, b in zip(sorted(previous), voicing, strict=False))
        else:
            cost = abs(sum(voicing) / len(voicing) - centre)
        if voicing[-1] <= 79 and cost < best_cost:
            best, best_cost = voicing, cost
    return best or sorted(nearest_pitch(pc, centre, 48, 79) for pc in pcs)


def guitar_voicing(chord: Chord, low: int = 40) -> list[int]:
    """An open-string-like guitar shape: root on a low string, then fifth, octave, third and colour tones."""
    root = nearest_pitch(chord.root, 47, low, low + 11)
    notes = [root]
    intervals = chord.intervals
    if 7 in intervals:
        notes.append(root + 7)
    notes.append(root + 12)
    for interval in intervals[1:]:
        if interval == 7:
            continue
        pitch = root + 12 + (interval % 12)
        if pitch <= notes[-1]:
            pitch += 12
        notes.append(pitch)
    if 7 in intervals and notes[-1] < root + 19:
        notes.append(root + 19)
    return sorted(set(n for n in notes if n <= 79))
