"""Real scores from music21's corpus, arranged for General MIDI ensembles with exact labels.

Score references are corpus paths, with ``#<number>`` for one tune of a multi-tune ABC collection
(``"oneills1850/0001-0050.abc#7"``). Part-writing scores (Bach chorales, Palestrina, Monteverdi
madrigals, Haydn/Mozart quartets) keep their voices and get a chamber ensemble; single-line
tunes (Essen folk songs, O'Neill's, Ryan's, Aird's and other fiddle/fife tunes) are harmonised and
arranged through the composer's folk/celtic/country bands. music21 keeps its parse cache in its scratch
folder under the system temp dir; nothing else is written.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from musiclm.data.composer.arrange import LeadSheet, arrange_sheet
from musiclm.data.composer.character import describe
from musiclm.data.composer.common import Meter, Note
from musiclm.data.composer.harmonize import harmonize, name_chord
from musiclm.data.composer.harmony import Span, merge_repeats
from musiclm.data.composer.instruments import program_name
from musiclm.data.composer.performance import Track, perform
from musiclm.data.composer.theory import key_signature_number, spell_key
from musiclm.data.piece import ClipLabels, Part, Piece
from musiclm.errors import MusicLMError


class ScoreError(MusicLMError):
    """A score cannot be parsed or arranged (unreadable, no notes, changing metre, ...)."""


@dataclass(frozen=True)
class Family:
    """A family of corpus scores and how to present it."""

    name: str
    prefix: str  # corpus folder
    genre: str
    kind: str  # "voices" (keep the parts) or "tune" (one line to harmonise)
    composer: str = ""
    pattern: str = r".*"  # regular expression the corpus path must match
    target_rate: tuple[float, float] = (1.5, 2.5)  # distinct note onsets per second
    excerpt: bool = False  # long works: arrange an excerpt rather than the whole piece
    tempo_range: tuple[float, float] = (40.0, 200.0)  # felt beats per minute allowed


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("bach", "bach/", "chorale", "voices", "Johann Sebastian Bach", r"bach/bwv\d+(\.\d+)?\.mxl$",
               (1.5, 2.2), tempo_range=(56, 92)),
        Family("palestrina", "palestrina/", "renaissance_polyphony", "voices",
               "Giovanni Pierluigi da Palestrina", r".*\.krn$", (1.5, 2.1), excerpt=True, tempo_range=(56, 96)),
        Family("monteverdi", "monteverdi/", "madrigal", "voices", "Claudio Monteverdi", r".*\.mxl$",
               (1.4, 2.0), excerpt=True, tempo_range=(60, 112)),
        Family("quartets", "", "string_quartet", "voices", "", r"(haydn|mozart)/.*\.mxl$", (3.0, 5.0),
               excerpt=True, tempo_range=(44, 190)),
        Family("essen", "essenFolksong/", "folk", "tune", "traditional", r".*\.abc$", (1.6, 2.8),
               tempo_range=(56, 140)),
        Family("oneills", "oneills1850/", "fiddle_tune", "tune", "traditional", r".*\.abc$", (4.2, 6.5),
               tempo_range=(64, 140)),
        Family("ryans", "ryansMammoth/", "fiddle_tune", "tune", "traditional", r".*\.abc$", (4.2, 6.5),
               tempo_range=(64, 140)),
        Family("airds", "airdsAirs/", "fiddle_tune", "tune", "traditional", r".*\.abc$", (3.2, 5.5),
               tempo_range=(60, 140)),
        Family("fife", "miscFolk/", "folk", "tune", "traditional", r".*\.abc$", (2.5, 4.5), tempo_range=(60, 140)),
    ]
}
"""Families whose sampled scores parse and arrange reliably (sample-checked against music21 10.5)."""

VOICE_ENSEMBLES: dict[str, tuple[int, ...]] = {
    # programs from the highest voice to the lowest; a score with n voices takes n of them by register
    "string quartet": (40, 40, 41, 42),
    "string orchestra": (48, 48, 48, 43),
    "brass choir": (56, 60, 57, 58),
    "church organ": (19, 19, 19, 19),
    "choir": (52, 52, 52, 52),
    "vocal ensemble": (53, 53, 52, 52),
    "woodwind quartet": (73, 68, 71, 70),
    "saxophone quartet": (64, 65, 66, 67),
    "piano": (0, 0, 0, 0),
    "recorder consort": (74, 74, 74, 70),
}
"""Ensembles for part-writing scores."""

_ENSEMBLES_BY_GENRE: dict[str, dict[str, float]] = {
    "chorale": {"string quartet": 2, "brass choir": 2, "church organ": 2, "choir": 2, "vocal ensemble": 1,
                "woodwind quartet": 1, "saxophone quartet": 1, "piano": 1, "string orchestra": 1},
    "renaissance_polyphony": {"choir": 3, "vocal ensemble": 2, "recorder consort": 1, "brass choir": 1,
                              "church organ": 1, "string quartet": 1},
    "madrigal": {"vocal ensemble": 3, "choir": 2, "string quartet": 1, "recorder consort": 1},
    "string_quartet": {"string quartet": 5, "string orchestra": 1},
}
_COMPOSERS = {"haydn": "Joseph Haydn", "mozart": "Wolfgang Amadeus Mozart"}
_TUNE_STYLES: dict[str, dict[str, float]] = {
    "folk": {"folk": 0.7, "celtic": 0.15, "country": 0.15},
    "fiddle_tune": {"celtic": 0.75, "folk": 0.15, "country": 0.1},
}


# listing ---------------------------------------------------------------------------------------------------


def _corpus_paths() -> list[str]:
    from music21 import corpus

    return sorted(str(p).split("/corpus/", 1)[1] for p in corpus.getCorePaths())


@functools.cache
def _family_scores(name: str) -> tuple[str, ...]:
    from music21 import corpus

    family = FAMILIES[name]
    refs: list[str] = []
    for path in _corpus_paths():
        if not path.startswith(family.prefix) or not re.match(family.pattern, path):
            continue
        if path.endswith(".abc"):
            with open(corpus.getWork(path), encoding="latin-1") as handle:
                numbers = re.findall(r"^X:\s*(\d+)", handle.read(), re.MULTILINE)
            if len(numbers) > 1:
                refs.extend(f"{path}#{n}" for n in dict.fromkeys(numbers))
                continue
        refs.append(path)
    return tuple(refs)


def list_scores(families: Iterable[str] | None = None, limit: int | None = None) -> list[str]:
    """Score references of the usable corpus families (all of :data:`FAMILIES` by default).

    ``limit`` caps the number per family (an even spread over the family, deterministic).
    """
    names = list(families) if families is not None else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown score families {unknown}; known: {', '.join(FAMILIES)}")
    refs: list[str] = []
    for name in names:
        found = _family_scores(name)
        if limit is not None and len(found) > limit:
            step = len(found) / limit
            found = tuple(found[int(i * step)] for i in range(limit))
        refs.extend(found)
    return refs


def family_of(ref: str) -> Family:
    """The family a score reference belongs to."""
    path = ref.split("#", 1)[0]
    for family in FAMILIES.values():
        if path.startswith(family.prefix) and re.match(family.pattern, path):
            return family
    raise ScoreError(f"{ref}: not in a supported score family ({', '.join(FAMILIES)})")


# parsing ---------------------------------------------------------------------------------------------------


@dataclass
class ParsedScore:
    """The notes of a score on a quarter-note time line, with its metre and analysed key."""

    voices: list[list[tuple[float, float, int]]]  # per part, (start, end, MIDI pitch), highest voice first
    meter: Meter
    pickup: float  # quarter notes before the first downbeat
    length: float  # quarter notes
    tonic: int
    mode: str
    title: str
    composer: str


def parse_score(ref: str) -> ParsedScore:
    """Parse a score reference with music21 (repeats expanded) into voices, metre and key."""
    from music21 import corpus, stream

    path, _, number = ref.partition("#")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = corpus.parse(path, number=int(number)) if number else corpus.parse(path)
            if isinstance(score, stream.Opus):
                raise ScoreError(f"{ref}: holds several works; name one with '#<number>'")
            candidates = [score]
            with contextlib.suppress(Exception):  # music21 raises many kinds; the unexpanded score still plays
                candidates.insert(0, score.expandRepeats())
            for k, candidate in enumerate(candidates):
                try:
                    return _read(candidate, ref)
                except ScoreError:
                    if k == len(candidates) - 1:
                        raise  # expanding repeats can misplace pickups: the written score may still be regular
            raise ScoreError(f"{ref}: nothing to read")
    except ScoreError:
        raise
    except Exception as exc:
        raise ScoreError(f"{ref}: music21 could not parse it ({type(exc).__name__}: {exc})") from exc


def _read(score, ref: str) -> ParsedScore:
    from music21 import key as m21key
    from music21 import meter as m21meter

    signatures = [ts.ratioString for ts in score.recurse().getElementsByClass(m21meter.TimeSignature)]
    meter = Meter.parse(signatures[0]) if signatures else Meter(4, 4)
    changes = sorted({r for r in signatures if r != str(meter) and Meter.parse(r).bar_q >= meter.bar_q / 2})
    if changes:  # tiny signatures only mark pickup fragments and are checked by the bar grid below
        raise ScoreError(f"{ref}: the metre changes ({meter!s}, {', '.join(changes)})")
    voices = []
    for part in score.parts:
        notes = []
        for element in part.stripTies(inPlace=False).flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:
                continue  # grace notes
            start = float(element.offset)
            pitches = [p.midi for p in element.pitches] if element.isChord else [element.pitch.midi]
            notes.extend((start, start + length, int(p)) for p in pitches if 0 <= p <= 127)
        if notes:
            voices.append(sorted(notes))
    if not voices:
        raise ScoreError(f"{ref}: no pitched notes")
    voices.sort(key=lambda v: -float(np.mean([p for _, _, p in v])))
    pickup = _pickup_and_check_bars(score, meter, ref)
    length = max(end for voice in voices for _, end, _ in voice)
    declared = [k for k in score.recurse().getElementsByClass(m21key.Key)]
    analysed = score.analyze("key")
    tonic, mode = analysed.tonic.pitchClass, analysed.mode
    if declared and declared[0].mode in ("dorian", "mixolydian", "phrygian", "lydian"):
        tonic, mode = declared[0].tonic.pitchClass, declared[0].mode
    if mode not in ("major", "minor", "dorian", "mixolydian", "phrygian", "lydian"):
        mode = "major"
    metadata = score.metadata
    title = (metadata.title or metadata.movementName or "") if metadata else ""
    composer = (metadata.composer or "") if metadata else ""
    return ParsedScore(voices, meter, pickup, length, tonic, mode, str(title), str(composer))


def _pickup_and_check_bars(score, meter: Meter, ref: str) -> float:
    """The anacrusis length; raises when full bars leave the regular bar grid (an odd-length fragment)."""
    measures = list(score.parts[0].getElementsByClass("Measure"))
    if not measures:
        return 0.0
    first = float(measures[0].duration.quarterLength)
    pickup = first if first < meter.bar_q - 1e-6 else 0.0
    for measure in measures:
        if abs(float(measure.duration.quarterLength) - meter.bar_q) > 1e-6:
            continue
        phase = (float(measure.offset) - pickup) % meter.bar_q
        if min(phase, meter.bar_q - phase) > 1e-6:
            raise ScoreError(f"{ref}: irregular bar lengths shift the bar grid at measure {measure.number}")
    return pickup


# arranging -------------------------------------------------------------------------------------------------


def _weighted(options: dict[str, float], rng: np.random.Generator) -> str:
    names = list(options)
    weights = np.array([options[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _tempo(parsed: ParsedScore, family: Family, rng: np.random.Generator) -> float:
    """Felt beats per minute at which the score's distinct onsets come at an idiomatic rate per second."""
    onsets = {round(start, 4) for voice in parsed.voices for start, _, _ in voice}
    per_quarter = max(len(onsets) / max(parsed.length, 1.0), 0.25)
    qpm = 60.0 * rng.uniform(*family.target_rate) / per_quarter
    return float(np.clip(round(qpm / parsed.meter.qpm_per_bpm), *family.tempo_range))


