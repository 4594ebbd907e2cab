"""Chord timelines: progressions laid out on bars, and look-up of the chord sounding at a time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from musiclm.data.composer.theory import Chord, colour_chord, parse_roman


@dataclass(frozen=True)
class Span:
    """A chord held from ``start`` to ``end`` (in quarter notes from the start of the piece)."""

    start: float
    end: float
    chord: Chord


def progression_bars(progression: str, tonic: int, colour: str) -> list[list[Chord]]:
    """Parse ``"I V vi IV"`` (one bar per token, ``"ii7-V7"`` splits a bar) into chords per bar."""
    bars = []
    for token in progression.split():
        bars.append([colour_chord(parse_roman(part, tonic), tonic, colour) for part in token.split("-")])
    return bars


def lay_out(bars: list[list[Chord]], start_q: float, bar_q: float, beat_q: float) -> list[Span]:
    """Place chords-per-bar on the time line; a bar's chords share it equally (rounded to beats)."""
    spans = []
    for index, chords in enumerate(bars):
        bar_start = start_q + index * bar_q
        share = bar_q / len(chords)
        if len(chords) > 1 and share % beat_q:
            share = max(beat_q, round(share / beat_q) * beat_q)
        for k, chord in enumerate(chords):
            begin = bar_start + k * share
            end = bar_start + bar_q if k == len(chords) - 1 else bar_start + (k + 1) * share
            spans.append(Span(begin, end, chord))
    return merge_repeats(spans)


def merge_repeats(spans: list[Span]) -> list[Span]:
    """Join consecutive spans of the same chord."""
    merged: list[Span] = []
    for span in spans:
        if merged and merged[-1].chord == span.chord and abs(merged[-1].end - span.start) < 1e-9:
            merged[-1] = Span(merged[-1].start, span.end, span.chord)
        else:
            merged.append(span)
    return merged


class Harmony:
    """The chord time line of a piece, with fast look-up by time."""

    def __init__(self, spans: list[Span]):
        self.spans = sorted(spans, key=lambda s: s.start)
        self._starts = [s.start for s in self.spans]

    def at(self, q: float) -> Chord:
        """The chord sounding at ``q`` (the first chord before the start, the last one after the end)."""
        index = bisect.bisect_right(self._starts, q + 1e-9) - 1
        return self.spans[max(index, 0)].chord

    def span_at(self, q: float) -> Span:
        """The span containing ``q``."""
        index = bisect.bisect_right(self._starts, q + 1e-9) - 1
        return self.spans[max(index, 0)]

    def next_chord(self, q: float) -> Chord:
        """The chord after the one sounding at ``q`` (itself at the end)."""
        index = bisect.bisect_right(self._starts, q + 1e-9)
        return self.spans[min(index, len(self.spans) - 1)].chord

    def changes_in(self, start: float, end: float) -> list[float]:
        """Chord change times in [start, end)."""
        lo = bisect.bisect_left(self._starts, start - 1e-9)
        hi = bisect.bisect_left(self._starts, end - 1e-9)
        return self._starts[lo:hi]
