"""The music21 score arranger: real chorales and tunes become valid, truthfully labelled pieces."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from musiclm.data.composer.common import Meter
from musiclm.data.composer.theory import PITCH_CLASS
from musiclm.data.piece import DYNAMICS, ENERGY_LEVELS, TEXTURES, ClipLabels, Piece
from musiclm.data.scores import FAMILIES, ScoreError, arrange_score, family_of, list_scores, parse_score

music21 = pytest.importorskip("music21")

CHORALE = "bach/bwv66.6.mxl"
FOLK_SONG = "essenFolksong/han1.abc#3"
JIG = "oneills1850/0001-0050.abc#7"


def _analysed_key(ref: str) -> tuple[int, str]:
    path, _, number = ref.partition("#")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = music21.corpus.parse(path, number=int(number)) if number else music21.corpus.parse(path)
    key = score.analyze("key")
    return key.tonic.pitchClass, key.mode


def check_score_piece(piece: Piece, ref: str, seconds: float) -> None:
    labels = piece.labels
    meter = Meter.parse(labels.meter)
    assert piece.seconds >= seconds
    assert labels.source == f"score:{ref}" and labels.soundfont == ""
    assert labels.energy in ENERGY_LEVELS and labels.dynamics in DYNAMICS and labels.texture in TEXTURES
    assert labels.mood and labels.extra["composer"]
    assert ClipLabels.from_dict(json.loads(json.dumps(labels.to_dict()))) == labels  # manifest-ready
    _, tempi = piece.midi.get_tempo_changes()
    assert tempi[0] == pytest.approx(labels.bpm * meter.qpm_per_bpm)
    assert [p.program for p in labels.parts] == [i.program for i in piece.midi.instruments]
    notes = [n for inst in piece.midi.instruments for n in inst.notes]
    assert all(0 <= n.pitch <= 127 and n.end > n.start >= 0 for n in notes)
    beat = 60.0 / labels.bpm
    assert np.allclose(np.diff(piece.beat_times), beat)
    assert np.allclose(np.diff(piece.bar_times), beat * meter.beats_per_bar)
    assert piece.melody and piece.chords
    lead = next(i for i, p in zip(piece.midi.instruments, labels.parts, strict=True) if p.role == "lead")
    assert piece.melody == [(n.start, n.end, n.pitch) for n in lead.notes]
    present = 0
    for start, end, root, _ in piece.chords:
        sounding = {n.pitch % 12 for i in piece.midi.instruments if not i.is_drum for n in i.notes
                    if n.start < end - 0.02 and n.end > start + 0.02}
        present += root in sounding
    assert present / len(piece.chords) >= 0.9


def test_list_scores_covers_the_promised_families() -> None:
    refs = list_scores()
    assert len(refs) > 10_000
    assert CHORALE in refs and JIG in refs and FOLK_SONG in refs
    assert {family_of(r).name for r in refs} == set(FAMILIES)
    assert any(r.startswith("palestrina/") for r in refs) and any(r.startswith("ryansMammoth/") for r in refs)
    limited = list_scores(["bach", "essen"], limit=5)
    assert len(limited) == 10 and limited == list_scores(["bach", "essen"], limit=5)
    with pytest.raises(ValueError, match="unknown score families"):
        list_scores(["not-a-family"])


def test_bach_chorale_arranges_for_four_voices() -> None:
    piece = arrange_score(CHORALE, np.random.default_rng(0), seconds=30.0)
    check_score_piece(piece, CHORALE, 30.0)
    labels = piece.labels
    assert labels.genre == "chorale" and labels.meter == "4/4"
    assert len(labels.parts) == 4 and labels.parts[0].role == "lead" and labels.parts[-1].role == "bass"
    assert "Bach" in labels.extra["composer"]
    tonic, mode = _analysed_key(CHORALE)
    assert labels.mode == mode
    assert PITCH_CLASS[labels.key] == (tonic + labels.extra["transposed"]) % 12
    assert 50 <= labels.bpm <= 95
    assert piece.piece_id == arrange_score(CHORALE, np.random.default_rng(1), seconds=30.0).piece_id


def test_folk_song_is_harmonised_and_accompanied() -> None:
    piece = arrange_score(FOLK_SONG, np.random.default_rng(3), seconds=25.0)
    check_score_piece(piece, FOLK_SONG, 25.0)
    labels = piece.labels
    assert labels.genre == "folk" and labels.meter == "2/4"
    tonic, mode = _analysed_key(FOLK_SONG)
    assert labels.mode == mode and PITCH_CLASS[labels.key] == (tonic + labels.extra["transposed"]) % 12
    assert len(labels.parts) >= 2 and labels.extra["arrangement"] in ("folk", "celtic", "country")
    assert set(labels.sections) == {"verse"} and len(labels.sections) >= 2  # short songs repeat


def test_jig_keeps_its_compound_metre() -> None:
    piece = arrange_score(JIG, np.random.default_rng(5), seconds=20.0)
    check_score_piece(piece, JIG, 20.0)
    assert piece.labels.genre == "fiddle_tune" and piece.labels.meter == "6/8"
    assert 60 <= piece.labels.bpm <= 140
    assert piece.bar_times[0] == pytest.approx(0.5 * 60.0 / (piece.labels.bpm * 1.5))  # an eighth-note pickup


def test_unusable_scores_raise_a_clear_error() -> None:
    with pytest.raises(ScoreError):
        family_of("beethoven/opus132.mxl")
    with pytest.raises(ScoreError, match="could not parse"):
        parse_score("essenFolksong/han1.abc#999999")
    with pytest.raises(ScoreError, match=r"metre changes|irregular"):
        arrange_score("oneills1850/0001-0050.abc#1", np.random.default_rng(0))