def _fit_length(voices: list[list[tuple[float, float, int]]], parsed: ParsedScore, family: Family,
                seconds_q: float) -> tuple[list[list[tuple[float, float, int]]], int, float]:
    """Cut long works at the first bar line after ``seconds_q``; repeat short ones. Returns the voices, the
    number of passes and the length of one pass (a whole number of bars after the pickup)."""
    bar_q, pickup = parsed.meter.bar_q, parsed.pickup
    bars = math.ceil((parsed.length - pickup) / bar_q - 1e-6)
    period = pickup + bars * bar_q
    if family.excerpt and parsed.length > 1.5 * seconds_q:
        cut = pickup + math.ceil((seconds_q - pickup) / bar_q - 1e-6) * bar_q
        voices = [[(s, min(e, cut), p) for s, e, p in v if s < cut - 1e-6] for v in voices]
        return [v for v in voices if v], 1, cut
    passes = max(1, math.ceil((seconds_q + 0.01) / (period - pickup))) if period < seconds_q else 1
    return voices, passes, period - pickup


def _repeat(voice: list[tuple[float, float, int]], passes: int, step: float) -> list[tuple[float, float, int]]:
    """The voice played ``passes`` times, ``step`` quarter notes apart, trimmed so passes never overlap."""
    out = []
    first = min(s for s, _, _ in voice)
    for k in range(passes):
        limit = (k + 1) * step + first if k + 1 < passes else math.inf
        out.extend((s + k * step, min(e + k * step, limit), p) for s, e, p in voice if s + k * step < limit)
    return out


