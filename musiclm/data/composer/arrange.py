"""Assembling pieces: choose the band, write every part, perform, annotate and label.

:func:`compose` writes a new piece in a style; :func:`compose_with_melody` arranges a given lead line
(its notes kept exactly, moved by whole octaves at most) with another style's band and accompaniment.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np

from musiclm.data.composer.accompaniment import BASS_WRITERS, COMP_WRITERS, COUNTER_WRITERS, comp_pad, timpani
from musiclm.data.composer.character import describe
from musiclm.data.composer.common import Context, Meter, Note, Section, velocity
from musiclm.data.composer.drums import PERCUSSION, PERCUSSION_NAMES, write_groove
from musiclm.data.composer.form import (
    SECTION_CHARACTER,
    build_harmony,
    choose_progressions,
    plan_sections,
    shape_dynamics,
)
from musiclm.data.composer.harmonize import harmonize
from musiclm.data.composer.harmony import Harmony, Span, merge_repeats
from musiclm.data.composer.instruments import kit_name, program_name, program_range
from musiclm.data.composer.melody import LeadWriter
from musiclm.data.composer.performance import Track, perform
from musiclm.data.composer.styles import STYLES, StyleSpec
from musiclm.data.composer.theory import (
    CHORD_INTERVALS,
    MODE_INTERVALS,
    PITCH_CLASS,
    Chord,
    key_signature_number,
    scale_pitch_classes,
    spell_key,
)
from musiclm.data.piece import ClipLabels, Part, Piece

_BASS_PROGRAMS = {42, 43, 47, 58, 70, 67}


@dataclass
class Member:
    """One player of the band: role, GM program (kit for drums) and the writer it plays with."""

    role: str
    program: int
    writer: str
    name: str
    is_drum: bool = False


@dataclass
class LeadSheet:
    """A lead melody with its harmony and metre, in seconds: what :func:`compose_with_melody` arranges."""

    melody: list[tuple[float, float, int]]
    bpm: float
    meter: str
    key: str
    mode: str
    chords: list[tuple[float, float, int, str]] = field(default_factory=list)
    sections: list[tuple[str, float, float]] = field(default_factory=list)
    swing: float = 0.5
    source_id: str = ""
    start: float = 0.0  # time of the first downbeat (a pickup may come before it)

    @classmethod
    def from_piece(cls, piece: Piece) -> LeadSheet:
        """The lead sheet of a composed or arranged piece."""
        labels = piece.labels
        return cls(melody=list(piece.melody), bpm=labels.bpm, meter=labels.meter, key=labels.key,
                   mode=labels.mode, chords=list(piece.chords), sections=list(piece.sections),
                   swing=float(labels.extra.get("swing_ratio", 0.5)), source_id=piece.piece_id,
                   start=piece.bar_times[0] if piece.bar_times else 0.0)


def _weighted(options: dict[str, float], rng: np.random.Generator) -> str:
    names = list(options)
    weights = np.array([options[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _pick(values: tuple, rng: np.random.Generator):
    return values[int(rng.integers(len(values)))]


def choose_band(spec: StyleSpec, rng: np.random.Generator) -> list[Member]:
    """Pick the instruments (and their writers) of one piece from a style's options."""
    lead = int(_pick(spec.lead, rng))
    band = [Member("lead", lead, "lead", program_name(lead))]
    chords_program, chords_writer = _pick(spec.chords, rng)
    chords_program = lead if chords_program == -1 else chords_program
    band.append(Member("chords", chords_program, chords_writer, program_name(chords_program)))
    if spec.bass and rng.random() < spec.bass_chance:
        program, writer = _pick(spec.bass, rng)
        band.append(Member("bass", program, writer, program_name(program)))
    if spec.pad and rng.random() < spec.pad_chance:
        program = int(_pick(spec.pad, rng))
        band.append(Member("pad", program, "pad", program_name(program)))
    if spec.counter and rng.random() < spec.counter_chance:
        program = int(_pick(spec.counter, rng))
        band.append(Member("counter", program, str(_pick(spec.counter_kinds, rng)), program_name(program)))
    if spec.grooves and rng.random() < spec.drum_chance:
        kit = int(_pick(spec.kits, rng))
        band.append(Member("drums", kit, str(_pick(spec.grooves, rng)), kit_name(kit), is_drum=True))
    if spec.percussion and rng.random() < spec.percussion_chance:
        loop = str(_pick(spec.percussion, rng))
        band.append(Member("percussion", 0, loop, PERCUSSION_NAMES[loop], is_drum=True))
    if rng.random() < spec.timpani_chance:
        band.append(Member("timpani", 47, "timpani", program_name(47)))
    return band


