"""Form: the sections of a piece (names, lengths, intensity, who plays) and the harmony laid over them."""

from __future__ import annotations

import math

import numpy as np

from musiclm.data.composer.common import Meter, Section
from musiclm.data.composer.harmony import Harmony, Span, lay_out, progression_bars
from musiclm.data.composer.progressions import CADENCES, progressions_for, starts_on_tonic
from musiclm.data.composer.styles import StyleSpec

FORMS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # name: (opening sections, body repeated as needed, closing sections)
    "song": (["intro"], ["verse", "chorus", "verse", "chorus", "bridge", "chorus"], ["outro"]),
    "edm": (["intro"], ["build", "drop", "breakdown", "build", "drop"], ["outro"]),
    "blues": (["intro"], ["verse", "solo", "verse"], ["outro"]),
    "jazz": (["intro"], ["head", "solo", "solo", "head"], ["outro"]),
    "classical": ([], ["theme", "episode", "theme"], ["coda"]),
    "cinematic": (["intro"], ["theme", "build", "climax"], ["outro"]),
    "tune": (["intro"], ["A part", "A part", "B part", "B part"], []),
    "march": (["intro"], ["strain", "strain", "trio"], ["outro"]),
    "waltz": (["intro"], ["theme", "episode", "theme"], ["coda"]),
    "ambient": (["intro"], ["theme", "climax", "theme"], ["outro"]),
}
"""Form templates of the style table."""

SECTION_CHARACTER: dict[str, tuple[float, frozenset[str]]] = {
    # name: (intensity, roles that play)
    "intro": (0.35, frozenset({"chords", "pad", "bass", "drums", "percussion"})),
    "verse": (0.55, frozenset({"lead", "chords", "bass", "drums", "percussion"})),
    "chorus": (0.85, frozenset({"lead", "counter", "chords", "pad", "bass", "drums", "percussion", "timpani"})),
    "bridge": (0.6, frozenset({"lead", "counter", "chords", "pad", "bass", "drums"})),
    "solo": (0.75, frozenset({"lead", "chords", "bass", "drums", "percussion"})),
    "head": (0.6, frozenset({"lead", "counter", "chords", "bass", "drums"})),
    "theme": (0.55, frozenset({"lead", "chords", "bass", "drums", "percussion", "pad"})),
    "episode": (0.7, frozenset({"lead", "counter", "chords", "pad", "bass", "drums", "timpani"})),
    "climax": (0.92, frozenset({"lead", "counter", "chords", "pad", "bass", "drums", "percussion", "timpani"})),
    "build": (0.6, frozenset({"chords", "bass", "drums", "pad", "lead"})),
    "drop": (0.95, frozenset({"lead", "counter", "chords", "pad", "bass", "drums", "percussion"})),
    "breakdown": (0.3, frozenset({"pad", "chords", "lead"})),
    "coda": (0.45, frozenset({"lead", "chords", "bass", "pad", "timpani"})),
    "outro": (0.4, frozenset({"lead", "chords", "bass", "pad", "drums"})),
    "A part": (0.6, frozenset({"lead", "chords", "bass", "drums", "percussion"})),
    "B part": (0.75, frozenset({"lead", "counter", "chords", "bass", "drums", "percussion"})),
    "strain": (0.65, frozenset({"lead", "counter", "chords", "bass", "drums"})),
    "trio": (0.5, frozenset({"lead", "chords", "bass", "drums"})),
}
"""How loud and full each kind of section is; the intro drops the lead, the breakdown the drums and bass."""

HARMONY_SLOT = {
    "intro": "A", "verse": "A", "head": "A", "theme": "A", "A part": "A", "strain": "A", "build": "A",
    "solo": "A", "outro": "A", "coda": "A",
    "chorus": "B", "drop": "B", "episode": "B", "climax": "B", "B part": "B", "trio": "B",
    "bridge": "C", "breakdown": "C",
}
"""Sections of one slot share a progression: A starts on the tonic, B and C contrast with it."""


