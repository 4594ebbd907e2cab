from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.data.ingest import (
    STATE_FILE,
    CutOptions,
    IngestError,
    active_fraction,
    clip_spans,
    clip_stem,
    ingest,
)
from musiclm.data.manifest import PARTS_DIR, check_split_leakage, read_manifest, split_for


def tone(seconds: float, sr: int = 24_000, freq: float = 330.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def music_folder(tmp_path: Path) -> Path:
    """Recordings of known lengths, sidecars, and bad files (clips of 2 s are cut from them)."""
    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    (root / "other").mkdir()
    # 5.4 s stereo at 44.1 kHz -> clips 2 + 2 + 1.4 (tail kept: >= half a clip)
    stereo = np.stack([tone(5.4, 44_100), tone(5.4, 44_100, 220)], axis=1)
    sf.write(root / "album" / "song.wav", stereo, 44_100)
    (root / "album" / "song.json").write_text(json.dumps({
        "caption": "A calm sine duet.", "aspects": ["sine", "calm"], "labels": {"genre": "test"}, "bpm": 90,
    }))
    # 4.6 s -> clips 2 + 2 (0.6 s tail dropped); caption from a .txt sidecar
    sf.write(root / "other" / "piece.flac", tone(4.6), 24_000)
    (root / "other" / "piece.txt").write_text("  A lone tone.\n")
    # tone / silence / tone, 2 s each -> the silent middle clip is dropped
    sf.write(root / "gap.wav", np.concatenate([tone(2), np.zeros(48_000, np.float32), tone(2)]), 24_000)
    # folder-level metadata.csv and captions.jsonl
    sf.write(root / "other" / "csvsong.wav", tone(2.0, 16_000), 16_000)
    (root / "other" / "metadata.csv").write_text(
        "file,caption,aspects,genre,bpm,instruments\n"
        "csvsong.wav,From the CSV.,slow; quiet,ambient,72,sine;pad\n"
        "piece.flac,Overridden by the txt sidecar.,,,,\n")
    entry = {"path": "gap.wav", "caption": "Two tones.", "mood": "odd"}
    (root / "captions.jsonl").write_text(json.dumps(entry) + "\n")
    # bad files
    (root / "corrupt.mp3").write_bytes(b"this is not an mp3 file at all" * 50)
    sf.write(root / "silent.wav", np.zeros(72_000, np.float32), 24_000)
    sf.write(root / "tiny.wav", tone(0.3), 24_000)
    click = np.zeros(96_000, np.float32)
    click[30_000:31_200] = tone(0.05)  # 50 ms of sound in 4 s: every clip is near-silent
    sf.write(root / "click.wav", click, 24_000)
    sf.write(root / "badside.wav", tone(2.0), 24_000)
    (root / "badside.json").write_text("{not json")
    (root / "notes.txt").write_text("not audio")
    (root / ".hidden.wav").write_bytes(b"")
    return root


def run(folder: Path, out: Path, **kwargs) -> dict:
    return ingest(folder, out, seconds=2.0, progress=False, **kwargs)


def test_clip_spans_and_activity():
    assert clip_spans(10, 4, 0.5) == [(0, 4), (4, 8), (8, 10)]
    assert clip_spans(9, 4, 0.5) == [(0, 4), (4, 8)]
    assert clip_spans(3, 4, 0.5) == [(0, 3)]
    assert clip_spans(1, 4, 0.5) == []
    signal = np.concatenate([tone(1.0), np.zeros(24_000, np.float32)])
    assert active_fraction(signal, 24_000, -60.0) == pytest.approx(0.5)
    assert active_fraction(np.zeros(100, np.float32), 24_000, -60.0) == 0.0
    stem = clip_stem("My Music/Ä track (live).ogg")
    assert "/" not in stem and " " not in stem and stem != clip_stem("My Music/other.ogg")


def test_ingest_cuts_clips_with_sidecars_and_skips_bad_files(music_folder: Path, tmp_path: Path):
    out = tmp_path / "corpus"
    result = run(music_folder, out, seed=3)
    records = read_manifest(out)
    by_piece: dict[str, list] = {}
    for record in records:
        by_piece.setdefault(record.piece_id, []).append(record)

    assert result["files_found"] == 9  # 4 good + 5 bad (not notes.txt or .hidden.wav)
    assert sorted(by_piece) == ["music/album/song.wav", "music/gap.wav", "music/other/csvsong.wav",
                                "music/other/piece.flac"]
    def in_order(piece_id: str) -> list:
        return sorted(by_piece[piece_id], key=lambda r: r.offset)

    assert [r.seconds for r in in_order("music/album/song.wav")] == [2.0, 2.0, 1.4]
    assert [r.offset for r in in_order("music/other/piece.flac")] == [0.0, 2.0]
    assert sorted(r.offset for r in by_piece["music/gap.wav"]) == [0.0, 4.0]
    assert result["dropped_clips"] == {"near-silent clip": 1}  # the gap (click.wav's are in skipped)
    assert result["recordings"] == 4 and result["clips"] == len(records) == 3 + 2 + 2 + 1
    assert result["hours"] == pytest.approx(sum(r.seconds for r in records) / 3600, abs=1e-4)

    for record in records:
        info = sf.info(out / record.path)
        assert info.samplerate == 24_000 and info.channels == 1 and info.format == "FLAC"
        assert info.frames == round(record.seconds * 24_000)
        assert record.source == f"ingest:{record.piece_id}" and record.sample_rate == 24_000
        assert record.split == split_for(record.piece_id, 3)
    assert check_split_leakage(records) == {}

    song = by_piece["music/album/song.wav"][0]
    assert song.caption == "A calm sine duet." and song.aspects == ["sine", "calm"]
    assert song.labels == {"genre": "test", "bpm": 90}
    assert {r.caption for r in by_piece["music/other/piece.flac"]} == {"A lone tone."}
    csv_song = by_piece["music/other/csvsong.wav"][0]
    assert csv_song.caption == "From the CSV." and csv_song.aspects == ["slow", "quiet"]
    assert csv_song.labels == {"genre": "ambient", "bpm": 72, "instruments": ["sine", "pad"]}
    assert by_piece["music/gap.wav"][0].caption == "Two tones."
    assert by_piece["music/gap.wav"][0].labels == {"mood": "odd"}

    reasons = {s["path"]: s["reason"] for s in result["skipped"]}
    assert set(reasons) == {"corrupt.mp3", "silent.wav", "tiny.wav", "badside.wav", "click.wav"}
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["tiny.wav"]
    assert "corrupt" in reasons["corrupt.mp3"] and "bad sidecar" in reasons["badside.wav"]
    assert "silence check" in reasons["click.wav"]
    assert result["skipped_reasons"] == {"bad sidecar": 1, "corrupt": 1, "silent": 1, "too short": 1,
                                         "near-silent": 1}
    assert [s["path"] for s in result["skipped"]] == sorted(reasons)
    assert json.loads((out / "ingest.report.json").read_text())["clips"] == result["clips"]


def test_resume_does_not_duplicate_and_redoes_unfinished_recordings(music_folder: Path, tmp_path: Path):
    out = tmp_path / "corpus"
    first = run(music_folder, out)
    part = out / PARTS_DIR / "ingest.jsonl"
    lines = part.read_text().count("\n")

    again = run(music_folder, out)
    assert again["new_clips"] == 0 and again["resumed_recordings"] == 4
    assert again["clips"] == first["clips"] and part.read_text().count("\n") == lines

    # Simulate a kill after some of a recording's clips were recorded but before it was marked finished.
    state = [json.loads(line) for line in (out / STATE_FILE).read_text().splitlines()]
    (out / STATE_FILE).write_text("".join(json.dumps(s) + "\n" for s in state
                                          if s["piece_id"] != "music/album/song.wav"))
    victim = next(r for r in read_manifest(out) if r.piece_id == "music/album/song.wav")
    (out / victim.path).unlink()
    third = run(music_folder, out)
    assert third["new_recordings"] == 1 and third["new_clips"] == 3 and third["resumed_recordings"] == 3
    records = read_manifest(out)
    assert len(records) == first["clips"] and len({r.id for r in records}) == len(records)
    assert all((out / r.path).exists() for r in records)

    with pytest.raises(IngestError, match=r"--seconds 2\.0"):
        ingest(music_folder, out, seconds=3.0, progress=False)


def test_workers_give_the_same_corpus(music_folder: Path, tmp_path: Path):
    serial = run(music_folder, tmp_path / "a")
    parallel = run(music_folder, tmp_path / "b", workers=2)
    assert serial["clips"] == parallel["clips"]
    a = {r.id: (r.split, r.seconds, r.caption) for r in read_manifest(tmp_path / "a")}
    b = {r.id: (r.split, r.seconds, r.caption) for r in read_manifest(tmp_path / "b")}
    assert a == b


def test_ingest_name_exclude_and_existing_corpus(music_folder: Path, tmp_path: Path):
    out = tmp_path / "corpus"
    result = run(music_folder, out, name="mine", exclude=["album/*", "*.mp3"])
    pieces = Counter(r.piece_id for r in read_manifest(out))
    assert set(pieces) == {"mine/gap.wav", "mine/other/csvsong.wav", "mine/other/piece.flac"}
    assert "corrupt.mp3" not in {s["path"] for s in result["skipped"]}
    # a second folder lands in the same corpus beside the first one
    second = tmp_path / "second"
    second.mkdir()
    sf.write(second / "x.wav", tone(4.0), 24_000)
    more = run(second, out)
    assert more["recordings"] == 1 and more["clips"] == 2 and more["corpus_clips"] == sum(pieces.values()) + 2


def test_ingest_argument_errors(tmp_path: Path):
    with pytest.raises(IngestError, match="not a folder"):
        ingest(tmp_path / "nope", tmp_path / "out", progress=False)
    with pytest.raises(IngestError, match="between 1 and 60"):
        ingest(tmp_path, tmp_path / "out", seconds=0.5, progress=False)
    with pytest.raises(IngestError, match="workers"):
        ingest(tmp_path, tmp_path / "out", workers=0, progress=False)
    with pytest.raises(IngestError, match="normalize"):
        ingest(tmp_path, tmp_path / "out", options=CutOptions(normalize="loud"), progress=False)


def test_corpus_inside_the_folder_is_not_ingested(tmp_path: Path):
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(4.0), 24_000)
    first = run(folder, folder / "corpus")
    second = run(folder, folder / "corpus")
    assert first["files_found"] == second["files_found"] == 1 and second["clips"] == 2