def _range(member: Member) -> tuple[int, int]:
    low, high = program_range(member.program)
    if member.role == "bass" and member.program // 8 != 4 and member.program not in _BASS_PROGRAMS:
        return 36, 60
    if member.role == "lead":
        return max(low, 52), high
    return low, high


def _in_sections(sections: list[Section], role: str) -> list[Section]:
    return [s for s in sections if role in s.roles]


def write_band(ctx: Context, band: list[Member], sections: list[Section],
               lead_notes: list[Note] | None = None) -> list[tuple[Member, list[Note]]]:
    """Write every member's notes; ``lead_notes`` replaces the lead writer when given."""
    style = ctx.style
    written: list[tuple[Member, list[Note]]] = []
    lead_member = next(m for m in band if m.role == "lead")
    ctx.extra["bass"] = any(m.role == "bass" for m in band)
    if lead_notes is None:
        low, high = _range(lead_member)
        lead_notes = LeadWriter(ctx, style.melody, low, high).write(sections)
    written.append((lead_member, lead_notes))
    for member in band:
        low, high = _range(member)
        if member.role == "chords" and member.program == lead_member.program:
            low, high = min(low, 40), min(high, 67)  # one instrument, two hands: keep the left hand low
        notes: list[Note] = []
        if member.role == "chords":
            for section in _in_sections(sections, "chords"):
                notes += COMP_WRITERS[member.writer](ctx, section, low, high)
        elif member.role == "bass":
            for section in _in_sections(sections, "bass"):
                notes += BASS_WRITERS[member.writer](ctx, section, low, high)
        elif member.role == "pad":
            for section in _in_sections(sections, "pad"):
                notes += comp_pad(ctx, section, max(low, 48), min(high, 84))
        elif member.role == "counter":
            for section in _in_sections(sections, "counter"):
                notes += COUNTER_WRITERS[member.writer](ctx, section, low, high, lead_notes)
        elif member.role == "drums":
            notes = write_groove(member.writer, ctx.meter, sections, ctx.rng, swing_feel=ctx.swing > 0.55)
        elif member.role == "percussion":
            notes = write_groove(member.writer, ctx.meter, sections, ctx.rng, table=PERCUSSION)
        elif member.role == "timpani":
            for section in _in_sections(sections, "timpani"):
                notes += timpani(ctx, section, low, high)
        else:
            continue
        written.append((member, notes))
    return written


def _tracks(ctx: Context, written: list[tuple[Member, list[Note]]], lead_given: bool) -> list[Track]:
    style = ctx.style
    tracks = []
    for member, notes in written:
        role = "percussion" if member.role == "timpani" else member.role
        part = Part(name=member.name, program=0 if member.is_drum else member.program, is_drum=member.is_drum,
                    role=role)
        timing = style.humanize_ms
        if member.is_drum:
            timing = 0.0 if style.quantized_drums else style.humanize_ms * 0.6
        vel_sd = 2.0 if style.quantized_drums else 5.0
        given = lead_given and member.role == "lead"
        tracks.append(Track(part=part, notes=notes, midi_program=member.program,
                            timing_ms=0.0 if given else timing, velocity_sd=0.0 if given else vel_sd,
                            swing=not given))
    return tracks


def _piece_id(prefix: str, choices: tuple, notes: list[Note]) -> str:
    digest = hashlib.sha1(repr(choices).encode())
    digest.update(np.array([(n.pitch, int(round(n.start * 48))) for n in notes[:256]], dtype=np.int64).tobytes())
    return f"{prefix}-{digest.hexdigest()[:12]}"


