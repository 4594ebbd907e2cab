"""The procedural composer: every style writes valid, deterministic, truthfully labelled pieces."""

from __future__ import annotations

import json

import numpy as np
import pretty_midi
import pytest

from musiclm.data.composer import STYLES, LeadSheet, compose, compose_with_melody, describe, styles_for_meter
from musiclm.data.composer.common import Meter
from musiclm.data.composer.harmonize import harmonize, name_chord
from musiclm.data.composer.theory import (
    CHORD_INTERVALS,
    MODE_INTERVALS,
    PITCH_CLASS,
    Chord,
    parse_roman,
    spell_key,
)
from musiclm.data.piece import DYNAMICS, ENERGY_LEVELS, ROLES, TEXTURES, ClipLabels, Piece

DRUM_TOMS = {41, 43, 45, 47, 48, 50}


def _notes(piece: Piece) -> list[tuple[float, float, int, int, bool]]:
    return [(n.start, n.end, n.pitch, n.velocity, inst.is_drum) for inst in piece.midi.instruments
            for n in inst.notes]


def _sounding_pitch_classes(piece: Piece, start: float, end: float) -> set[int]:
    return {n.pitch % 12 for inst in piece.midi.instruments if not inst.is_drum for n in inst.notes
            if n.start < end and n.end > start}


def check_piece(piece: Piece, seconds: float) -> None:
    """Everything a composed piece promises about itself."""
    labels = piece.labels
    meter = Meter.parse(labels.meter)
    assert piece.seconds >= seconds
    notes = _notes(piece)
    assert notes
    assert all(0 <= p <= 127 and 1 <= v <= 127 and e > s >= 0 for s, e, p, v, _ in notes)
    # tempo and metre live in the MIDI, where beat trackers and pretty_midi find them
    _, tempi = piece.midi.get_tempo_changes()
    assert len(tempi) == 1 and tempi[0] == pytest.approx(labels.bpm * meter.qpm_per_bpm)
    signature = piece.midi.time_signature_changes[0]
    assert f"{signature.numerator}/{signature.denominator}" == labels.meter
    assert piece.midi.key_signature_changes
    # parts and instruments agree
    assert len(labels.parts) == len(piece.midi.instruments)
    for part, instrument in zip(labels.parts, piece.midi.instruments, strict=True):
        assert part.is_drum == instrument.is_drum
        assert part.role in ROLES
        if not part.is_drum:
            assert part.program == instrument.program
    assert any(p.role == "lead" for p in labels.parts)
    # beat and bar grid
    beat = 60.0 / labels.bpm
    beats, bars = np.array(piece.beat_times), np.array(piece.bar_times)
    assert np.allclose(np.diff(beats), beat) and np.allclose(np.diff(bars), beat * meter.beats_per_bar)
    assert np.allclose(bars, beats[:: meter.beats_per_bar][: len(bars)])
    reference = piece.midi.get_beats(start_time=beats[0])
    assert np.allclose(reference[: len(beats)], beats)
    assert bars[-1] + beat * meter.beats_per_bar >= seconds - 1e-6
    # sections tile the bars
    assert piece.sections[0][1] == pytest.approx(bars[0]) or piece.sections[0][1] == 0.0
    for (_, _, end), (_, start, _) in zip(piece.sections[:-1], piece.sections[1:], strict=True):
        assert end == pytest.approx(start)
    assert [s[0] for s in piece.sections] == labels.sections
    # labels in the shared vocabulary
    assert labels.energy in ENERGY_LEVELS and labels.dynamics in DYNAMICS and labels.texture in TEXTURES
    assert labels.mood and labels.key in PITCH_CLASS and labels.mode in MODE_INTERVALS
    assert ClipLabels.from_dict(json.loads(json.dumps(labels.to_dict()))) == labels  # manifest-ready
    # melody annotation is exactly the lead instrument's notes
    lead = next(i for i, p in zip(piece.midi.instruments, labels.parts, strict=True) if p.role == "lead")
    assert piece.melody == [(n.start, n.end, n.pitch) for n in lead.notes]
    # chord annotation: qualities known, spans ordered, roots sounding
    assert piece.chords
    present = 0
    for start, end, root, quality in piece.chords:
        assert quality in CHORD_INTERVALS and 0 <= root < 12 and end > start
        present += root in _sounding_pitch_classes(piece, start + 0.02, end - 0.02)
    assert present / len(piece.chords) >= 0.9


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_composes_a_valid_piece(style: str) -> None:
    piece = compose(style, np.random.default_rng(11), seconds=20.0)
    check_piece(piece, 20.0)
    assert piece.labels.genre == style
    assert piece.labels.source == "composer" and piece.labels.soundfont == ""
    assert piece.piece_id.startswith(f"composer-{style}-")
    tonic = PITCH_CLASS[piece.labels.key]
    assert piece.chords[0][2] == tonic and piece.chords[-1][2] == tonic  # starts and ends on the tonic chord