def arrange_score(path: str, rng: np.random.Generator, seconds: float = 40.0) -> Piece:
    """Parse a corpus score and arrange it for a General MIDI ensemble as a labelled :class:`Piece`.

    Raises :class:`ScoreError` when the score cannot be used.
    """
    family = family_of(path)
    parsed = parse_score(path)
    transpose = 0
    if rng.random() < (0.5 if family.kind == "tune" else 0.35):
        transpose = int(rng.integers(-5, 7)) if family.kind == "tune" else int(rng.integers(-3, 4))
    voices = [[(s, e, p + transpose) for s, e, p in v] for v in parsed.voices]
    tonic = (parsed.tonic + transpose) % 12
    bpm = _tempo(parsed, family, rng)
    meter = parsed.meter
    spq = 60.0 / (bpm * meter.qpm_per_bpm)
    voices, passes, step = _fit_length(voices, parsed, family, seconds / spq)
    voices = [_repeat(v, passes, step) for v in voices]
    composer = family.composer or _COMPOSERS.get(path.split("/", 1)[0], "") or parsed.composer
    extra = {"composer": composer, "title": parsed.title, "transposed": transpose}
    piece_id = "score-" + re.sub(r"[^A-Za-z0-9.]+", "-", path).strip("-")
    if family.kind == "tune":
        return _arrange_tune(voices[0], parsed, family, tonic, bpm, passes, step, rng, seconds, path, piece_id,
                             extra)
    return _arrange_voices(voices, parsed, family, tonic, bpm, passes, step, rng, seconds, path, piece_id, extra)