def _assemble(ctx: Context, written: list[tuple[Member, list[Note]]], sections: list[Section], *, genre: str,
              piece_id: str, source: str, extra: dict, lead_given: bool, min_seconds: float) -> Piece:
    """Perform the written parts and attach annotations and labels."""
    meter = ctx.meter
    qpm = ctx.bpm * meter.qpm_per_bpm
    spq = 60.0 / qpm
    tracks = _tracks(ctx, written, lead_given)
    midi, instruments = perform(tracks, meter=meter, qpm=qpm, key_number=key_signature_number(ctx.tonic, ctx.mode),
                                swing=ctx.swing, swing_unit=ctx.swing_unit, rng=ctx.rng, min_end=min_seconds)
    parts = [track.part for track, instrument in zip(tracks, instruments, strict=True) if instrument is not None]
    lead_instrument = instruments[0]
    melody = [(n.start, n.end, n.pitch) for n in lead_instrument.notes] if lead_instrument else []
    first_q = sections[0].start_q
    total_bars = int(round((sections[-1].end_q - first_q) / meter.bar_q))
    bar_seconds = meter.bar_q * spq
    beat_seconds = meter.beat_q * spq
    bar_times = [first_q * spq + i * bar_seconds for i in range(total_bars)]
    beat_times = [bar_times[0] + i * beat_seconds for i in range(len(bar_times) * meter.beats_per_bar)]
    character = describe(midi, ctx.bpm, ctx.mode, swing=ctx.swing > 0.53)
    labels = ClipLabels(
        genre=genre, parts=parts, bpm=float(ctx.bpm), key=spell_key(ctx.tonic, ctx.mode), mode=ctx.mode,
        meter=str(meter), mood=character.mood, energy=character.energy, dynamics=character.dynamics,
        texture=character.texture, sections=[s.name for s in sections], source=source,
        extra={**extra, "swing": bool(ctx.swing > 0.53), "swing_ratio": round(float(ctx.swing), 3)},
    )
    chords = [(s.start * spq, s.end * spq, s.chord.root, s.chord.quality) for s in ctx.harmony.spans
              if s.end > first_q]
    return Piece(piece_id=piece_id, midi=midi, labels=labels, beat_times=beat_times, bar_times=bar_times,
                 sections=[(s.name, s.start_q * spq, s.end_q * spq) for s in sections], melody=melody,
                 chords=chords)