def test_style_table_is_broad() -> None:
    assert len(STYLES) >= 24
    meters = {m for spec in STYLES.values() for m in spec.meters}
    assert {"4/4", "3/4", "6/8"} <= meters
    modes = {m for spec in STYLES.values() for m in spec.modes}
    assert {"major", "minor", "dorian", "mixolydian", "blues"} <= modes
    assert sum(1 for spec in STYLES.values() if spec.swing[1] > 0.55) >= 3
    assert sum(1 for spec in STYLES.values() if spec.grooves) >= 16


def test_same_seed_same_piece_and_different_seed_different_piece() -> None:
    first = compose("funk", np.random.default_rng(5), seconds=15.0)
    again = compose("funk", np.random.default_rng(5), seconds=15.0)
    other = compose("funk", np.random.default_rng(6), seconds=15.0)
    assert _notes(first) == _notes(again)
    assert first.labels == again.labels and first.piece_id == again.piece_id
    assert first.chords == again.chords and first.melody == again.melody
    assert _notes(first) != _notes(other) and first.piece_id != other.piece_id


def test_all_keys_and_both_modes_are_reachable() -> None:
    keys, modes = set(), set()
    for seed in range(90):
        style = sorted(STYLES)[seed % len(STYLES)]
        labels = compose(style, np.random.default_rng(seed), seconds=8.0).labels
        keys.add(PITCH_CLASS[labels.key])
        modes.add(labels.mode)
    assert keys == set(range(12))
    assert {"major", "minor"} <= modes and len(modes) >= 4


def test_overrides_set_key_mode_and_tempo() -> None:
    piece = compose("rock", np.random.default_rng(2), seconds=20.0, key="F#", mode="dorian", bpm=101)
    check_piece(piece, 20.0)
    assert (piece.labels.key, piece.labels.mode, piece.labels.bpm) == ("F#", "dorian", 101.0)
    scale = {(6 + i) % 12 for i in MODE_INTERVALS["dorian"]}
    lead = [p % 12 for _, _, p in piece.melody]
    assert sum(pc in scale for pc in lead) == len(lead)
    assert lead[-1] == 6  # the tune closes on the tonic
    assert spell_key(PITCH_CLASS["Bb"], "minor") == "Bb" and spell_key(1, "major") == "Db"
    with pytest.raises(ValueError, match="unknown style"):
        compose("polka-dubstep", np.random.default_rng(0))


def test_many_programs_over_a_few_hundred_pieces() -> None:
    programs = set()
    styles = sorted(STYLES)
    for seed in range(300):
        piece = compose(styles[seed % len(styles)], np.random.default_rng(1000 + seed), seconds=4.0)
        programs |= {p.program for p in piece.labels.parts if not p.is_drum}
    assert len(programs) >= 40


def test_compound_metre_beats_are_dotted_quarters() -> None:
    piece = compose("celtic", np.random.default_rng(0), seconds=15.0, bpm=110, meter="6/8")
    check_piece(piece, 15.0)
    assert piece.labels.meter == "6/8"
    _, tempi = piece.midi.get_tempo_changes()
    assert tempi[0] == pytest.approx(165.0)  # 110 dotted quarters = 165 quarters per minute
    assert np.allclose(np.diff(piece.beat_times), 60.0 / 110)
    assert np.allclose(np.diff(piece.bar_times), 2 * 60.0 / 110)


def test_sections_change_density_and_loudness() -> None:
    piece = compose("rock", np.random.default_rng(3), seconds=45.0)
    loudness = {}
    for name, start, end in piece.sections:
        vels = [n.velocity for i in piece.midi.instruments for n in i.notes if start <= n.start < end]
        rate = len(vels) / (end - start)
        loudness.setdefault(name, []).append((np.mean(vels), rate))
    assert {"intro", "verse", "chorus"} <= set(loudness)
    intro_vel, intro_rate = loudness["intro"][0]
    chorus_vel, chorus_rate = loudness["chorus"][0]
    assert chorus_vel > intro_vel + 5 and chorus_rate > intro_rate


def test_drum_fills_lead_into_new_sections() -> None:
    piece = compose("rock", np.random.default_rng(4), seconds=45.0)
    drums = next(i for i in piece.midi.instruments if i.is_drum)
    bar = piece.bar_times[1] - piece.bar_times[0]
    filled = 0
    for (_, _, end), (_, _, _) in zip(piece.sections[:-1], piece.sections[1:], strict=True):
        hits = [n.pitch for n in drums.notes if end - bar / 2 - 0.05 <= n.start < end - 0.02]
        filled += sum(p in DRUM_TOMS or p == 38 for p in hits) >= 3
    assert filled >= 2