def _arrange_tune(melody: list[tuple[float, float, int]], parsed: ParsedScore, family: Family, tonic: int,
                  bpm: float, passes: int, step: float, rng: np.random.Generator, seconds: float, ref: str,
                  piece_id: str, extra: dict) -> Piece:
    """A single line harmonised and played by a folk, celtic or country band."""
    meter = parsed.meter
    spq = 60.0 / (bpm * meter.qpm_per_bpm)
    top = _monophonic(melody)
    style = _weighted(_TUNE_STYLES[family.genre], rng)
    bars = math.ceil((passes * step) / meter.bar_q - 1e-6)
    spans = harmonize(top, meter, tonic, parsed.mode, bars, parsed.pickup)
    name = "verse" if family.genre == "folk" else "tune"
    sections = [(name, (parsed.pickup + k * step) * spq, (parsed.pickup + (k + 1) * step) * spq)
                for k in range(passes)]
    sheet = LeadSheet(
        melody=[(s * spq, e * spq, p) for s, e, p in top], bpm=bpm, meter=str(meter),
        key=spell_key(tonic, parsed.mode), mode=parsed.mode,
        chords=[(sp.start * spq, sp.end * spq, sp.chord.root, sp.chord.quality) for sp in spans],
        sections=sections, source_id=piece_id, start=parsed.pickup * spq,
    )
    piece = arrange_sheet(sheet, style, rng, seconds, genre=family.genre, source=f"score:{ref}", piece_id=piece_id,
                          extra=extra)
    piece.labels.extra.pop("melody_of", None)
    piece.labels.extra.pop("octave_shift", None)
    return piece


