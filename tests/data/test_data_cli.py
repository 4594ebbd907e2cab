from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.cli import main
from musiclm.data.manifest import ClipRecord, read_manifest, write_manifest

CSV = Path(__file__).resolve().parents[2].parent / "shared/data/musiccaps-public.csv"


def one_json(capsys) -> dict:
    """The command's stdout, which must be exactly one JSON document."""
    return json.loads(capsys.readouterr().out)


def tone(seconds: float, sr: int = 24_000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 330 * np.arange(round(seconds * sr)) / sr)).astype(np.float32)


def test_ingest_then_stats_json(tmp_path: Path, capsys):
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(6.0), 24_000)
    sf.write(folder / "b.flac", tone(4.0, 48_000), 48_000)
    (folder / "b.txt").write_text("A steady tone.")
    (folder / "broken.ogg").write_bytes(b"OggS" + b"\0" * 200)
    out = tmp_path / "corpus"
    assert main(["data", "ingest", str(folder), "--out", str(out), "--seconds", "2", "--no-progress",
                 "--json"]) == 0
    result = one_json(capsys)
    assert result["recordings"] == 2 and result["clips"] == 5 and result["skipped_recordings"] == 1
    assert result["skipped"][0]["path"] == "broken.ogg"
    assert len(read_manifest(out)) == 5

    png = tmp_path / "stats.png"
    assert main(["data", "stats", str(out), "--plot", str(png), "--json"]) == 0
    stats = one_json(capsys)
    assert stats["clips"] == 5 and stats["sources"] == {"ingest": 5} and stats["captioned_clips"] == 2
    assert stats["plot"] == str(png) and png.stat().st_size > 10_000

    assert main(["data", "stats", str(out)]) == 0  # human-readable form
    text = capsys.readouterr().out
    assert "clips        5" in text and "ingest" in text


def test_stats_human_output_of_a_labelled_corpus(tmp_path: Path, capsys):
    labels = {"genre": "rock", "parts": [{"name": "electric guitar", "program": 29, "is_drum": False,
                                          "role": "lead"}], "bpm": 120.0, "key": "E", "mode": "minor"}
    write_manifest(tmp_path, [ClipRecord("a", "a.flac", 10.0, 24_000, "train", "composer", "p", "A riff.", [],
                                         labels)])
    assert main(["data", "stats", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "rock 1" in text and "E minor 1" in text and "electric guitar 1" in text


@pytest.mark.skipif(not CSV.exists(), reason="the shared MusicCaps CSV is not here")
def test_musiccaps_cli(tmp_path: Path, capsys):
    assert main(["data", "musiccaps", str(CSV), "--out", str(tmp_path), "--captions-only", "--balanced",
                 "--json"]) == 0
    result = one_json(capsys)
    assert result["rows"] == 1000 and Path(result["prompts"]) == tmp_path / "prompts.jsonl"
    assert len((tmp_path / "prompts.jsonl").read_text().splitlines()) == 1000

    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "-0Gj8-vB1q4.wav", tone(10.0), 24_000)
    assert main(["data", "musiccaps", str(CSV), str(clips), "--out", str(tmp_path / "mc"), "--no-progress",
                 "--json"]) == 0
    result = one_json(capsys)
    assert result["clips"] == 1 and result["missing_audio"] == 5520 and result["splits"] == {"test": 1}

    assert main(["data", "musiccaps", str(CSV), "--out", str(tmp_path / "x")]) == 1
    assert "AUDIO_DIR is needed" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["data", "ingest", "{tmp}/nope", "--out", "{tmp}/c"], "not a folder"),
    (["data", "ingest", "{tmp}", "--out", "{tmp}/c", "--seconds", "0.5"], "--seconds must be between 1 and"),
    (["data", "ingest", "{tmp}", "--out", "{tmp}/c", "--workers", "0"], "--workers must be at least 1"),
    (["data", "synth", "--out", "{tmp}/c", "--clips", "0"], "--clips must be at least 1"),
    (["data", "synth", "--out", "{tmp}/c", "--clips", "5", "--seconds", "61"], "between 1 and 60"),
    (["data", "synth", "--out", "{tmp}/c", "--clips", "5", "--workers", "0"], "--workers must be at least 1"),
    (["data", "synth", "--out", "{tmp}/c", "--clips", "5", "--rank", "2", "--world-size", "2"],
     "0 <= --rank < --world-size"),
    (["data", "stats", "{tmp}"], "no manifest.jsonl"),
    (["data", "musiccaps", "{tmp}/missing.csv", "--out", "{tmp}/c", "--captions-only"], "no such file"),
])
def test_errors_are_one_line_with_exit_1(tmp_path: Path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("musiclm: error: ") and message in lines[0]


def test_data_needs_an_action(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2
    assert "required: ACTION" in capsys.readouterr().err