def plan_sections(style: StyleSpec, meter: Meter, bpm: float, seconds: float,
                  rng: np.random.Generator) -> list[Section]:
    """Choose the sections of a piece at least ``seconds`` long."""
    bar_seconds = meter.bar_q * 60.0 / (bpm * meter.qpm_per_bpm)
    needed = max(2, math.ceil((seconds + 0.05) / bar_seconds))
    opening, body, closing = FORMS[style.form]
    unit = 12 if style.form == "blues" else (8 if bar_seconds * 8 <= max(seconds / 3, 8.0) else 4)
    lengths = {"intro": 4 if style.form == "blues" else (2 if bar_seconds > 2.4 or rng.random() < 0.5 else 4),
               "outro": 2 if bar_seconds > 2.4 or rng.random() < 0.5 else 4, "coda": 4,
               "build": 4 if unit == 8 and rng.random() < 0.5 else unit, "breakdown": max(4, unit // 2)}
    plan: list[tuple[str, int]] = [(name, lengths.get(name, unit)) for name in opening]
    closing_bars = sum(lengths.get(name, unit) for name in closing)
    k = 0
    while sum(b for _, b in plan) + closing_bars < needed or k == 0:
        name = body[k % len(body)]
        bars = lengths.get(name, unit)
        missing = needed - closing_bars - sum(b for _, b in plan)
        if 0 < missing < bars and style.form != "blues":
            bars = max(2 if bars <= 4 else 4, int(math.ceil(missing / 4.0) * 4) if bars > 4 else bars)
        plan.append((name, bars))
        k += 1
    plan += [(name, lengths.get(name, unit)) for name in closing]

    sections = []
    bar = 0
    for i, (name, bars) in enumerate(plan):
        intensity, roles = SECTION_CHARACTER[name]
        intensity = float(np.clip(intensity + rng.normal(0, 0.04), 0.1, 1.0))
        if name == "intro" and rng.random() < 0.5:
            roles = roles - {"drums"}
        if name == "intro" and rng.random() < 0.4:
            roles = roles - {"bass"}
        if name == "bridge" and rng.random() < 0.4:
            roles = roles - {"drums"}
        following = plan[i + 1][0] if i + 1 < len(plan) else None
        start_q = bar * meter.bar_q
        sections.append(Section(
            name=name, start_bar=bar, bars=bars, start_q=start_q, end_q=start_q + bars * meter.bar_q,
            intensity=intensity, roles=roles,
            fill=following is not None and (following != name or rng.random() < 0.5),
            ending=i == len(plan) - 1,
        ))
        bar += bars
    return sections


def shape_dynamics(sections: list[Section], arc: str) -> None:
    """Bend section intensities along the piece: "flat" keeps them, "crescendo" grows from quiet to full,
    "decrescendo" fades from full to quiet."""
    if arc == "flat" or len(sections) < 2:
        return
    last = sections[-1].end_q
    for section in sections:
        middle = (section.start_q + section.end_q) / 2 / last
        ramp = 0.15 + 0.85 * (middle if arc == "crescendo" else 1.0 - middle)
        section.intensity = float(np.clip(0.35 * section.intensity + 0.65 * ramp, 0.1, 1.0))


def choose_progressions(style: StyleSpec, mode: str, rng: np.random.Generator) -> dict[str, str]:
    """A progression for each harmony slot: A starts on the tonic, B and C differ from A where possible."""
    pool = list(progressions_for(style.idiom, mode))
    tonic_first = [p for p in pool if starts_on_tonic(p)] or pool
    chosen = {"A": tonic_first[int(rng.integers(len(tonic_first)))]}
    others = [p for p in pool if p != chosen["A"]] or pool
    chosen["B"] = others[int(rng.integers(len(others)))]
    rest = [p for p in others if p != chosen["B"]] or others
    chosen["C"] = rest[int(rng.integers(len(rest)))]
    return chosen


def build_harmony(style: StyleSpec, sections: list[Section], meter: Meter, tonic: int, mode: str, colour: str,
                  progressions: dict[str, str], rng: np.random.Generator) -> Harmony:
    """Lay each section's progression over its bars; the last section closes with a cadence on the tonic."""
    cadences = CADENCES[mode]
    cadence = cadences[int(rng.integers(len(cadences)))]
    spans: list[Span] = []
    for section in sections:
        slot = HARMONY_SLOT[section.name]
        bars = progression_bars(progressions[slot], tonic, colour)
        chords = [bars[k % len(bars)] for k in range(section.bars)]
        if section.name == "intro" and mode in ("minor", "dorian", "phrygian"):
            # a tonic vamp first: minor progressions lean on the relative major, the intro states the key
            chords[: max(1, section.bars // 2)] = [bars[0]] * max(1, section.bars // 2)
        if section.ending:
            ending = progression_bars(cadence, tonic, colour)
            if section.bars >= 2:
                chords[-2:] = ending
            else:
                chords[-1:] = ending[-1:]
        spans.extend(lay_out(chords, section.start_q, meter.bar_q, meter.beat_q))
    return Harmony(spans)