def _monophonic(notes: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Keep the top note where a line has double stops, and cut overlaps."""
    by_start: dict[float, tuple[float, float, int]] = {}
    for s, e, p in notes:
        if s not in by_start or p > by_start[s][2]:
            by_start[s] = (s, e, p)
    line = sorted(by_start.values())
    return [(s, min(e, line[i + 1][0]) if i + 1 < len(line) else e, p) for i, (s, e, p) in enumerate(line)]


def _chords_from_voices(voices: list[list[tuple[float, float, int]]], meter: Meter, start: float,
                        end: float) -> list[Span]:
    """Name the chord sounding at every beat and merge repeats (passing tones between beats are ignored)."""
    spans: list[Span] = []
    beat = meter.beat_q
    t = start - math.floor(start / beat) * beat if start > 0 else 0.0
    while t < end - 1e-6:
        sounding = [p for voice in voices for s, e, p in voice if s <= t + 1e-6 < e]
        chord = name_chord(sounding)
        if chord is not None:
            spans.append(Span(t, min(t + beat, end), chord))
        elif spans:
            spans[-1] = Span(spans[-1].start, min(t + beat, end), spans[-1].chord)
        t += beat
    return merge_repeats(spans)


def _arrange_voices(voices: list[list[tuple[float, float, int]]], parsed: ParsedScore, family: Family,
                    tonic: int, bpm: float, passes: int, step: float, rng: np.random.Generator, seconds: float,
                    ref: str, piece_id: str, extra: dict) -> Piece:
    """Part-writing scores: each voice to an instrument of an ensemble chosen for the genre."""
    meter = parsed.meter
    qpm = bpm * meter.qpm_per_bpm
    spq = 60.0 / qpm
    ensemble_name = _weighted(_ENSEMBLES_BY_GENRE[family.genre], rng)
    ensemble = VOICE_ENSEMBLES[ensemble_name]
    count = len(voices)
    programs = [ensemble[min(int(round(i * (len(ensemble) - 1) / max(count - 1, 1))), len(ensemble) - 1)]
                for i in range(count)]
    base = float(rng.uniform(58, 92))
    legato = 0.9 if ensemble_name in ("brass choir", "piano") else 0.97
    tracks = []
    for i, (voice, program) in enumerate(zip(voices, programs, strict=True)):
        role = "lead" if i == 0 else ("bass" if i == count - 1 and count > 1 else "counter")
        notes = []
        for s, e, p in voice:
            offset = (s - parsed.pickup) % meter.bar_q
            accent = 6 if abs(offset) < 1e-6 else (2 if meter.strength(offset) >= 2 else 0)
            level = base + (6 if i == 0 else 0) + accent
            notes.append(Note(s, s + (e - s) * legato, p, int(np.clip(level, 1, 127))))
        tracks.append(Track(part=Part(program_name(program), program, False, role), notes=notes,
                            midi_program=program, timing_ms=10.0, velocity_sd=4.0, swing=False))
    midi, instruments = perform(tracks, meter=meter, qpm=qpm, key_number=key_signature_number(tonic, parsed.mode),
                                swing=0.5, swing_unit=1.0, rng=rng, min_end=seconds)
    total = passes * step + parsed.pickup
    bars = int(math.ceil((total - parsed.pickup) / meter.bar_q - 1e-6))
    bar_times = [(parsed.pickup + i * meter.bar_q) * spq for i in range(bars)]
    beat_times = [bar_times[0] + i * meter.beat_q * spq for i in range(bars * meter.beats_per_bar)]
    spans = _chords_from_voices(voices, meter, parsed.pickup, total)
    section_name = "verse" if family.genre == "chorale" else "excerpt"
    sections = [(section_name, (parsed.pickup + k * step) * spq, (parsed.pickup + (k + 1) * step) * spq)
                for k in range(passes)]
    if parsed.pickup > 0:
        sections[0] = (section_name, 0.0, sections[0][2])
    character = describe(midi, bpm, parsed.mode)
    parts = [t.part for t, inst in zip(tracks, instruments, strict=True) if inst is not None]
    lead = instruments[0]
    labels = ClipLabels(
        genre=family.genre, parts=parts, bpm=bpm, key=spell_key(tonic, parsed.mode), mode=parsed.mode,
        meter=str(meter), mood=character.mood, energy=character.energy, dynamics=character.dynamics,
        texture=character.texture, sections=[name for name, _, _ in sections], source=f"score:{ref}",
        extra={**extra, "ensemble": ensemble_name},
    )
    return Piece(
        piece_id=piece_id, midi=midi, labels=labels, beat_times=beat_times, bar_times=bar_times,
        sections=sections, melody=[(n.start, n.end, n.pitch) for n in lead.notes] if lead else [],
        chords=[(s.start * spq, s.end * spq, s.chord.root, s.chord.quality) for s in spans],
    )
