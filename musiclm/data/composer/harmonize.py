"""Choose chords for a bare melody: diatonic triads that best cover each bar's notes, tonic at both ends."""

from __future__ import annotations

from musiclm.data.composer.common import Meter
from musiclm.data.composer.harmony import Span, merge_repeats
from musiclm.data.composer.theory import Chord, parse_roman

CANDIDATES: dict[str, tuple[str, ...]] = {
    "major": ("I", "IV", "V", "vi", "ii", "iii"),
    "minor": ("i", "iv", "V", "bVI", "bVII", "bIII", "v"),
    "dorian": ("i", "IV", "bVII", "bIII", "v", "ii"),
    "mixolydian": ("I", "bVII", "IV", "v", "ii", "vi"),
    "phrygian": ("i", "bII", "bVII", "iv", "bIII"),
    "lydian": ("I", "II", "V", "vi", "iii"),
    "blues": ("I7", "IV7", "V7"),
}
"""Chords a harmonisation may use in each mode, most idiomatic first."""

_DOMINANT = {"major": "V", "minor": "V", "dorian": "bVII", "mixolydian": "bVII", "phrygian": "bII",
             "lydian": "II", "blues": "V7"}


def harmonize(melody: list[tuple[float, float, int]], meter: Meter, tonic: int, mode: str,
              bars: int, start_q: float = 0.0) -> list[Span]:
    """Chord spans (in quarter notes) for ``melody`` given as (start, end, pitch) in quarter notes.

    Each bar (each half bar in 4/4 when the halves clearly disagree) gets the candidate triad whose tones
    cover the most melody weight, where notes on strong beats and long notes weigh more and the simpler
    chords (tonic, subdominant, dominant) win ties. The first and last bars are the tonic and the
    second-to-last the mode's dominant when the melody allows it.
    """
    chords = [parse_roman(token, tonic) for token in CANDIDATES[mode]]
    tonic_chord = chords[0]
    dominant = parse_roman(_DOMINANT[mode], tonic)
    spans: list[Span] = []
    for bar in range(bars):
        bar_start = start_q + bar * meter.bar_q
        bar_end = bar_start + meter.bar_q
        whole = _best(melody, bar_start, bar_end, chords, meter, bar_start)
        if bar == 0 or bar == bars - 1:
            whole = tonic_chord if _fit(melody, bar_start, bar_end, tonic_chord, meter, bar_start) > -0.5 else whole
        elif bar == bars - 2 and _fit(melody, bar_start, bar_end, dominant, meter, bar_start) > 0:
            whole = dominant
        if meter.numerator == 4 and 0 < bar < bars - 1:
            middle = bar_start + meter.bar_q / 2
            first = _best(melody, bar_start, middle, chords, meter, bar_start)
            second = _best(melody, middle, bar_end, chords, meter, bar_start)
            split_score = (_fit(melody, bar_start, middle, first, meter, bar_start)
                           + _fit(melody, middle, bar_end, second, meter, bar_start))
            if first != second and split_score > _fit(melody, bar_start, bar_end, whole, meter, bar_start) + 1.0:
                spans += [Span(bar_start, middle, first), Span(middle, bar_end, second)]
                continue
        spans.append(Span(bar_start, bar_end, whole))
    return merge_repeats(spans)


def _fit(melody: list[tuple[float, float, int]], start: float, end: float, chord: Chord, meter: Meter,
         bar_start: float) -> float:
    """Weighted agreement of the melody in [start, end) with a chord."""
    pcs = set(chord.pitch_classes)
    score = 0.0
    for note_start, note_end, pitch in melody:
        if note_end <= start or note_start >= end:
            continue
        length = min(note_end, end) - max(note_start, start)
        weight = length * (1.0 + 0.5 * meter.strength((max(note_start, start) - bar_start) % meter.bar_q))
        score += weight if pitch % 12 in pcs else -0.6 * weight
    return score


def _best(melody: list[tuple[float, float, int]], start: float, end: float, chords: list[Chord],
          meter: Meter, bar_start: float) -> Chord:
    scores = [_fit(melody, start, end, chord, meter, bar_start) - 0.08 * rank for rank, chord in enumerate(chords)]
    return chords[max(range(len(chords)), key=scores.__getitem__)]


_TEMPLATES: tuple[tuple[frozenset[int], str], ...] = (
    (frozenset({0, 4, 7}), "maj"), (frozenset({0, 3, 7}), "min"), (frozenset({0, 4, 7, 10}), "7"),
    (frozenset({0, 3, 7, 10}), "min7"), (frozenset({0, 4, 7, 11}), "maj7"), (frozenset({0, 3, 6}), "dim"),
    (frozenset({0, 3, 6, 10}), "m7b5"), (frozenset({0, 3, 6, 9}), "dim7"), (frozenset({0, 4, 8}), "aug"),
    (frozenset({0, 4, 10}), "7"), (frozenset({0, 3, 10}), "min7"), (frozenset({0, 4, 11}), "maj7"),
    (frozenset({0, 4}), "maj"), (frozenset({0, 3}), "min"), (frozenset({0, 5, 7}), "sus4"),
    (frozenset({0, 7}), "5"),
)


def name_chord(pitches: list[int]) -> Chord | None:
    """Name the chord formed by sounding ``pitches`` (root and quality), or ``None`` when no triad or
    seventh chord explains them. Complete chords beat incomplete ones; ties go to the bass note as root."""
    if not pitches:
        return None
    found = _match({p % 12 for p in pitches}, min(pitches) % 12)
    if found is None and len({p % 12 for p in pitches}) >= 3:  # one non-chord tone (suspension, passing)
        bass = min(pitches) % 12
        options = [_match({p % 12 for p in pitches} - {pc}, bass) for pc in sorted({p % 12 for p in pitches} - {bass})]
        found = next((chord for chord in options if chord is not None and chord.quality != "5"), None)
    return found


def _match(pcs: set[int], bass: int) -> Chord | None:
    best: tuple[int, int, Chord] | None = None
    for rank, (template, quality) in enumerate(_TEMPLATES):
        for root in sorted(pcs, key=lambda pc: pc != bass):
            if {(pc - root) % 12 for pc in pcs} == template:
                candidate = (rank, 0 if root == bass else 1, Chord(root, quality))
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        if best is not None and best[0] == rank:
            break
    return best[2] if best else None
