"""Bass lines, chord comping, counter lines and timpani, each written section by section over the harmony.

Every writer has the signature ``writer(ctx, section, low, high) -> list[Note]`` (counter writers also take
the lead's notes); ``low``/``high`` bound the instrument's register. Patterns are per bar; the chord at each
hit is looked up in ``ctx.harmony`` so chord changes inside a bar are followed. The last bar of the final
section holds the tonic chord.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from musiclm.data.composer.common import Context, Note, Section, velocity
from musiclm.data.composer.theory import (
    Chord,
    close_voicing,
    guitar_voicing,
    nearest_pitch,
    open_voicing,
    power_voicing,
    shell_voicing,
)

Writer = Callable[[Context, Section, int, int], list[Note]]

# helpers -------------------------------------------------------------------------------------------------


def _bars(ctx: Context, section: Section) -> Iterator[tuple[int, float, bool]]:
    """(bar index, bar start, is the piece's final bar) for each bar of a section."""
    for bar in range(section.bars):
        yield bar, section.start_q + bar * ctx.meter.bar_q, section.ending and bar == section.bars - 1


def _segments(ctx: Context, bar_start: float) -> list[tuple[float, float, Chord]]:
    """The chords inside one bar as (start, end, chord)."""
    bar_end = bar_start + ctx.meter.bar_q
    times = [bar_start, *ctx.harmony.changes_in(bar_start + 1e-6, bar_end)]
    return [(t, times[i + 1] if i + 1 < len(times) else bar_end, ctx.harmony.at(t)) for i, t in enumerate(times)]


def _slots(ctx: Context, pattern: str, step: float) -> list[float]:
    """Offsets of the non-rest characters of a pattern cut to one bar."""
    count = int(round(ctx.meter.bar_q / step))
    return [i * step for i, c in enumerate((pattern * 4)[:count]) if c != "."]


def _base(ctx: Context) -> float:
    return ctx.style.loudness


def _fifth(chord: Chord) -> int:
    return (chord.root + (7 if 7 in chord.intervals else chord.intervals[-1])) % 12


def _third(chord: Chord) -> int:
    third = next((i for i in chord.intervals if i in (3, 4)), chord.intervals[1])
    return (chord.root + third) % 12


def _seventh(chord: Chord) -> int:
    seventh = next((i for i in chord.intervals if i in (9, 10, 11)), 12)
    return (chord.root + seventh) % 12


def _rootless_ok(ctx: Context, section: Section) -> bool:
    """Whether a bass plays in this section, so chord voicings may leave out the root."""
    return bool(ctx.extra.get("bass")) and "bass" in section.roles


def _with_root(chord: Chord, voicing: list[int]) -> list[int]:
    """Add the root below a rootless voicing."""
    return [nearest_pitch(chord.root, min(voicing) - 7, 36, min(voicing) - 1), *voicing]


def _bass_centre(low: int, high: int) -> float:
    return low + min(9, (high - low) / 3)


def _hold_bass(ctx: Context, bar_start: float, low: int, high: int, intensity: float) -> list[Note]:
    chord = ctx.harmony.at(bar_start)
    pitch = nearest_pitch(chord.root, _bass_centre(low, high), low, high)
    return [Note(bar_start, bar_start + ctx.meter.bar_q, pitch, velocity(_base(ctx), intensity, 4))]


def _hold_chord(ctx: Context, bar_start: float, voicing: list[int], intensity: float) -> list[Note]:
    vel = velocity(_base(ctx) * 0.85, intensity)
    return [Note(bar_start, bar_start + ctx.meter.bar_q, p, vel) for p in voicing]


# bass writers --------------------------------------------------------------------------------------------


def bass_whole(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """One sustained root per chord (per bar)."""
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for t0, t1, chord in _segments(ctx, start):
            pitch = nearest_pitch(chord.root, _bass_centre(low, high), low, high)
            notes.append(Note(t0, t1 - 0.05, pitch, velocity(_base(ctx) * 0.9, section.intensity)))
    return notes


def bass_root_fifth(ctx: Context, section: Section, low: int, high: int, legato: float = 0.9) -> list[Note]:
    """Root on the first beat of each chord, the fifth on the bar's middle beat (the two-beat feel)."""
    meter = ctx.meter
    beats = meter.beats_per_bar
    strong = [0.0] if beats == 3 else [0.0, meter.bar_q / 2]
    if beats == 3 and legato > 0.85:
        strong = [0.0, 2.0 * meter.beat_q]
    notes = []
    previous_chord = None
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        changes = {round(t - start, 6) for t in ctx.harmony.changes_in(start + 1e-6, start + meter.bar_q)}
        hits = sorted(set(strong) | changes)
        held_over = ctx.harmony.at(start) == previous_chord  # same chord as the last bar: alternate to the fifth
        for k, offset in enumerate(hits):
            t = start + offset
            chord = ctx.harmony.at(t)
            if offset in changes:
                use_fifth = False
            elif offset == 0.0:  # one hit per bar (waltz): alternate root and fifth over a held chord
                use_fifth = held_over and len(hits) == 1 and bool(notes) and notes[-1].pitch % 12 == chord.root
            else:
                use_fifth = True
            pc = _fifth(chord) if use_fifth else chord.root
            pitch = nearest_pitch(pc, _bass_centre(low, high), low, high)
            end = start + (hits[k + 1] if k + 1 < len(hits) else meter.bar_q)
            length = min(end - t, meter.beat_q * (2 if legato > 0.85 else 1)) * legato
            notes.append(Note(t, t + length, pitch, velocity(_base(ctx), section.intensity, 6 if offset == 0 else 0)))
        previous_chord = ctx.harmony.at(start + meter.bar_q - 1e-3)
    return notes


def bass_oompah(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Short root/fifth on the strong beats (tuba, waltz and march bass)."""
    return bass_root_fifth(ctx, section, low, high, legato=0.7)


def bass_walking(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Quarter-note walking line: root on chord changes, chord tones between, a step into the next root."""
    meter = ctx.meter
    step = meter.beat_q
    notes: list[Note] = []
    previous = nearest_pitch(ctx.harmony.at(section.start_q).root, _bass_centre(low, high) + 3, low, high)
    scale = set(ctx.scale)
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        count = int(round(meter.bar_q / step))
        for k in range(count):
            t = start + k * step
            chord = ctx.harmony.at(t)
            span = ctx.harmony.span_at(t)
            next_root = ctx.harmony.at(t + step).root
            on_change = abs(span.start - t) < 1e-6
            before_change = ctx.harmony.span_at(t + step).start > t + 1e-6
            if on_change:
                pitch = nearest_pitch(chord.root, previous, low, high)
            elif before_change:
                target = nearest_pitch(next_root, previous, low, high)
                options = [target - 1, target + 1, target - 2, target + 2]
                options = [p for p in options if low <= p <= high and p != previous]
                pitch = options[int(ctx.rng.integers(len(options)))] if options else target
            else:
                tones = [chord.root, _third(chord), _fifth(chord)] + [p for p in chord.pitch_classes if p in scale]
                candidates = [nearest_pitch(pc, previous + ctx.rng.choice([-3, 3]), low, high) for pc in tones]
                candidates = [p for p in candidates if p != previous] or candidates
                pitch = min(candidates, key=lambda p: abs(p - previous) + ctx.rng.random() * 3)
            accent = 6 if k == 0 else (3 if k % 2 == 0 else 0)
            notes.append(Note(t, t + step * 0.92, pitch, velocity(_base(ctx) * 0.95, section.intensity, accent)))
            previous = pitch
    return notes


def bass_boogie(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """The shuffle boogie figure root-3-5-6-b7-6-5-3 in eighths."""
    figure = [0, 4, 7, 9, 10, 9, 7, 4]
    notes = []
    count = int(round(ctx.meter.bar_q / 0.5))
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for k in range(count):
            t = start + k * 0.5
            chord = ctx.harmony.at(t)
            root = nearest_pitch(chord.root, low + 5, low, high - 10)
            interval = figure[k % len(figure)]
            if interval == 4 and 3 in chord.intervals:
                interval = 3
            notes.append(Note(t, t + 0.42, root + interval,
                              velocity(_base(ctx), section.intensity, 8 if k % 2 == 0 else 0)))
    return notes


def bass_eighths(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Driving root eighths with a fifth/octave pickup before chord changes (rock, punk)."""
    notes = []
    count = int(round(ctx.meter.bar_q / 0.5))
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for k in range(count):
            t = start + k * 0.5
            chord = ctx.harmony.at(t)
            root = nearest_pitch(chord.root, _bass_centre(low, high), low, high)
            pitch = root
            if k >= count - 2 and ctx.harmony.at(t + 1.0) != chord and ctx.rng.random() < 0.6:
                pitch = root + (7 if k == count - 2 else 12)
                if pitch > high:
                    pitch -= 12
            accent = 8 if k % 2 == 0 else 0
            notes.append(Note(t, t + 0.4, pitch, velocity(_base(ctx), section.intensity, accent)))
    return notes


def bass_octave(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Disco octaves: root eighths alternating between two octaves."""
    notes = []
    count = int(round(ctx.meter.bar_q / 0.5))
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for k in range(count):
            t = start + k * 0.5
            root = nearest_pitch(ctx.harmony.at(t).root, low + 4, low, high - 12)
            pitch = root + (12 if k % 2 else 0)
            notes.append(Note(t, t + 0.32, pitch, velocity(_base(ctx), section.intensity, 0 if k % 2 else 8)))
    return notes


def bass_offbeat(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """House bass on the off-beats, leaving the downbeats to the kick."""
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        beat = 0.0
        while beat < ctx.meter.bar_q - 1e-6:
            t = start + beat + 0.5
            root = nearest_pitch(ctx.harmony.at(t).root, _bass_centre(low, high), low, high)
            notes.append(Note(t, t + 0.38, root, velocity(_base(ctx), section.intensity, 4)))
            beat += 1.0
    return notes


_RIFFS = ("R..R..O.g.R.F.S.", "R.gR..R.O..RF.S.", "R...O.R.g.RR..F.", "R..g.RO..R..S.O.", "R.RO..gR.R..F..S")
_DEGREE = {"R": 0, "O": 12, "F": 7, "S": 10, "g": 0}


def bass_syncopated(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """A two-bar funk riff in 16ths (root, octave, fifth, flat seventh, ghost notes) repeated per section."""
    riff = _RIFFS[int(ctx.rng.integers(len(_RIFFS)))]
    notes = []
    steps = ctx.meter.steps
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        hits = [(i, c) for i, c in enumerate((riff * 2)[:steps]) if c != "."]
        for n, (i, c) in enumerate(hits):
            t = start + i * 0.25
            chord = ctx.harmony.at(t)
            root = nearest_pitch(chord.root, low + 5, low, high - 12)
            interval = _DEGREE[c]
            if c == "S" and 10 not in chord.intervals:
                interval = 7
            nxt = hits[n + 1][0] * 0.25 if n + 1 < len(hits) else ctx.meter.bar_q
            length = 0.12 if c == "g" else min(nxt - i * 0.25, 0.75) * 0.85
            level = _base(ctx) * (0.45 if c == "g" else 1.0)
            notes.append(Note(t, t + length, root + interval, velocity(level, section.intensity, 6 if i == 0 else 0)))
    return notes


_ONE_DROP = (((0.0, 1.0, 0), (1.5, 0.5, 0), (2.0, 1.0, 7), (3.0, 0.5, 12), (3.5, 0.5, 10)),
             ((0.0, 0.75, 0), (1.0, 0.5, 3), (1.5, 1.0, 7), (3.0, 1.0, 0)),
             ((0.5, 1.0, 0), (1.5, 0.5, 0), (2.5, 1.0, 7), (3.5, 0.5, 5)))


def _figure_bass(ctx: Context, section: Section, low: int, high: int,
                 figures: tuple[tuple[tuple[float, float, int], ...], ...], anticipate: bool = False) -> list[Note]:
    """Repeat one bar-long figure of (offset, length, interval above the root) through a section."""
    figure = figures[int(ctx.rng.integers(len(figures)))]
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for offset, length, interval in figure:
            if offset >= ctx.meter.bar_q - 1e-6:
                continue
            t = start + offset
            look = t + (ctx.meter.bar_q - offset if anticipate and offset >= ctx.meter.bar_q - 1.0 else 0.0)
            chord = ctx.harmony.at(look)
            if interval in (3, 4):
                interval = (_third(chord) - chord.root) % 12
            root = nearest_pitch(chord.root, low + 6, low, high - 12)
            notes.append(Note(t, t + length * 0.9, root + interval,
                              velocity(_base(ctx), section.intensity, 6 if offset == 0 else 0)))
    return notes


def bass_one_drop(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Melodic reggae bass figures, heavy and round."""
    return _figure_bass(ctx, section, low, high, _ONE_DROP)


def bass_tumbao(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Latin tumbao: the fifth on the and of two, the next chord's root anticipated on four."""
    return _figure_bass(ctx, section, low, high, (((0.0, 1.5, 0), (1.5, 1.5, 7), (3.0, 1.0, 0)),), anticipate=True)


def bass_bossa(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Bossa nova bass: root dotted quarter and eighth, fifth dotted quarter and eighth."""
    return _figure_bass(ctx, section, low, high, (((0.0, 1.5, 0), (1.5, 0.5, 0), (2.0, 1.5, 7), (3.5, 0.5, 7)),))


def bass_tango(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Tango marcato in 3-3-2."""
    return _figure_bass(ctx, section, low, high, (((0.0, 1.0, 0), (1.5, 1.0, 7), (3.0, 0.75, 12)),
                                                   ((0.0, 0.75, 0), (1.0, 0.75, 7), (2.0, 0.75, 0), (3.0, 0.75, 7))))


def bass_hiphop(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Sparse, long hip-hop bass that locks with the kick."""
    return _figure_bass(ctx, section, low, high, (((0.0, 1.5, 0), (1.75, 0.5, 0), (2.5, 1.25, 0)),
                                                   ((0.0, 2.5, 0), (2.75, 0.75, 7), (3.5, 0.5, 12)),
                                                   ((0.0, 1.0, 0), (1.5, 0.5, 12), (2.5, 1.5, 0))))


def bass_sub(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Long sub-bass notes restruck with the breakbeat's second kick."""
    return _figure_bass(ctx, section, low, high, (((0.0, 2.5, 0), (2.5, 1.5, 0)), ((0.0, 4.0, 0),)))


def bass_chug(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Palm-muted 16th chugs on the root, gallops or straight."""
    pattern = ("x.xxx.xxx.xxx.xx", "xxxxxxxxxxxxxxxx", "x.x.x.xxx.x.x.xx")[int(ctx.rng.integers(3))]
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for offset in _slots(ctx, pattern, 0.25):
            t = start + offset
            root = nearest_pitch(ctx.harmony.at(t).root, low + 4, low, high)
            accent = 10 if ctx.meter.strength(offset) >= 2 else 0
            notes.append(Note(t, t + 0.2, root, velocity(_base(ctx), section.intensity, accent)))
    return notes


def bass_arp(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Chiptune bass: eighths root, octave, fifth, octave."""
    figure = (0, 12, 7, 12)
    notes = []
    count = int(round(ctx.meter.bar_q / 0.5))
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for k in range(count):
            t = start + k * 0.5
            root = nearest_pitch(ctx.harmony.at(t).root, low + 5, low, high - 12)
            notes.append(Note(t, t + 0.4, root + figure[k % 4], velocity(_base(ctx), section.intensity)))
    return notes


def bass_rolling(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Techno rolling bass: three 16ths after every kick."""
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_bass(ctx, start, low, high, section.intensity)
            continue
        for offset in _slots(ctx, ".xxx", 0.25):
            t = start + offset
            root = nearest_pitch(ctx.harmony.at(t).root, low + 6, low, high)
            accent = 6 if offset % 1 == 0.5 else 0
            notes.append(Note(t, t + 0.18, root, velocity(_base(ctx), section.intensity, accent)))
    return notes


BASS_WRITERS: dict[str, Writer] = {
    "whole": bass_whole, "root_fifth": bass_root_fifth, "oompah": bass_oompah, "walking": bass_walking,
    "boogie": bass_boogie, "eighths": bass_eighths, "octave": bass_octave, "offbeat": bass_offbeat,
    "syncopated": bass_syncopated, "one_drop": bass_one_drop, "tumbao": bass_tumbao, "bossa": bass_bossa,
    "tango": bass_tango, "hiphop": bass_hiphop, "sub": bass_sub, "chug": bass_chug, "arp_bass": bass_arp,
    "rolling": bass_rolling,
}

# comping writers -----------------------------------------------------------------------------------------


class _Voicer:
    """Voice-leads close voicings through a section."""

    def __init__(self, low: int, high: int, notes: int = 4, centre: float | None = None):
        self.low, self.high, self.notes = max(low, 40), min(high, 84), notes
        self.centre = centre if centre is not None else min(max((self.low + self.high) / 2, 55), 67)
        self.previous: list[int] | None = None

    def __call__(self, chord: Chord) -> list[int]:
        voicing = close_voicing(chord, self.centre, self.previous, self.low, self.high, self.notes)
        if self.previous and abs(sum(voicing) / len(voicing) - self.centre) > 6:
            voicing = close_voicing(chord, self.centre, None, self.low, self.high, self.notes)
        self.previous = voicing
        return voicing


def _chord_hits(ctx: Context, section: Section, low: int, high: int, hits: list[tuple[float, float, float]],
                voicer: Callable[[Chord], list[int]] | None = None, level: float = 0.8) -> list[Note]:
    """Play a bar rhythm of (offset, length, accent) with voiced chords; the final bar holds."""
    voicer = voicer or _Voicer(low, high)
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, voicer(ctx.harmony.at(start)), section.intensity)
            continue
        for offset, length, accent in hits:
            if offset >= ctx.meter.bar_q - 1e-6:
                continue
            t = start + offset
            vel = velocity(_base(ctx) * level, section.intensity, accent)
            notes.extend(Note(t, t + length, p, vel) for p in voicer(ctx.harmony.at(t)))
    return notes


def comp_block(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Sustained chords, one per chord change (restruck each bar)."""
    voicer = _Voicer(low, high)
    notes = []
    for _, start, final in _bars(ctx, section):
        for t0, t1, chord in _segments(ctx, start):
            end = start + ctx.meter.bar_q if final else t1
            vel = velocity(_base(ctx) * 0.72, section.intensity, 4 if t0 == start else 0)
            notes.extend(Note(t0, end - 0.02, p, vel) for p in voicer(chord))
            if final:
                break
    return notes


def comp_pad(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Open, long pad chords tied over repeated chords."""
    notes: list[Note] = []
    held: dict[int, Note] = {}
    for _, start, _final in _bars(ctx, section):
        for t0, t1, chord in _segments(ctx, start):
            voicing = [p for p in open_voicing(chord, max(low, 48), low, min(high, 84)) if low <= p <= high]
            vel = velocity(_base(ctx) * 0.6, section.intensity)
            current = {}
            for p in voicing:
                if p in held and abs(held[p].end - t0) < 0.05:
                    current[p] = held[p]._replace(end=t1)
                else:
                    current[p] = Note(t0, t1, p, vel)
            for p, note in held.items():
                if p not in current:
                    notes.append(note)
            held = current
    notes.extend(held.values())
    return notes


def comp_pulse(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Chords on every beat, in eighths when the section is loud."""
    beat = ctx.meter.beat_q
    step = beat / 2 if section.intensity > 0.75 and not ctx.meter.compound else beat
    count = int(round(ctx.meter.bar_q / step))
    hits = [(k * step, step * 0.8, 8 if k == 0 else (3 if (k * step) % beat == 0 else -6)) for k in range(count)]
    return _chord_hits(ctx, section, low, high, hits)


def comp_gospel(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Gospel piano: beats plus pushes on the and of the last beat."""
    bar = ctx.meter.bar_q
    beat = ctx.meter.beat_q
    hits = [(k * beat, beat * 0.7, 8 if k == 0 else 0) for k in range(ctx.meter.beats_per_bar)]
    hits.append((bar - beat / 2, beat / 2 * 0.9, 4))
    hits.sort()
    return _chord_hits(ctx, section, low, high, hits)


_STRUMS = {
    "4/4": ("D.DU.UDU", "D.D.D.DU", "D.DUD.DU", "D..UD.DU"),
    "3/4": ("D.DUDU", "D.D.DU"),
    "6/8": ("D.UD.U", "D..D..", "D.UDUD"),
    "2/4": ("D.DU", "DUDU"),
}


def comp_strum(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Guitar strumming: down strokes over all strings, lighter up strokes on the top strings, staggered."""
    patterns = _STRUMS.get(str(ctx.meter), _STRUMS["4/4"])
    pattern = patterns[int(ctx.rng.integers(len(patterns)))]
    step = 0.5
    per_string = 0.011 / ctx.seconds_per_quarter
    notes = []
    for _, start, final in _bars(ctx, section):
        strokes = [(i * step, c) for i, c in enumerate((pattern * 4)[: int(round(ctx.meter.bar_q / step))])
                   if c != "."]
        if final:
            strokes = [(0.0, "D")]
        for n, (offset, kind) in enumerate(strokes):
            t = start + offset
            voicing = guitar_voicing(ctx.harmony.at(t), max(low, 40))
            end = start + (strokes[n + 1][0] if n + 1 < len(strokes) else ctx.meter.bar_q)
            if final:
                end = start + ctx.meter.bar_q
            strings = voicing if kind == "D" else list(reversed(voicing[-4:]))
            accent = 8 if offset == 0 else (0 if kind == "D" else -12)
            vel = velocity(_base(ctx) * 0.78, section.intensity, accent)
            for k, p in enumerate(strings):
                onset = t + k * per_string
                notes.append(Note(onset, max(end - 0.02, onset + 0.1), p, max(1, vel - k)))
    return notes


_PICKS = {"4/4": (0, 3, 1, 4, 0, 3, 1, 4), "3/4": (0, 3, 4, 3, 1, 3), "6/8": (0, 2, 3, 4, 3, 2),
          "2/4": (0, 3, 1, 4)}


def comp_fingerpick(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Travis-style fingerpicking: alternating bass on the beats, treble strings between."""
    order = _PICKS.get(str(ctx.meter), _PICKS["4/4"])
    count = int(round(ctx.meter.bar_q / 0.5))
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, guitar_voicing(ctx.harmony.at(start), max(low, 40)), section.intensity)
            continue
        for k in range(count):
            t = start + k * 0.5
            voicing = guitar_voicing(ctx.harmony.at(t), max(low, 40))
            pitch = voicing[min(order[k % len(order)], len(voicing) - 1)]
            accent = 6 if k % 2 == 0 else -4
            notes.append(Note(t, t + 1.2, pitch, velocity(_base(ctx) * 0.8, section.intensity, accent)))
    return notes


def _arpeggio(ctx: Context, section: Section, low: int, high: int, step: float, span: int) -> list[Note]:
    notes = []
    count = int(round(ctx.meter.bar_q / step))
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, open_voicing(ctx.harmony.at(start), max(low, 43), low, high),
                                 section.intensity)
            continue
        for k in range(count):
            t = start + k * step
            chord = ctx.harmony.at(t)
            tones = [p for p in open_voicing(chord, max(low, 43), low, high)]
            tones += [p + 12 for p in tones[1:] if p + 12 <= high]
            tones = sorted(set(tones))[:span]
            cycle = tones + tones[-2:0:-1]
            since_change = int(round((t - max(ctx.harmony.span_at(t).start, start)) / step))
            pitch = cycle[since_change % len(cycle)]  # every chord starts its pattern from the root
            accent = 6 if k == 0 else (2 if ctx.meter.strength(k * step) >= 2 else -4)
            notes.append(Note(t, t + step * 1.6, pitch, velocity(_base(ctx) * 0.75, section.intensity, accent)))
    return notes


def comp_arpeggio(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Broken chords in eighths rising and falling over an open voicing (harp, guitar, harpsichord)."""
    return _arpeggio(ctx, section, low, high, 0.5, 6)


def comp_arp16(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Fast 16th-note arpeggios (chiptune)."""
    return _arpeggio(ctx, section, max(low, 55), high, 0.25, 4)


_ALBERTI = {"4/4": (0, 2, 1, 2), "3/4": (0, 2, 1, 2, 1, 2), "6/8": (0, 1, 2, 1, 2, 1), "2/4": (0, 2, 1, 2)}


def comp_alberti(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Classical left hand: low-high-middle-high broken triads."""
    order = _ALBERTI.get(str(ctx.meter), _ALBERTI["4/4"])
    step = 0.25 if ctx.bpm < 84 and not ctx.meter.compound else 0.5
    voicer = _Voicer(max(low, 43), 67, notes=3, centre=55)
    count = int(round(ctx.meter.bar_q / step))
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, voicer(ctx.harmony.at(start)), section.intensity)
            continue
        for k in range(count):
            t = start + k * step
            triad = voicer(ctx.harmony.at(t))
            index = order[k % len(order)]
            pitch = triad[min(index, len(triad) - 1)]
            length = step * (2.0 if index == 0 else 0.9)
            vel = velocity(_base(ctx) * 0.7, section.intensity, 5 if index == 0 else 0)
            notes.append(Note(t, t + length, pitch, vel))
    return notes


def comp_oompah(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Off-beat chords: beats 2-3 in 3/4, the ands in 2/4, 2 and 4 in 4/4."""
    meter = ctx.meter
    beat = meter.beat_q
    if meter.compound:
        offsets = [0.5, 1.0, 2.0, 2.5]
    elif meter.numerator == 2:
        offsets = [0.5, 1.5]
    else:
        offsets = [k * beat for k in range(1, meter.beats_per_bar)] if meter.beats_per_bar == 3 else [1.0, 3.0]
    hits = [(o, min(beat, 0.5) * 0.9 if meter.compound or meter.numerator == 2 else beat * 0.6, 0) for o in offsets]
    return _chord_hits(ctx, section, low, high, hits, _Voicer(low, high, 3, 62), level=0.7)


_STAB_RHYTHMS = ("..x..x..", ".x..x..x", "x..x..x.", "..x...x.", "x.x..x..")


def comp_stabs(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Short syncopated chord stabs (house piano, brass section, funk keys)."""
    rhythm = _STAB_RHYTHMS[int(ctx.rng.integers(len(_STAB_RHYTHMS)))]
    hits = [(o, 0.3, 6 if ctx.meter.strength(o) < 2 else 0) for o in _slots(ctx, rhythm, 0.5)]
    return _chord_hits(ctx, section, low, high, hits, _Voicer(low, high, 4, 64))


def comp_skank(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Reggae skank: short, bright chords on every off-beat."""
    hits = [(o, 0.22, 0) for o in _slots(ctx, ".x", 0.5)]
    return _chord_hits(ctx, section, low, high, hits, _Voicer(max(low, 55), high, 3, 66), level=0.75)


_SWING_CELLS = {
    "4/4": (((0.0, 1.2, 4), (1.5, 0.4, 0)), ((1.5, 0.4, 4), (3.0, 0.8, 0)), ((0.5, 0.4, 4), (2.5, 1.0, 0)),
            ((0.0, 0.4, 4), (1.5, 1.2, 0)), ((2.5, 1.2, 2),)),
    "3/4": (((0.0, 0.8, 4), (1.5, 0.4, 0)), ((1.0, 0.4, 2), (2.0, 0.8, 0)), ((0.5, 0.4, 2),)),
}


def comp_swing(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Jazz comping: rootless shell voicings on irregular, syncopated hits that change every bar."""
    cells = _SWING_CELLS.get(str(ctx.meter), _SWING_CELLS["4/4"])
    previous: list[int] | None = None
    rootless = _rootless_ok(ctx, section)
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            chord = ctx.harmony.at(start)
            notes += _hold_chord(ctx, start, _with_root(chord, shell_voicing(chord, 62, previous)), section.intensity)
            continue
        for offset, length, accent in cells[int(ctx.rng.integers(len(cells)))]:
            if offset >= ctx.meter.bar_q:
                continue
            t = start + offset
            chord = ctx.harmony.at(t)
            previous = shell_voicing(chord, 62, previous)
            vel = velocity(_base(ctx) * 0.72, section.intensity, accent)
            notes.extend(Note(t, t + length, p, vel) for p in (previous if rootless else _with_root(chord, previous)))
    return notes


def comp_power8(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Power chords: palm-muted eighths in quiet sections, ringing accented hits in loud ones."""
    notes = []
    count = int(round(ctx.meter.bar_q / 0.5))
    ring = section.intensity >= 0.8
    for _, start, final in _bars(ctx, section):
        for k in range(1 if final else count):
            t = start + k * 0.5
            voicing = power_voicing(ctx.harmony.at(t), 45, 40, 64)
            if final:
                length = ctx.meter.bar_q
            elif ring:
                length = 0.48
            else:
                length = 0.22
            accent = 10 if k % 2 == 0 else 0
            vel = velocity(_base(ctx) * 0.85, section.intensity, accent)
            notes.extend(Note(t, t + length, p, vel) for p in voicing)
    return notes


def comp_power_sustain(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Ringing power chords restruck on each half bar."""
    half = ctx.meter.bar_q / 2
    hits = [(0.0, half * 0.95, 8), (half, half * 0.95, 0)]
    return _chord_hits(ctx, section, low, high, hits, lambda chord: power_voicing(chord, 45, 40, 64), level=0.85)


def comp_chug(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Metal 16th chugs on low power chords."""
    pattern = ("x.xxx.xxx.xxx.xx", "xxxxxxxxxxxxxxxx", "x.x.x.xxx.x.x.xx")[int(ctx.rng.integers(3))]
    hits = [(o, 0.2, 10 if ctx.meter.strength(o) >= 2 else 0) for o in _slots(ctx, pattern, 0.25)]
    return _chord_hits(ctx, section, low, high, hits, lambda chord: power_voicing(chord, 42, 40, 60, octave=False),
                       level=0.9)


def comp_scratch(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Funk guitar: 16th-note scratching with muted ghost strokes between chord chops."""
    pattern = ("x.gxg.x.gxg.x.gx", "g.x.gxg.g.x.gxgx", "x.g.gxg.x.g.gxg.")[int(ctx.rng.integers(3))]
    voicer = _Voicer(max(low, 55), min(high, 79), 3, 66)
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, voicer(ctx.harmony.at(start)), section.intensity)
            continue
        for i, c in enumerate((pattern * 2)[: ctx.meter.steps]):
            if c == ".":
                continue
            t = start + i * 0.25
            voicing = voicer(ctx.harmony.at(t))
            ghost = c == "g"
            vel = velocity(_base(ctx) * (0.42 if ghost else 0.78), section.intensity)
            length = 0.08 if ghost else 0.18
            notes.extend(Note(t, t + length, p, vel) for p in voicing)
    return notes


def comp_clav(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Clavinet riff: syncopated 16th dyads of chord tones."""
    pattern = ("x..x.x..x..x.x..", "x.xx..x.x.xx..x.", ".x.x..xx.x.x..x.")[int(ctx.rng.integers(3))]
    notes = []
    for _, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, close_voicing(ctx.harmony.at(start), 62, None, 50, 76, 3),
                                 section.intensity)
            continue
        for n, offset in enumerate(_slots(ctx, pattern, 0.25)):
            t = start + offset
            chord = ctx.harmony.at(t)
            low_tone = nearest_pitch(chord.root if n % 2 == 0 else _third(chord), 58, 50, 70)
            high_tone = nearest_pitch(_seventh(chord) if n % 2 == 0 else _fifth(chord), low_tone + 5, low_tone + 1, 79)
            vel = velocity(_base(ctx) * 0.8, section.intensity, 6 if ctx.meter.strength(offset) < 1 else 0)
            notes += [Note(t, t + 0.16, low_tone, vel), Note(t, t + 0.16, high_tone, vel)]
    return notes


def comp_montuno(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Salsa piano montuno: two-bar syncopated eighths in octaves cycling through the chord tones."""
    bars_slots = ((0, 1, 3, 4, 6), (1, 2, 4, 5, 7))
    notes = []
    for bar, start, final in _bars(ctx, section):
        if final:
            notes += _hold_chord(ctx, start, close_voicing(ctx.harmony.at(start), 64, None, 55, 79, 3),
                                 section.intensity)
            continue
        for n, slot in enumerate(bars_slots[bar % 2]):
            offset = slot * 0.5
            if offset >= ctx.meter.bar_q:
                continue
            t = start + offset
            chord = ctx.harmony.at(t)
            pc = (chord.root, _third(chord), _fifth(chord), _third(chord))[n % 4]
            pitch = nearest_pitch(pc, 64, 55, 76)
            vel = velocity(_base(ctx) * 0.78, section.intensity, 6 if offset % 1 else 0)
            notes += [Note(t, t + 0.4, pitch, vel), Note(t, t + 0.4, pitch + 12, vel - 6)]
    return notes


def comp_bossa(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Bossa nova guitar: thumb on root and fifth, syncopated shell chords over two bars."""
    chord_slots = ((0.0, 1.5, 2.5), (0.5, 1.5, 3.0))
    previous: list[int] | None = None
    notes = []
    for bar, start, final in _bars(ctx, section):
        if final:
            chord = ctx.harmony.at(start)
            notes += _hold_chord(ctx, start, [nearest_pitch(chord.root, 45, 40, 52),
                                              *shell_voicing(chord, 60, previous)], section.intensity)
            continue
        for offset, interval in ((0.0, 0), (ctx.meter.bar_q / 2, 7)):
            chord = ctx.harmony.at(start + offset)
            bass = nearest_pitch((chord.root + interval) % 12, 45, 40, 52)
            vel = velocity(_base(ctx) * 0.8, section.intensity)
            notes.append(Note(start + offset, start + offset + 1.4, bass, vel))
        for offset in chord_slots[bar % 2]:
            if offset >= ctx.meter.bar_q:
                continue
            t = start + offset
            previous = shell_voicing(ctx.harmony.at(t), 60, previous)
            vel = velocity(_base(ctx) * 0.7, section.intensity, 3)
            notes.extend(Note(t, t + 0.45, p, vel) for p in previous)
    return notes


def comp_ostinato(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Cinematic string ostinato: repeated eighth chords (16ths when loud) with 3+3+2 accents."""
    step = 0.25 if section.intensity > 0.8 and not ctx.meter.compound else 0.5
    count = int(round(ctx.meter.bar_q / step))
    accents = "X..X..X." if not ctx.meter.compound else "X..X.."
    hits = [(k * step, step * 0.85, 10 if accents[k % len(accents)] == "X" else -4) for k in range(count)]
    return _chord_hits(ctx, section, low, high, hits, _Voicer(low, high, 3, 60), level=0.75)


COMP_WRITERS: dict[str, Writer] = {
    "block": comp_block, "pad": comp_pad, "pulse": comp_pulse, "gospel": comp_gospel, "strum": comp_strum,
    "fingerpick": comp_fingerpick, "arpeggio": comp_arpeggio, "arp16": comp_arp16, "alberti": comp_alberti,
    "oompah": comp_oompah, "stabs": comp_stabs, "skank": comp_skank, "swing_comp": comp_swing,
    "power8": comp_power8, "power_sustain": comp_power_sustain, "chug": comp_chug, "scratch": comp_scratch,
    "clav": comp_clav, "montuno": comp_montuno, "bossa_comp": comp_bossa, "ostinato": comp_ostinato,
}

# counter lines -------------------------------------------------------------------------------------------


def counter_harmony(ctx: Context, section: Section, low: int, high: int, lead: list[Note]) -> list[Note]:
    """Double the lead a diatonic third (or sixth) below, where that stays in the chord's scale."""
    scale = sorted(ctx.scale)
    notes = []
    for note in lead:
        if not section.start_q - 1e-6 <= note.start < section.end_q - 1e-6:
            continue
        pc = note.pitch % 12
        if pc in scale:
            index = scale.index(pc)
            below = scale[(index - 2) % len(scale)]
        else:
            below = (pc - 3) % 12
        pitch = note.pitch - ((pc - below) % 12)
        while pitch < low:
            pitch += 12
        if pitch > high or pitch >= note.pitch:
            continue
        notes.append(Note(note.start, note.end, pitch, max(1, note.velocity - 12)))
    return notes


def counter_guide(ctx: Context, section: Section, low: int, high: int, lead: list[Note]) -> list[Note]:
    """Sustained guide tones: the third (or seventh) of each chord, moving by the smallest step."""
    centre = (low + high) / 2 - 2
    previous = None
    notes = []
    for _, start, final in _bars(ctx, section):
        for t0, t1, chord in _segments(ctx, start):
            options = [_third(chord), _seventh(chord) if _seventh(chord) != chord.root else _fifth(chord)]
            target = previous if previous is not None else centre
            pitch = min((nearest_pitch(pc, target, low, high) for pc in options), key=lambda p: abs(p - target))
            end = start + ctx.meter.bar_q if final else t1
            notes.append(Note(t0, end - 0.05, pitch, velocity(_base(ctx) * 0.7, section.intensity)))
            previous = pitch
            if final:
                break
    return notes


def counter_stabs(ctx: Context, section: Section, low: int, high: int, lead: list[Note]) -> list[Note]:
    """Horn-section stabs answering the lead."""
    return comp_stabs(ctx, section, max(low, 55), high)


COUNTER_WRITERS = {"harmony": counter_harmony, "guide": counter_guide, "stabs": counter_stabs}


def timpani(ctx: Context, section: Section, low: int, high: int) -> list[Note]:
    """Timpani: tonic/dominant strokes on the downbeats of phrases and a roll into the next section."""
    notes = []
    for bar, start, final in _bars(ctx, section):
        chord = ctx.harmony.at(start)
        pitch = nearest_pitch(chord.root, 45, 38, 55)
        if final or bar % 2 == 0:
            length = ctx.meter.bar_q if final else 1.0
            notes.append(Note(start, start + length, pitch, velocity(_base(ctx), section.intensity, 8)))
        if section.fill and bar == section.bars - 1 and not final:
            roll_start = start + ctx.meter.bar_q - ctx.meter.beat_q
            count = int(round(ctx.meter.beat_q / 0.125))
            for k in range(count):
                t = roll_start + k * 0.125
                vel = velocity(_base(ctx) * (0.6 + 0.4 * k / count), section.intensity)
                notes.append(Note(t, t + 0.12, pitch, vel))
    return notes