def test_swing_is_written_where_idiomatic() -> None:
    piece = compose("jazz_trio", np.random.default_rng(1), seconds=20.0, bpm=120)
    assert piece.labels.extra["swing"] and piece.labels.extra["swing_ratio"] > 0.55
    beat = 60.0 / 120
    drums = next(i for i in piece.midi.instruments if i.is_drum)
    phases = [((n.start - piece.beat_times[0]) / beat) % 1.0 for n in drums.notes]
    offbeats = [p for p in phases if 0.4 < p < 0.8]
    assert offbeats and np.median(offbeats) > 0.58  # the "and" comes late: swung eighths


def test_repeated_sections_repeat_their_melody() -> None:
    piece = compose("rock", np.random.default_rng(7), seconds=45.0, bpm=140)
    verses = [(s, e) for name, s, e in piece.sections if name == "verse"]
    assert len(verses) >= 2
    def line(span):  # notes may be played a few ms early (humanised timing)
        return [(round(s - span[0], 2), p) for s, _, p in piece.melody if span[0] - 0.05 <= s < span[1] - 0.05]

    first, second = line(verses[0]), line(verses[1])
    length = min(len(first), len(second))
    assert length >= 8
    same = sum(a[1] == b[1] and abs(a[0] - b[0]) < 0.06 for a, b in zip(first[:length], second[:length], strict=True))
    assert same / length > 0.9


def test_compose_with_melody_keeps_the_notes_and_changes_the_band() -> None:
    source = compose("rock", np.random.default_rng(8), seconds=20.0)
    arranged = compose_with_melody(source, "bossa_nova", np.random.default_rng(9))
    check_piece(arranged, source.bar_times[-1])
    assert [(round(s, 4), round(e, 4)) for s, e, _ in arranged.melody] == \
        [(round(s, 4), round(e, 4)) for s, e, _ in source.melody]
    shifts = {p - q for (_, _, p), (_, _, q) in zip(arranged.melody, source.melody, strict=True)}
    assert len(shifts) == 1 and next(iter(shifts)) % 12 == 0
    assert arranged.labels.genre == "bossa_nova" and arranged.labels.key == source.labels.key
    assert arranged.labels.extra["melody_of"] == source.piece_id
    assert arranged.piece_id.startswith(source.piece_id + "@bossa_nova")
    longer = compose_with_melody(LeadSheet.from_piece(source), "country", np.random.default_rng(1), seconds=45.0)
    assert longer.seconds >= 45.0 and len(longer.melody) >= 2 * len(source.melody)
    assert "waltz" not in styles_for_meter("4/4")
    with pytest.raises(ValueError, match="does not play"):
        compose_with_melody(source, "waltz", np.random.default_rng(0))


def test_describe_follows_the_music() -> None:
    def midi(velocity: int, step: float, voices: int, seconds: float = 20.0, rise: int = 0) -> pretty_midi.PrettyMIDI:
        out = pretty_midi.PrettyMIDI(initial_tempo=100)
        inst = pretty_midi.Instrument(program=0)
        t = 0.0
        while t < seconds:
            vel = int(np.clip(velocity + rise * t / seconds, 1, 127))
            inst.notes += [pretty_midi.Note(vel, 60 + 4 * k, t, t + step * 0.9) for k in range(voices)]
            t += step
        out.instruments.append(inst)
        return out

    calm = describe(midi(45, 1.0, 1), bpm=62, mode="major")
    wild = describe(midi(115, 0.08, 6), bpm=170, mode="minor")
    assert (calm.energy, calm.dynamics, calm.texture) == ("low", "soft", "sparse")
    assert (wild.energy, wild.dynamics, wild.texture) == ("high", "loud", "dense")
    assert set(calm.mood) & {"peaceful", "relaxed", "calm"}
    assert not set(wild.mood) & {"peaceful", "happy", "cheerful"}
    assert describe(midi(40, 0.25, 3, rise=70), bpm=100, mode="major").dynamics == "crescendo"


def test_theory_and_harmony_helpers() -> None:
    assert parse_roman("bVII", 0) == Chord(10, "maj")
    assert parse_roman("ii7", 2) == Chord(4, "min7")
    assert parse_roman("V7", 9) == Chord(4, "7")
    assert parse_roman("iihd7", 0) == Chord(2, "m7b5")
    assert name_chord([43, 59, 62, 65]) == Chord(7, "7")
    assert name_chord([45, 60, 64]) == Chord(9, "min")
    meter = Meter.parse("4/4")
    tune = [(0, 1, 60), (1, 2, 64), (2, 3, 67), (3, 4, 64), (4, 5, 65), (5, 6, 69), (6, 7, 72), (7, 8, 69),
            (8, 9, 67), (9, 10, 71), (10, 11, 74), (11, 12, 71), (12, 16, 72)]
    spans = harmonize(tune, meter, 0, "major", 4)
    assert [s.chord for s in spans] == [Chord(0, "maj"), Chord(5, "maj"), Chord(7, "maj"), Chord(0, "maj")]