def compose(style: str, rng: np.random.Generator, seconds: float = 40.0, *, key: str | None = None,
            mode: str | None = None, bpm: float | None = None, meter: str | None = None) -> Piece:
    """Compose a new piece in ``style`` at least ``seconds`` long; ``key``/``mode``/``bpm``/``meter``
    override the style's choices.

    ``bpm`` counts felt beats (dotted quarters in 6/8); the MIDI tempo in quarter notes per minute is
    ``bpm`` times 1.5 in compound meters and ``bpm`` otherwise, so pretty_midi's ``get_beats`` agrees.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(sorted(STYLES))}")
    spec = STYLES[style]
    meter = Meter.parse(meter or _weighted(spec.meters, rng))
    mode = mode or _weighted(spec.modes, rng)
    spec = replace(spec, loudness=float(np.clip(spec.loudness + rng.normal(0.0, 7.0), 45.0, 118.0)))
    if mode not in MODE_INTERVALS:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODE_INTERVALS)}")
    if key is not None and key not in PITCH_CLASS:
        raise ValueError(f"unknown key {key!r}")
    tonic = PITCH_CLASS[key] if key is not None else int(rng.integers(12))
    tempo = float(bpm) if bpm is not None else float(round(rng.uniform(*spec.tempo)))
    colour = _weighted(spec.colours, rng)
    swing = float(rng.uniform(*spec.swing)) if not meter.compound else 0.5
    sections = plan_sections(spec, meter, tempo, seconds, rng)
    arc = _weighted({"flat": 0.75, "crescendo": 0.17, "decrescendo": 0.08}, rng)
    shape_dynamics(sections, arc)
    progressions = choose_progressions(spec, mode, rng)
    harmony = build_harmony(spec, sections, meter, tonic, mode, colour, progressions, rng)
    ctx = Context(style=spec, meter=meter, bpm=tempo, tonic=tonic, mode=mode,
                  scale=scale_pitch_classes(tonic, mode), harmony=harmony, rng=rng, swing=swing,
                  swing_unit=spec.swing_unit)
    band = choose_band(spec, rng)
    written = write_band(ctx, band, sections)
    drums = next((m for m in band if m.role == "drums"), None)
    choices = (style, tonic, mode, tempo, str(meter), colour, tuple(sorted(progressions.items())),
               tuple((m.role, m.program, m.writer) for m in band), round(swing, 4))
    extra = {"chord_colour": colour, "progression": progressions["A"], "dynamic_arc": arc}
    if drums is not None:
        extra.update(groove=drums.writer, drum_kit=drums.program)
    return _assemble(ctx, written, sections, genre=style, piece_id=_piece_id(f"composer-{style}", choices,
                                                                             written[0][1]),
                     source="composer", extra=extra, lead_given=False, min_seconds=seconds)


def _sections_from_sheet(sheet: LeadSheet, meter: Meter, spq: float, bars: int, first_q: float) -> list[Section]:
    """Sections over the lead sheet's bars: its own where it has them, else alternating 8-bar verse/chorus."""
    bar_q = meter.bar_q
    named: list[tuple[str, int, int]] = []
    for name, start, end in sheet.sections:
        a = max(0, int(round((start / spq - first_q) / bar_q)))
        b = min(bars, int(round((end / spq - first_q) / bar_q)))
        if b > a and (not named or a >= named[-1][2]):
            named.append((name, a, b))
    if not named or named[-1][2] < bars:
        begin = named[-1][2] if named else 0
        k = 0
        while begin < bars:
            length = min(8, bars - begin)
            named.append(("verse" if k % 2 == 0 else "chorus", begin, begin + length))
            begin += length
            k += 1
    sections = []
    for i, (name, a, b) in enumerate(named):
        intensity, roles = SECTION_CHARACTER.get(name, SECTION_CHARACTER["verse"])
        following = named[i + 1][0] if i + 1 < len(named) else None
        sections.append(Section(name=name, start_bar=a, bars=b - a, start_q=first_q + a * bar_q,
                                end_q=first_q + b * bar_q, intensity=intensity, roles=roles - {"lead"},
                                fill=following is not None and following != name, ending=i == len(named) - 1))
    return sections


def styles_for_meter(meter: str) -> list[str]:
    """The styles whose table allows ``meter`` (the ones :func:`compose_with_melody` accepts for it)."""
    return [name for name, spec in STYLES.items() if meter in spec.meters]


def compose_with_melody(sheet: LeadSheet | Piece, style: str, rng: np.random.Generator,
                        seconds: float | None = None) -> Piece:
    """Arrange a given lead melody in ``style``: same notes (moved by whole octaves at most), same tempo,
    metre and key, with the style's instruments, bass, comping and drums over the sheet's chords (or over
    chords chosen for the melody when the sheet has none).

    The style must allow the sheet's metre (see :func:`styles_for_meter`). ``seconds`` repeats the sheet
    until the piece is at least that long. The piece id is ``"<source id>@<style>-<hash>"`` and
    ``labels.extra["melody_of"]`` names the source, so all arrangements of one melody can share a split.
    """
    if isinstance(sheet, Piece):
        sheet = LeadSheet.from_piece(sheet)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(sorted(STYLES))}")
    if sheet.meter not in STYLES[style].meters:
        raise ValueError(f"style {style!r} does not play in {sheet.meter}; try one of "
                         f"{', '.join(styles_for_meter(sheet.meter))}")
    return arrange_sheet(sheet, style, rng, seconds)


