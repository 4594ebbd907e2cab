"""Melody training pairs: versions share the notes and differ in timbre; hard negatives; plans; resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musiclm.data.composer import LeadSheet, compose
from musiclm.data.manifest import read_manifest
from musiclm.melody.pairs import (
    HUM_LIKE_PROGRAMS,
    PairError,
    TimeMap,
    VersionSpec,
    arranged_piece,
    bare_piece,
    build_pairs,
    choose_window,
    crop_sheet,
    hard_negative,
    plan_jobs,
    plan_version,
    read_pairs,
    warp_piece,
)

SR = 24_000
FONTS = ["FluidR3_GM", "MuseScore_General", "TimGM6mb"]


@pytest.fixture(scope="module")
def sheet() -> LeadSheet:
    piece = compose("folk", np.random.default_rng(3), seconds=24.0)
    start = choose_window(piece, 6.0, np.random.default_rng(0))
    return crop_sheet(LeadSheet.from_piece(piece), start, 6.0, "tune")


def spec(kind: str = "bare", program: int | None = 53, style: str | None = None, **changes) -> VersionSpec:
    base = VersionSpec(kind=kind, program=program, style=style, keep_chords=True, soundfont="FluidR3_GM",
                       time_map=TimeMap(seconds=6.0), wet=False, vibrato_cents=0.0, vibrato_hz=5.0,
                       intonation_cents=0.0, articulation=1.0, octave_bias=0)
    return VersionSpec(**{**base.__dict__, **changes})


def pitch_classes(notes) -> list[int]:
    return [p % 12 for _, _, p in notes]


# ------------------------------------------------------------------------------------------ building blocks
def test_time_map_inverts():
    tm = TimeMap(scale=1.02, drift=-0.015, speed=2 ** (25 / 1200), seconds=8.0)
    s = np.linspace(0, 8, 17)
    assert np.allclose(tm.melody_time(tm.clip_time(s)), s, atol=1e-9)
    assert TimeMap.from_dict(tm.to_dict()).clip_time(3.0) == pytest.approx(float(tm.clip_time(3.0)), abs=1e-5)
    assert float(TimeMap().clip_time(2.5)) == 2.5


def test_a_window_of_the_busiest_bars_starts_at_zero(sheet):
    assert sheet.start == 0.0 and sheet.sections == [("verse", 0.0, 6.0)]
    assert len(sheet.melody) >= 5 and all(0.0 <= s < 6.0 and e <= 6.0 for s, e, _ in sheet.melody)
    assert len({p for _, _, p in sheet.melody}) >= 3


def test_hard_negative_keeps_rhythm_and_key_but_changes_the_notes(sheet):
    from musiclm.data.composer.theory import PITCH_CLASS, scale_pitch_classes

    twin = hard_negative(sheet, np.random.default_rng(0), "twin")
    assert [(s, e) for s, e, _ in twin.melody] == [(s, e) for s, e, _ in sheet.melody]
    assert (twin.key, twin.mode, twin.chords, twin.bpm) == (sheet.key, sheet.mode, sheet.chords, sheet.bpm)
    changed = np.mean([a != b for a, b in zip(pitch_classes(twin.melody), pitch_classes(sheet.melody), strict=True)])
    assert changed >= 0.6
    scale = set(scale_pitch_classes(PITCH_CLASS[sheet.key], sheet.mode))
    assert set(pitch_classes(twin.melody)) <= scale
    low, high = min(p for *_, p in sheet.melody), max(p for *_, p in sheet.melody)
    assert all(low - 2 <= p <= high + 2 for *_, p in twin.melody)
    assert twin.melody == hard_negative(sheet, np.random.default_rng(0), "twin").melody


def test_version_plans_are_deterministic_and_start_with_a_hummed_one():
    plans = [plan_version(k, np.random.default_rng([0, 5, k]), "4/4", FONTS, [2, 0, 1]) for k in range(4)]
    assert plans == [plan_version(k, np.random.default_rng([0, 5, k]), "4/4", FONTS, [2, 0, 1]) for k in range(4)]
    assert plans[0].kind == "bare" and plans[0].program in HUM_LIKE_PROGRAMS
    assert plans[1].kind == "arranged" and plans[1].style is not None
    assert [p.soundfont for p in plans[:3]] == ["TimGM6mb", "FluidR3_GM", "MuseScore_General"]
    for p in plans:
        assert abs(1200 * np.log2(p.time_map.speed)) <= 35.0 and 0.97 < p.time_map.scale < 1.03


def test_bare_version_moves_the_tune_by_octaves_into_the_instrument_range(sheet):
    from musiclm.data.composer.instruments import program_range

    for program in (53, 78, 0):
        piece = bare_piece(sheet, spec(program=program, vibrato_cents=20.0), np.random.default_rng(1), "x")
        assert [i.program for i in piece.midi.instruments] == [program]
        notes = piece.midi.instruments[0].notes
        shifts = {n.pitch - p for n, (_, _, p) in zip(notes, sheet.melody, strict=True)}
        assert len(shifts) == 1 and shifts.pop() % 12 == 0
        low, high = program_range(program)
        assert low - 5 <= min(n.pitch for n in notes) and max(n.pitch for n in notes) <= high + 5
        assert piece.midi.instruments[0].pitch_bends  # vibrato
        onsets = np.array([n.start for n in notes]) - np.array([s for s, _, _ in sheet.melody])
        assert np.abs(onsets).max() <= 0.031


def test_arranged_version_keeps_the_notes_and_adds_a_band(sheet):
    piece = arranged_piece(sheet, spec(kind="arranged", program=None, style="rock"), np.random.default_rng(2))
    assert len(piece.midi.instruments) >= 3
    assert len(piece.melody) == len(sheet.melody)
    shifts = {p - q for (_, _, p), (_, _, q) in zip(piece.melody, sheet.melody, strict=True)}
    assert len(shifts) == 1 and shifts.pop() % 12 == 0
    hummed = arranged_piece(sheet, spec(kind="arranged", program=52, style="rock"), np.random.default_rng(2))
    lead = next(i for i, p in enumerate(hummed.labels.parts) if p.role == "lead")
    assert hummed.midi.instruments[lead].program == 52 and hummed.labels.parts[lead].program == 52


def test_warping_moves_every_event(sheet):
    piece = bare_piece(sheet, spec(vibrato_cents=10.0), np.random.default_rng(1), "x")
    before = [n.start for n in piece.midi.instruments[0].notes]
    bends = [b.time for b in piece.midi.instruments[0].pitch_bends]
    tm = TimeMap(scale=1.03, drift=0.02, seconds=6.0)
    warp_piece(piece, tm)
    assert np.allclose([n.start for n in piece.midi.instruments[0].notes], tm.clip_time(np.array(before)))
    assert np.allclose([b.time for b in piece.midi.instruments[0].pitch_bends], tm.clip_time(np.array(bends)))
    assert np.allclose([s for s, _, _ in piece.melody], tm.clip_time(np.array(before)))


def test_plan_jobs_deal_groups_to_ranks_with_stable_twins():
    everyone = plan_jobs(20, 3, 8.0, seed=1, hard_fraction=0.5)
    split = plan_jobs(20, 3, 8.0, seed=1, hard_fraction=0.5, rank=1, world_size=2)
    assert [j.index for j in split] == list(range(1, 20, 2))
    assert all(j.twin == everyone[j.index].twin for j in split)
    assert 3 <= sum(j.twin for j in everyone) <= 17
    twin = next(j for j in everyone if j.twin)
    assert len(twin.clip_ids) == 6 and twin.melody_ids[1].endswith("-b")


# -------------------------------------------------------------------------------------------- the pair set
@pytest.fixture(scope="module")
def pair_set(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("fluidsynth")
    out = tmp_path_factory.mktemp("melody_pairs")
    summary = build_pairs(out, 1, versions=3, seconds=4.0, seed=5, hard_fraction=1.0, score_fraction=0.0,
                          progress=False)
    return out, summary


def test_pair_set_has_every_version_of_every_melody(pair_set):
    out, summary = pair_set
    assert summary["clips_in_manifest"] == 6 and summary["clips_rejected_now"] == 0
    assert summary["melodies_with_pairs"] == 2 and summary["hard_negatives"] == 1
    records = read_manifest(out)
    assert {r.labels["melody_id"] for r in records} == {"g5-000000-a", "g5-000000-b"}
    for record in records:
        assert (out / record.path).exists() and record.sample_rate == SR and record.seconds == 4.0
        assert record.split in ("train", "valid", "test") and record.piece_id == record.labels["group_id"]


def test_versions_share_the_notes_and_differ_in_timbre(pair_set):
    import soundfile as sf

    out, _ = pair_set
    pairs = read_pairs(out)
    for indices in pairs.melodies.values():
        clips = [pairs.clips[i] for i in indices]
        notes = [json.loads((out / c.path.relative_to(out).with_suffix(".json")).read_text()) for c in clips]
        source = notes[0]["source_melody"]
        assert all(n["source_melody"] == source for n in notes)
        for clip, sidecar in zip(clips, notes, strict=True):
            performed = sidecar["melody"]
            count = min(len(performed), len(source))
            assert count >= len(source) - 1  # the last note may be pushed past the clip end by the drift
            onsets = clip.time_map.melody_time(np.array([s for s, _, _ in performed[:count]]))
            assert np.abs(onsets - np.array([s for s, _, _ in source[:count]])).max() < 0.04
            assert pitch_classes(performed[:count]) == pitch_classes(source[:count])
        records = {r.id: r for r in read_manifest(out)}
        labels = [records[c.id].labels for c in clips]
        assert {lab["kind"] for lab in labels} >= {"bare", "arranged"}
        assert labels[0]["lead_program"] in HUM_LIKE_PROGRAMS
        assert len({(lab["kind"], lab["lead_program"], lab["soundfont"], tuple(lab["band"])) for lab in labels}) == 3
        wavs = [sf.read(str(c.path), dtype="float32")[0] for c in clips]
        spectra = [np.abs(np.fft.rfft(w))[: 4 * 5000] for w in wavs]  # up to 5 kHz
        corr = np.corrcoef(spectra)[np.triu_indices(3, 1)]
        assert corr.max() < 0.95  # different timbres, not copies


def test_hard_negative_versions_match_the_original_versions_except_for_the_notes(pair_set):
    out, _ = pair_set
    records = read_manifest(out)
    by_id = {r.id: r.labels for r in records}
    for record in records:
        labels = record.labels
        if not labels["hard_negative"]:
            continue
        original = by_id[record.id.replace("-b-v", "-a-v")]
        assert labels["twin"] == original["melody_id"] and original["twin"] == labels["melody_id"]
        for key in ("kind", "style", "soundfont", "time_map", "key", "mode", "band", "wet"):
            assert labels[key] == original[key], key
        mine = json.loads((out / record.annotations).read_text())["source_melody"]
        theirs = json.loads((out / record.annotations.replace("-b-v", "-a-v")).read_text())["source_melody"]
        assert [n[:2] for n in mine] == [n[:2] for n in theirs]
        assert np.mean([a[2] % 12 != b[2] % 12 for a, b in zip(mine, theirs, strict=True)]) >= 0.6
    pairs = read_pairs(out)
    assert len(pairs.twins) == 2 and all(pairs.twins[pairs.twins[m]] == m for m in pairs.twins)


def test_rerunning_resumes_and_other_settings_are_refused(pair_set):
    out, _ = pair_set
    again = build_pairs(out, 1, versions=3, seconds=4.0, seed=5, hard_fraction=1.0, score_fraction=0.0,
                        progress=False)
    assert again["clips_written_now"] == 0 and again["clips_in_manifest"] == 6
    with pytest.raises(PairError, match=r"other settings.*versions"):
        build_pairs(out, 1, versions=4, seconds=4.0, seed=5, hard_fraction=1.0, score_fraction=0.0, progress=False)


@pytest.mark.parametrize(("kwargs", "message"), [({"melodies": 0}, "melodies"), ({"versions": 1}, "versions"),
                                                 ({"seconds": 2.0}, "seconds"), ({"hard_fraction": 2.0}, "fraction")])
def test_bad_pair_settings_are_refused(tmp_path, kwargs, message):
    args = {"melodies": 2, "versions": 3, "seconds": 8.0, "hard_fraction": 0.3} | kwargs
    with pytest.raises(PairError, match=message):
        build_pairs(tmp_path, args.pop("melodies"), progress=False, **args)


def test_reading_a_folder_that_is_not_a_pair_set_fails_clearly(tmp_path):
    with pytest.raises(PairError, match="musiclm melody pairs"):
        read_pairs(tmp_path)
