"""Training pairs for the melody model: one melody rendered in several versions, from the corpus engine.

A *group* is one source melody: an 8 s (``seconds``) stretch of the lead line of a composed piece or of a
music21 score, cut on a bar line where the tune is busiest. With probability ``hard_fraction`` the group also
holds a *hard negative*: the same rhythm in the same key with other notes (:func:`hard_negative`). Every
melody of a group is rendered in ``versions`` versions, version ``k`` of both made with the same choices, so
the hard negative of version ``k`` has the same instrument, band, mix and soundfont and differs only in its
notes. A version (:class:`VersionSpec`) is

- *bare*: the melody alone on a lead instrument, hum-, voice- or whistle-like (choir aahs, voice oohs,
  synth voice, ocarina, flute, whistle) or an ordinary one, moved by whole octaves into the instrument's
  range, with its own articulation, timing and loudness, vibrato and wavering intonation for voices; or
- *arranged*: :func:`~musiclm.data.composer.compose_with_melody` in another style (same notes, a new band,
  bass, comping and drums), over the melody's own chords or chords chosen anew, its lead sometimes swapped
  for a hum-like timbre;

through a soundfont that differs between versions where possible, a random mix (sometimes very wet), a
small global tempo change plus a gradual drift, and a detuning (a tape-speed change of up to 35 cents).
The mapping from the melody's own time line to each clip's time line is stored (:class:`TimeMap`), so a
training crop of one version can be aligned with the same stretch of the tune in another.

The pair set is a corpus folder: ``audio/NN/<clip>.flac`` (24 kHz mono), a JSON sidecar per clip with the
performed melody notes in clip time, and ``manifest.jsonl`` whose records carry the melody facts in
``labels`` (``melody_id``, ``group_id``, ``version``, ``kind``, ``lead_program``, ``soundfont``, ``time_map``,
...). Splits are per group (a melody and its hard negative never straddle splits). Everything is
deterministic from ``seed``: group ``j`` depends only on ``(seed, j)``; groups are dealt to ranks and worker
processes, and a re-run skips finished clips (resumable).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from musiclm import SAMPLE_RATE
from musiclm.audio import resample, save_audio
from musiclm.data.composer.arrange import LeadSheet
from musiclm.data.manifest import (
    REJECTS_DIR,
    ClipRecord,
    ManifestError,
    PartWriter,
    merge_parts,
    read_jsonl,
    read_manifest,
    read_parts,
    split_for,
)
from musiclm.data.piece import ClipLabels, Part, Piece
from musiclm.data.workers import run_jobs
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_write_text
from musiclm.progress import clip_bar

log = logging.getLogger("musiclm.melody")

HUM_LIKE_PROGRAMS = (52, 53, 54, 79, 73, 78)
"""GM choir aahs, voice oohs, synth voice, ocarina, flute, whistle: stand-ins for humming, singing, whistling."""
VOICE_PROGRAMS = (52, 53, 54)
ORDINARY_LEAD_PROGRAMS = (0, 4, 6, 11, 16, 19, 21, 22, 24, 25, 26, 27, 40, 41, 56, 60, 64, 65, 66, 68, 69, 71, 72,
                          74, 75, 80, 81, 82, 85)
"""Pianos, organs, accordion, harmonica, guitars, violin, viola, brass, reeds, pipes and synth leads."""
FALLBACK_STYLES = ("folk", "celtic", "country")
"""Styles that arrange a tune in any metre (used when no style of the table allows the melody's metre)."""
SCORE_FAMILIES = ("essen", "oneills", "ryans", "airds", "fife", "bach")
"""music21 families whose top line is a tune (folk songs, fiddle tunes, chorale sopranos)."""
SETTINGS_FILE = "pairs.json"
SPLIT_FRACTIONS = (0.86, 0.04, 0.10)
"""Train / valid / test share of the groups (a larger test share than the synthetic corpus: retrieval among
100 candidates needs a few hundred held-out melodies)."""
RENDER_ATTEMPTS = 3
MIN_NOTES = 5
MIN_PITCHES = 3
PAIR_SOURCE = "melody-pairs"


class PairError(MusicLMError):
    """A pair set cannot be made or read (bad settings, a folder made with other settings, no melodies)."""


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class GroupJob:
    """What to make for group ``index``: its melodies (one, or two with a hard negative) in ``versions``."""

    index: int
    seed: int
    seconds: float
    versions: int
    twin: bool
    score_fraction: float

    @property
    def group_id(self) -> str:
        return f"g{self.seed}-{self.index:06d}"

    @property
    def melody_ids(self) -> tuple[str, ...]:
        return (f"{self.group_id}-a", f"{self.group_id}-b") if self.twin else (f"{self.group_id}-a",)

    def clip_id(self, melody_id: str, version: int) -> str:
        return f"{melody_id}-v{version}"

    @property
    def clip_ids(self) -> tuple[str, ...]:
        return tuple(self.clip_id(m, k) for m in self.melody_ids for k in range(self.versions))


def plan_jobs(melodies: int, versions: int, seconds: float, seed: int, hard_fraction: float,
              score_fraction: float = 0.2, rank: int = 0, world_size: int = 1) -> list[GroupJob]:
    """The groups of this rank: group ``j`` (``j % world_size == rank``) of ``melodies`` source melodies."""
    jobs = []
    for index in range(rank, melodies, world_size):
        twin = bool(np.random.default_rng([seed, index, 99]).random() < hard_fraction)
        jobs.append(GroupJob(index, seed, seconds, versions, twin, score_fraction))
    return jobs


# ------------------------------------------------------------------------------------- source melody
def source_piece(job: GroupJob, rng: np.random.Generator, styles: list[str], scores: list[str]) -> Piece:
    """A composed piece (styles cycle in a seeded order) or, with ``score_fraction``, an arranged score."""
    from musiclm.data.composer import compose

    length = job.seconds + 20.0
    if scores and rng.random() < job.score_fraction:
        from musiclm.data.scores import arrange_score

        ref = scores[int(rng.integers(len(scores)))]
        try:
            return arrange_score(ref, rng, seconds=length)
        except Exception as exc:  # a score that fails to parse must not stop the pair set
            log.debug("score %s failed (%s); composing instead", ref, exc)
    cycle, position = divmod(job.index, len(styles))
    order = np.random.default_rng([job.seed, 7, cycle]).permutation(len(styles))
    return compose(styles[int(order[position])], rng, seconds=length)


def melody_coverage(melody: list[tuple[float, float, int]], start: float, seconds: float) -> tuple[float, int, int]:
    """Sounding fraction, note count and distinct pitches of ``melody`` inside ``[start, start + seconds)``."""
    end = start + seconds
    inside = [(s, e, p) for s, e, p in melody if start <= s < end]
    sounding = sum(min(e, end) - s for s, e, _ in inside)
    return sounding / seconds, len(inside), len({p for _, _, p in inside})


def choose_window(piece: Piece, seconds: float, rng: np.random.Generator) -> float:
    """A bar line where the lead plays most (among starts within 90 % of the best coverage, at random)."""
    end = piece.seconds
    starts = [t for t in (piece.bar_times or [0.0]) if t + seconds <= end + 1e-6] or [0.0]
    scored = []
    for t in starts:
        coverage, notes, pitches = melody_coverage(piece.melody, t, seconds)
        if notes >= MIN_NOTES and pitches >= MIN_PITCHES:
            scored.append((coverage, t))
    if not scored:
        raise PairError(f"{piece.piece_id}: no {seconds:g} s stretch with at least {MIN_NOTES} melody notes")
    best = max(c for c, _ in scored)
    options = [t for c, t in scored if c >= 0.9 * best]
    return float(options[int(rng.integers(len(options)))])


def crop_sheet(sheet: LeadSheet, start: float, seconds: float, source_id: str) -> LeadSheet:
    """The lead sheet of ``[start, start + seconds)`` with its first downbeat at time 0."""
    end = start + seconds
    melody = [(s - start, min(e, end) - start, p) for s, e, p in sheet.melody if start <= s < end]
    chords = [(max(s, start) - start, min(e, end) - start, root, quality) for s, e, root, quality in sheet.chords
              if e > start and s < end]
    return replace(sheet, melody=melody, chords=chords, sections=[("verse", 0.0, seconds)], source_id=source_id,
                   start=0.0)


def hard_negative(sheet: LeadSheet, rng: np.random.Generator, source_id: str,
                  min_changed: float = 0.6) -> LeadSheet:
    """Same rhythm, key, mode, range and chords, other notes: a scale-wise random walk through the melody's
    range in which at least ``min_changed`` of the notes change pitch class."""
    from musiclm.data.composer.theory import PITCH_CLASS, scale_pitch_classes

    pitches = [p for _, _, p in sheet.melody]
    scale = set(scale_pitch_classes(PITCH_CLASS[sheet.key], sheet.mode))
    ladder = [p for p in range(min(pitches) - 2, max(pitches) + 3) if p % 12 in scale]
    steps, weights = np.array([-3, -2, -1, 0, 1, 2, 3]), np.array([0.05, 0.17, 0.25, 0.06, 0.25, 0.17, 0.05])
    best: list[int] = pitches
    best_changed = -1.0
    for _ in range(30):
        position = int(np.argmin([abs(q - pitches[int(rng.integers(len(pitches)))]) for q in ladder]))
        walk = []
        for _ in pitches:
            position += int(rng.choice(steps, p=weights))
            if position < 0 or position >= len(ladder):  # reflect at the edges of the range
                position = -position if position < 0 else 2 * (len(ladder) - 1) - position
                position = int(np.clip(position, 0, len(ladder) - 1))
            walk.append(ladder[position])
        changed = float(np.mean([a % 12 != b % 12 for a, b in zip(walk, pitches, strict=True)]))
        if changed > best_changed:
            best, best_changed = walk, changed
        if changed >= min_changed and len(set(walk)) >= min(MIN_PITCHES, len(set(pitches))):
            break
    melody = [(s, e, p) for (s, e, _), p in zip(sheet.melody, best, strict=True)]
    return replace(sheet, melody=melody, source_id=source_id)


# ------------------------------------------------------------------------------------------- versions
@dataclass(frozen=True)
class TimeMap:
    """Melody time ``s`` -> clip time ``(s * scale + drift * s**2 / seconds) / speed``.

    ``scale`` is a global tempo change, ``drift`` a gradual one (the tempo has changed by ``2 * drift`` at
    the end of the melody), ``speed`` the tape-speed factor of the detuning (pitch and tempo).
    """

    scale: float = 1.0
    drift: float = 0.0
    speed: float = 1.0
    seconds: float = 8.0

    def clip_time(self, s: float | np.ndarray) -> float | np.ndarray:
        return (np.asarray(s) * self.scale + self.drift * np.asarray(s) ** 2 / self.seconds) / self.speed

    def melody_time(self, t: float | np.ndarray) -> float | np.ndarray:
        """The inverse of :meth:`clip_time`."""
        t = np.asarray(t, dtype=np.float64) * self.speed
        a = self.drift / self.seconds
        if abs(a) < 1e-12:
            return t / self.scale
        return (-self.scale + np.sqrt(self.scale**2 + 4.0 * a * t)) / (2.0 * a)

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TimeMap:
        return cls(**{k: float(v) for k, v in (data or {}).items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class VersionSpec:
    """How version ``k`` of a group's melodies is made (shared by the melody and its hard negative)."""

    kind: str  # "bare" or "arranged"
    program: int | None  # lead GM program; None keeps the arrangement style's own lead
    style: str | None  # arranged: the style of the band
    keep_chords: bool  # arranged: the melody's chords, or chords chosen anew for the notes
    soundfont: str
    time_map: TimeMap
    wet: bool  # a big reverberant room
    vibrato_cents: float  # bare: vibrato depth (0 = none)
    vibrato_hz: float
    intonation_cents: float  # bare: std of a per-note pitch error (0 = in tune)
    articulation: float  # bare: sounding fraction of each note (1 = legato up to the next note)
    octave_bias: int  # bare: extra octaves when the range allows (whistling high, humming low)

    def to_labels(self) -> dict[str, Any]:
        data = asdict(self)
        data["time_map"] = self.time_map.to_dict()
        data["detune_cents"] = round(1200.0 * math.log2(self.time_map.speed), 2)
        return data


def plan_version(version: int, rng: np.random.Generator, meter: str, soundfonts: list[str],
                 font_order: list[int]) -> VersionSpec:
    """Version 0 is a bare hum-like melody, version 1 an arrangement, later versions either."""
    from musiclm.data.composer import styles_for_meter

    kind = "bare" if version == 0 else "arranged" if version == 1 else ("bare" if rng.random() < 0.5 else "arranged")
    hum = version == 0 or rng.random() < 0.5
    program: int | None
    style = None
    keep_chords = True
    if kind == "bare":
        program = int(rng.choice(HUM_LIKE_PROGRAMS if hum else ORDINARY_LEAD_PROGRAMS))
    else:
        styles = styles_for_meter(meter) or list(FALLBACK_STYLES)
        style = str(styles[int(rng.integers(len(styles)))])
        keep_chords = bool(rng.random() < 0.6)
        swap = rng.random()
        program = int(rng.choice(HUM_LIKE_PROGRAMS)) if swap < 0.4 else (
            int(rng.choice(ORDINARY_LEAD_PROGRAMS)) if swap < 0.55 else None)
    detune = float(rng.uniform(-35.0, 35.0)) if rng.random() < 0.7 else 0.0
    time_map = TimeMap(scale=float(rng.uniform(0.975, 1.025)), drift=float(rng.uniform(-0.02, 0.02)),
                       speed=float(2.0 ** (detune / 1200.0)))
    voice = program in VOICE_PROGRAMS
    vibrato = kind == "bare" and rng.random() < (0.6 if voice else 0.25)
    return VersionSpec(
        kind=kind, program=program, style=style, keep_chords=keep_chords,
        soundfont=soundfonts[font_order[version % len(font_order)]], time_map=time_map,
        wet=bool(rng.random() < 0.3),
        vibrato_cents=float(rng.uniform(8.0, 30.0)) if vibrato else 0.0, vibrato_hz=float(rng.uniform(4.5, 6.5)),
        intonation_cents=float(rng.uniform(5.0, 15.0)) if kind == "bare" and voice and rng.random() < 0.5 else 0.0,
        articulation=float(rng.uniform(0.6, 1.0)) if rng.random() < 0.6 else 1.0,
        octave_bias=int(rng.choice([-1, 0, 0, 0, 1])),
    )


def octave_shift(pitches: list[int], program: int, bias: int = 0) -> int:
    """Whole octaves moving ``pitches`` into the program's comfortable range (plus ``bias`` octaves if they fit)."""
    from musiclm.data.composer.instruments import program_range

    low, high = program_range(program)
    centre = (min(pitches) + max(pitches)) / 2
    shift = 12 * int(round((low + (high - low) * 0.45 - centre) / 12))
    while max(pitches) + shift > high and min(pitches) + shift - 12 >= low - 5:
        shift -= 12
    while min(pitches) + shift < low and max(pitches) + shift + 12 <= high + 5:
        shift += 12
    if bias and low - 3 <= min(pitches) + shift + 12 * bias and max(pitches) + shift + 12 * bias <= high + 3:
        shift += 12 * bias
    return shift


def _labels_for(sheet: LeadSheet, parts: list[Part], genre: str) -> ClipLabels:
    return ClipLabels(genre=genre, parts=parts, bpm=float(sheet.bpm), key=sheet.key, mode=sheet.mode,
                      meter=sheet.meter, mood=[], energy="medium", dynamics="moderate", texture="sparse",
                      source=PAIR_SOURCE)


def bare_piece(sheet: LeadSheet, spec: VersionSpec, rng: np.random.Generator, piece_id: str) -> Piece:
    """The melody alone on ``spec.program``: humanised timing and loudness, articulation, vibrato, intonation."""
    from musiclm.data.composer.instruments import program_name

    assert spec.program is not None
    pitches = [p for _, _, p in sheet.melody]
    shift = octave_shift(pitches, spec.program, spec.octave_bias)
    base = float(rng.uniform(70.0, 105.0))
    notes = []
    for i, (s, e, p) in enumerate(sheet.melody):
        nxt = sheet.melody[i + 1][0] if i + 1 < len(sheet.melody) else e
        length = (max(e, nxt) - s) if spec.articulation >= 1.0 else (e - s) * spec.articulation
        jitter = float(np.clip(rng.normal(0.0, 0.012), -0.03, 0.03))
        start = max(0.0, s + jitter)
        end = max(start + 0.05, s + length - 0.01)
        velocity = int(np.clip(round(base + rng.normal(0.0, 6.0)), 20, 127))
        notes.append(pretty_midi.Note(velocity, int(np.clip(p + shift, 0, 127)), start, end))
    for a, b in itertools.pairwise(notes):  # one voice: a note ends where the next begins
        a.end = max(a.start + 0.03, min(a.end, b.start))
    midi = pretty_midi.PrettyMIDI(initial_tempo=float(sheet.bpm))
    instrument = pretty_midi.Instrument(program=spec.program, name=program_name(spec.program))
    instrument.notes = notes
    instrument.pitch_bends = _pitch_wobble(notes, spec, rng)
    midi.instruments.append(instrument)
    labels = _labels_for(sheet, [Part(program_name(spec.program), spec.program, False, "lead")], "melody")
    return Piece(piece_id=piece_id, midi=midi, labels=labels, beat_times=[], bar_times=[0.0],
                 sections=[("melody", 0.0, max(n.end for n in notes))],
                 melody=[(n.start, n.end, n.pitch) for n in notes], chords=[])


def _pitch_wobble(notes: list[pretty_midi.Note], spec: VersionSpec, rng: np.random.Generator) -> list:
    """Pitch bends (GM range +-2 semitones) for vibrato and per-note intonation errors; none when in tune."""
    if spec.vibrato_cents <= 0 and spec.intonation_cents <= 0:
        return []
    end = max(n.end for n in notes)
    times = np.arange(0.0, end + 0.05, 0.02)
    cents = np.zeros_like(times)
    if spec.vibrato_cents > 0:
        onset = np.zeros_like(times)  # vibrato grows in over 0.3 s after each onset
        for note in notes:
            inside = (times >= note.start) & (times < note.end)
            onset[inside] = np.minimum(1.0, (times[inside] - note.start) / 0.3)
        cents += spec.vibrato_cents * onset * np.sin(2 * np.pi * spec.vibrato_hz * times + rng.uniform(0, 6.3))
    if spec.intonation_cents > 0:
        for note in notes:
            error = float(np.clip(rng.normal(0.0, spec.intonation_cents), -30.0, 30.0))
            cents[(times >= note.start) & (times < note.end)] += error
    values = np.clip(np.round(cents * 8192.0 / 200.0), -8192, 8191).astype(int)
    return [pretty_midi.PitchBend(int(v), float(t)) for t, v in zip(times, values, strict=True)]


def arranged_piece(sheet: LeadSheet, spec: VersionSpec, rng: np.random.Generator) -> Piece:
    """The melody arranged by ``spec.style``'s band; the lead swapped for ``spec.program`` when given."""
    from musiclm.data.composer import compose_with_melody
    from musiclm.data.composer.arrange import arrange_sheet
    from musiclm.data.composer.instruments import program_name

    assert spec.style is not None
    source = sheet if spec.keep_chords and sheet.chords else replace(sheet, chords=[])
    try:
        piece = compose_with_melody(source, spec.style, rng)
    except ValueError:  # the style does not play in this metre
        piece = arrange_sheet(source, FALLBACK_STYLES[0], rng)
    lead = next((i for i, part in enumerate(piece.labels.parts) if part.role == "lead"), None)
    if lead is None or lead >= len(piece.midi.instruments):
        raise PairError("the arrangement lost its lead part")
    if spec.program is not None:
        instrument = piece.midi.instruments[lead]
        shift = octave_shift([n.pitch for n in instrument.notes], spec.program)
        for note in instrument.notes:
            note.pitch = int(np.clip(note.pitch + shift, 0, 127))
        instrument.program = spec.program
        instrument.name = program_name(spec.program)
        piece.labels.parts[lead] = Part(program_name(spec.program), spec.program, False, "lead")
    instrument = piece.midi.instruments[lead]
    piece.melody = [(n.start, n.end, n.pitch) for n in instrument.notes]
    return piece


def warp_piece(piece: Piece, time_map: TimeMap) -> None:
    """Apply the tempo change and drift of ``time_map`` (not the speed) to every MIDI event, in place."""
    unsped = replace(time_map, speed=1.0)

    def warp(t: float) -> float:
        return float(unsped.clip_time(t))

    for instrument in piece.midi.instruments:
        for note in instrument.notes:
            note.start, note.end = warp(note.start), warp(note.end)
        for event in (*instrument.control_changes, *instrument.pitch_bends):
            event.time = warp(event.time)
    piece.melody = [(warp(s), warp(e), p) for s, e, p in piece.melody]


# ------------------------------------------------------------------------------------------- rendering
def render_version(renderer: Any, piece: Piece, spec: VersionSpec, font: Any, rng: np.random.Generator,
                   seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render a version's piece (already warped), apply the tape-speed detuning and cut ``seconds``."""
    from musiclm.data.render import random_mix

    mix = random_mix(piece, rng)
    if spec.wet:
        mix = replace(mix, reverb_sends=tuple(min(127, s + 40) for s in mix.reverb_sends),
                      reverb_room=float(rng.uniform(0.75, 0.95)), reverb_level=float(rng.uniform(0.75, 1.0)),
                      reverb_damping=float(rng.uniform(0.1, 0.4)))
    speed = spec.time_map.speed
    length = int(round(seconds * sample_rate))
    rendered = renderer.render(piece, font, rng, start=0.0, seconds=seconds * speed + 0.25, mix=mix)
    if abs(speed - 1.0) > 1e-9:  # played back faster: higher and shorter
        rendered = resample(rendered, int(round(sample_rate * speed * 100)), sample_rate * 100)
    wav = np.zeros(length, dtype=np.float32)
    wav[: min(length, len(rendered))] = rendered[:length]
    fade = int(0.03 * sample_rate)
    wav[length - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32) ** 2
    return np.clip(wav, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _init_worker(out: str, styles: list[str], scores: list[str]) -> None:
    _WORKER.update(out=out, styles=styles, scores=scores)


def _make_group(job: GroupJob) -> dict[str, Any]:
    """Worker: one group's melodies in all versions; returns records and rejects (never raises)."""
    from musiclm.data.render import check_audio, default_renderer
    from musiclm.data.soundfonts import find_soundfonts

    out, styles, scores = Path(_WORKER["out"]), _WORKER["styles"], _WORKER["scores"]
    started = time.perf_counter()
    rng = np.random.default_rng([job.seed, job.index])
    try:
        piece = source_piece(job, rng, styles, scores)
        window = choose_window(piece, job.seconds, rng)
        sheet = crop_sheet(LeadSheet.from_piece(piece), window, job.seconds, job.melody_ids[0])
        sheets = [sheet]
        if job.twin:
            sheets.append(hard_negative(sheet, np.random.default_rng([job.seed, job.index, 98]), job.melody_ids[1]))
    except Exception as exc:
        reason = f"melody failed: {type(exc).__name__}: {exc}"
        return {"records": [], "rejects": [{"id": c, "reason": reason} for c in job.clip_ids],
                "cpu_seconds": time.perf_counter() - started}
    split = split_for(job.group_id, job.seed, SPLIT_FRACTIONS)
    fonts = find_soundfonts()
    names = [f.name for f in fonts]
    font_order = [int(i) for i in np.random.default_rng([job.seed, job.index, 7]).permutation(len(fonts))]
    renderer = default_renderer(SAMPLE_RATE)
    source = piece.labels.source if piece.labels.source != "composer" else f"composer:{piece.labels.genre}"
    records, rejects = [], []
    for k in range(job.versions):
        spec = plan_version(k, np.random.default_rng([job.seed, job.index, 100, k]), sheet.meter, names, font_order)
        for m, (melody_id, melody_sheet) in enumerate(zip(job.melody_ids, sheets, strict=True)):
            clip = job.clip_id(melody_id, k)
            wav, reason, used = None, "not rendered", spec
            for attempt in range(RENDER_ATTEMPTS):
                used = spec if attempt == 0 else replace(spec, soundfont=names[font_order[(k + attempt) % len(names)]])
                build_rng = np.random.default_rng([job.seed, job.index, 200, k, attempt])
                try:
                    version = (bare_piece(melody_sheet, used, build_rng, clip) if used.kind == "bare"
                               else arranged_piece(melody_sheet, used, build_rng))
                    warp_piece(version, used.time_map)
                    font = fonts[names.index(used.soundfont)]
                    wav = render_version(renderer, version, used, font,
                                         np.random.default_rng([job.seed, job.index, 300, k, attempt]), job.seconds)
                except Exception as exc:
                    wav, reason = None, f"render failed: {type(exc).__name__}: {exc}"
                    continue
                reason = check_audio(wav, SAMPLE_RATE, max_silent_fraction=0.45)
                if reason is None:
                    break
            if reason is not None or wav is None:
                rejects.append({"id": clip, "reason": reason, "group_id": job.group_id})
                continue
            speed = used.time_map.speed
            lead_part = next(p for p in version.labels.parts if p.role == "lead")
            notes = [[round(s / speed, 4), round(min(e / speed, job.seconds), 4), int(p)]
                     for s, e, p in version.melody if s / speed < job.seconds]
            folder = f"audio/{job.index % 100:02d}"
            save_audio(out / folder / f"{clip}.flac", wav, SAMPLE_RATE)
            atomic_write_text(out / folder / f"{clip}.json", json.dumps({
                "melody": notes, "source_melody": [[round(s, 4), round(e, 4), p] for s, e, p in melody_sheet.melody],
            }))
            labels = {
                "melody_id": melody_id, "group_id": job.group_id, "version": k,
                "twin": job.melody_ids[1 - m] if job.twin else None, "hard_negative": m == 1,
                "key": sheet.key, "mode": sheet.mode, "meter": sheet.meter, "bpm": round(float(sheet.bpm), 3),
                "melody_source": source, "source_offset": round(window, 4),
                "instrument": lead_part.name, "lead_program": lead_part.program,
                "band": [p.name for p in version.labels.parts], **used.to_labels(),
            }
            records.append(ClipRecord(
                id=clip, path=f"{folder}/{clip}.flac", seconds=job.seconds, sample_rate=SAMPLE_RATE, split=split,
                source=PAIR_SOURCE, piece_id=job.group_id, labels=labels, annotations=f"{folder}/{clip}.json",
            ).to_json())
    return {"records": records, "rejects": rejects, "cpu_seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------------------------- the set
def _score_refs(score_fraction: float) -> list[str]:
    if score_fraction <= 0:
        return []
    try:
        from musiclm.data.scores import list_scores

        return list_scores(list(SCORE_FAMILIES))
    except Exception as exc:  # music21's corpus is optional
        log.warning("music21 scores unavailable (%s); composing every melody", exc)
        return []


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PairError(f"{path}: unreadable ({exc})") from exc
        changed = [k for k, v in settings.items() if old.get(k) != v]
        if changed:
            was = ", ".join(f"{k}={old.get(k)!r}" for k in changed)
            raise PairError(f"{out} was made with other settings ({was}); use the same settings to extend or "
                            "resume it, or another folder")
    else:
        atomic_write_text(path, json.dumps(settings, indent=2))


def _done_ids(out: Path) -> set[str]:
    done = {r.id for r in read_parts(out)}
    for path in (out / REJECTS_DIR).glob("*.jsonl"):
        done |= {d["id"] for d in read_jsonl(path) if "id" in d}
    return done


def build_pairs(
    out: str | os.PathLike[str],
    melodies: int,
    *,
    versions: int = 4,
    seconds: float = 8.0,
    seed: int = 0,
    workers: int = 1,
    hard_fraction: float = 0.3,
    score_fraction: float = 0.2,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Make ``melodies`` source melodies (groups) in ``versions`` versions each into the folder ``out``.

    About ``hard_fraction`` of the groups also get a hard negative. Re-running the same command resumes; a
    larger ``melodies`` extends the set. Returns a summary (clips and melodies in the set, rejects, speed).
    """
    from musiclm.data.composer import STYLES
    from musiclm.data.soundfonts import find_soundfonts

    if melodies < 1:
        raise PairError("--melodies must be at least 1")
    if versions < 2:
        raise PairError("--versions must be at least 2 (a melody needs two versions to form a pair)")
    if not 4.0 <= seconds <= 60.0:
        raise PairError("--seconds must be between 4 (one embedding window) and 60")
    if not 0.0 <= hard_fraction <= 1.0 or not 0.0 <= score_fraction <= 1.0:
        raise PairError("--hard-fraction and --score-fraction must be within [0, 1]")
    if workers < 1 or not 0 <= rank < world_size:
        raise PairError("need workers >= 1 and 0 <= rank < world_size")
    find_soundfonts()  # fail early, with the install hint, when no soundfont is there
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {"format": 1, "seed": seed, "versions": versions, "seconds": seconds,
                          "hard_fraction": hard_fraction, "score_fraction": score_fraction,
                          "split_fractions": list(SPLIT_FRACTIONS)})
    jobs = plan_jobs(melodies, versions, seconds, seed, hard_fraction, score_fraction, rank, world_size)
    done = _done_ids(out)
    todo = [j for j in jobs if not all(c in done for c in j.clip_ids)]
    total = sum(len(j.clip_ids) for j in jobs)
    started = time.perf_counter()
    written, cpu_seconds = 0, 0.0
    reasons: Counter[str] = Counter()
    bar = clip_bar(total, total - sum(len(j.clip_ids) for j in todo), progress, desc="melody pairs")
    scores = _score_refs(score_fraction)
    with PartWriter(out, f"rank{rank:03d}") as part, PartWriter(out, f"rank{rank:03d}", folder=REJECTS_DIR) as rejected:
        for result in run_jobs(todo, _make_group, _init_worker, (str(out), sorted(STYLES), scores), workers):
            for line in result["records"]:
                part.write(line)
                written += 1
            for reject in result["rejects"]:
                rejected.write(json.dumps(reject))
                reasons[reject["reason"].split(":")[0]] += 1
            cpu_seconds += result["cpu_seconds"]
            bar.update(len(result["records"]) + len(result["rejects"]))
    bar.close()
    records = merge_parts(out)
    wall = time.perf_counter() - started
    per_melody = Counter(r.labels.get("melody_id") for r in records)
    usable = {m for m, n in per_melody.items() if n >= 2}
    splits = Counter(split for _, split in {(r.labels.get("melody_id"), r.split) for r in records
                                            if r.labels.get("melody_id") in usable})
    return {
        "out": str(out),
        "groups_requested": melodies,
        "clips_in_manifest": len(records),
        "melodies_in_manifest": len(per_melody),
        "melodies_with_pairs": len(usable),
        "hard_negatives": len({r.labels.get("melody_id") for r in records if r.labels.get("hard_negative")}),
        "clips_written_now": written,
        "clips_rejected_now": sum(reasons.values()),
        "reject_reasons": dict(reasons),
        "hours_in_manifest": round(sum(r.seconds for r in records) / 3600.0, 3),
        "wall_seconds": round(wall, 1),
        "workers": workers,
        "seconds_per_clip_per_worker": round(cpu_seconds / max(written, 1), 3),
        "melodies_per_split": dict(splits),
        "kinds": dict(Counter(r.labels.get("kind") for r in records)),
        "soundfonts": dict(Counter(r.labels.get("soundfont") for r in records)),
    }



# -------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class PairClip:
    """One version of one melody in a pair set."""

    id: str
    root: Path  # the pair-set folder
    path: Path
    melody_id: str
    group_id: str
    version: int
    kind: str
    split: str
    seconds: float
    time_map: TimeMap
    key: str


@dataclass
class PairSet:
    """The clips of one or more pair sets (one split), grouped by melody."""

    clips: list[PairClip]
    melodies: dict[str, list[int]] = field(default_factory=dict)  # melody id -> clip indices, by version
    twins: dict[str, str] = field(default_factory=dict)  # melody id -> its hard negative (both ways)

    @property
    def melody_ids(self) -> list[str]:
        return sorted(self.melodies)


def read_pairs(folders: str | os.PathLike[str] | list[str | os.PathLike[str]], split: str | None = None,
               min_versions: int = 2) -> PairSet:
    """Read pair-set folders; melodies with fewer than ``min_versions`` clips are left out."""
    roots = folders if isinstance(folders, list) else [folders]
    clips: list[PairClip] = []
    for root in roots:
        try:
            records = read_manifest(root, split)
        except ManifestError as exc:
            raise PairError(f"{exc} (make one with `musiclm melody pairs --out {root} --melodies N`)") from None
        for record in records:
            labels = record.labels or {}
            if "melody_id" not in labels:
                raise PairError(f"{root}: clip {record.id} has no melody_id; is this a melody pair set?")
            clips.append(PairClip(
                id=record.id, root=Path(root), path=Path(root) / record.path, melody_id=str(labels["melody_id"]),
                group_id=str(labels.get("group_id", record.piece_id)), version=int(labels.get("version", 0)),
                kind=str(labels.get("kind", "")), split=record.split, seconds=float(record.seconds),
                time_map=TimeMap.from_dict(labels.get("time_map")),
                key=f"{labels.get('key', '')} {labels.get('mode', '')}".strip(),
            ))
    counts = Counter(c.melody_id for c in clips)
    clips = sorted((c for c in clips if counts[c.melody_id] >= min_versions), key=lambda c: (c.melody_id, c.version))
    out = PairSet(clips)
    for i, clip in enumerate(clips):
        out.melodies.setdefault(clip.melody_id, []).append(i)
    by_group: dict[str, list[str]] = {}
    for melody in out.melodies:
        by_group.setdefault(clips[out.melodies[melody][0]].group_id, []).append(melody)
    for members in by_group.values():
        if len(members) == 2:
            out.twins[members[0]], out.twins[members[1]] = members[1], members[0]
    return out