def arrange_sheet(sheet: LeadSheet, style: str, rng: np.random.Generator, seconds: float | None = None, *,
                  genre: str | None = None, source: str = "composer", piece_id: str | None = None,
                  extra: dict | None = None) -> Piece:
    """Arrange a lead sheet with a style's band (any metre); the work behind :func:`compose_with_melody`.

    ``genre``, ``source``, ``piece_id`` and ``extra`` override the labels a composed arrangement gets
    (the score arranger uses them).
    """
    if not sheet.melody:
        raise ValueError("the lead sheet has no melody")
    spec = STYLES[style]
    meter = Meter.parse(sheet.meter)
    tonic = PITCH_CLASS[sheet.key]
    qpm = sheet.bpm * meter.qpm_per_bpm
    spq = 60.0 / qpm
    first_q = sheet.start / spq
    end_seconds = max(max(e for _, e, _ in sheet.melody), max((e for _, e, _, _ in sheet.chords), default=0.0),
                      max((e for _, _, e in sheet.sections), default=0.0))
    bars = max(1, int(math.ceil((end_seconds / spq - first_q) / meter.bar_q - 0.02)))
    melody_q = [(s / spq, e / spq, p) for s, e, p in sheet.melody]
    if sheet.chords:
        spans = [Span(s / spq, e / spq, Chord(root % 12, quality if quality in CHORD_INTERVALS else "maj"))
                 for s, e, root, quality in sheet.chords]
    else:
        spans = harmonize(melody_q, meter, tonic, sheet.mode, bars, first_q)
    repeats = 1
    period = bars * meter.bar_q
    if seconds is not None:
        repeats = max(1, int(math.ceil((seconds + 0.05 - first_q * spq) / (period * spq))))
    all_spans = [Span(s.start + k * period, s.end + k * period, s.chord) for k in range(repeats) for s in spans]
    harmony = Harmony(merge_repeats(all_spans))
    sections = _sections_from_sheet(sheet, meter, spq, bars, first_q)
    if repeats > 1:
        sections = _repeat_sections(sections, repeats, period)
    band = choose_band(spec, rng)
    lead_member = next(m for m in band if m.role == "lead")
    shift = _octave_shift([p for _, _, p in melody_q], *_range(lead_member))
    ctx = Context(style=spec, meter=meter, bpm=sheet.bpm, tonic=tonic, mode=sheet.mode,
                  scale=scale_pitch_classes(tonic, sheet.mode), harmony=harmony, rng=rng, swing=sheet.swing,
                  swing_unit=spec.swing_unit if sheet.swing > 0.53 else 1.0)
    lead_notes = []
    for k in range(repeats):
        next_start = (k + 1) * period + min(s for s, _, _ in melody_q) if k + 1 < repeats else math.inf
        for s, e, p in melody_q:
            offset_in_bar = (s - first_q) % meter.bar_q
            accent = 8 if meter.strength(round(offset_in_bar * 4) / 4) == 3 else 0
            vel = velocity(spec.loudness * 0.98, 0.65, accent)
            end = min(e + k * period, next_start)
            if end > s + k * period:
                lead_notes.append(Note(s + k * period, end, int(np.clip(p + shift, 0, 127)), vel))
    written = write_band(ctx, band, sections, lead_notes=lead_notes)
    choices = (sheet.source_id, style, tuple((m.role, m.program, m.writer) for m in band), shift)
    labels_extra = {"melody_of": sheet.source_id, "octave_shift": shift // 12, "arrangement": style}
    drums = next((m for m in band if m.role == "drums"), None)
    if drums is not None:
        labels_extra.update(groove=drums.writer, drum_kit=drums.program)
    labels_extra.update(extra or {})
    base = sheet.source_id or "melody"
    return _assemble(ctx, written, sections, genre=genre or style,
                     piece_id=piece_id or _piece_id(f"{base}@{style}", choices, lead_notes), source=source,
                     extra=labels_extra, lead_given=True, min_seconds=seconds or 0.0)


def _octave_shift(pitches: list[int], low: int, high: int) -> int:
    """Whole octaves that move a melody's range into an instrument's comfortable register."""
    centre = (min(pitches) + max(pitches)) / 2
    shift = 12 * int(round((low + (high - low) * 0.45 - centre) / 12))
    while max(pitches) + shift > high and min(pitches) + shift - 12 >= low - 5:
        shift -= 12
    while min(pitches) + shift < low and max(pitches) + shift + 12 <= high + 5:
        shift += 12
    return shift


def _repeat_sections(sections: list[Section], repeats: int, period: float) -> list[Section]:
    out = []
    bars_per = sum(s.bars for s in sections)
    for k in range(repeats):
        for s in sections:
            out.append(Section(s.name, s.start_bar + k * bars_per, s.bars, s.start_q + k * period,
                               s.end_q + k * period, s.intensity, s.roles,
                               fill=s.fill or (s is sections[-1] and k < repeats - 1),
                               ending=s.ending and k == repeats - 1))
    return out
