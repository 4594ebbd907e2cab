from __future__ import annotations

import importlib
import time
from pathlib import Path

import pytest

from musiclm.data.manifest import ClipRecord, ManifestError, write_manifest
from musiclm.data.stats import (
    clip_instruments,
    clip_programs,
    corpus_stats,
    plot_stats,
    source_collection,
    source_kind,
)


def _captions_module():
    """musiclm.data.captions (written by another engineer): wait a little for it if it is not there yet."""
    for _ in range(30):
        try:
            return importlib.import_module("musiclm.data.captions")
        except ModuleNotFoundError as exc:
            if exc.name != "musiclm.data.captions":
                raise
            time.sleep(10)
    pytest.fail("musiclm.data.captions never appeared")


def part(name: str, program: int, is_drum: bool = False, role: str = "lead") -> dict:
    return {"name": name, "program": program, "is_drum": is_drum, "role": role}


def synth_labels(genre: str, parts: list[dict], bpm: float, key: str, mode: str) -> dict:
    return {"genre": genre, "parts": parts, "bpm": bpm, "key": key, "mode": mode, "meter": "4/4",
            "mood": ["happy"], "energy": "medium", "dynamics": "moderate", "texture": "moderate",
            "source": "composer", "soundfont": "FluidR3_GM",
            "instruments": [p["name"] for p in parts],
            "programs": sorted({p["program"] for p in parts if not p["is_drum"]}),
            "has_drums": any(p["is_drum"] for p in parts)}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    records = [
        ClipRecord("a", "audio/a.flac", 10.0, 24_000, "train", "composer", "p1", "A bright rock song.", [],
                   synth_labels("rock", [part("electric guitar", 29), part("drum kit", 0, True, "drums"),
                                         part("electric bass", 33, role="bass")], 128.0, "E", "minor")),
        ClipRecord("b", "audio/b.flac", 10.0, 24_000, "valid", "composer", "p2",
                   "A slow jazz piano trio.", [],
                   synth_labels("jazz", [part("acoustic piano", 0), part("acoustic piano", 0, role="chords"),
                                         part("acoustic bass", 32, role="bass")], 95.0, "Bb", "major")),
        ClipRecord("c", "audio/c.flac", 10.0, 24_000, "train", "score:bach/bwv66.6", "p3",
                   "A four-part chorale for strings.", ["chorale"],
                   synth_labels("chorale", [part("violin", 40), part("viola", 41), part("cello", 42)],
                                70.0, "F#", "minor")),
        ClipRecord("d", "audio/d.flac", 7.0, 24_000, "test", "ingest:music/x.ogg", "music/x.ogg"),
        ClipRecord("e", "audio/e.flac", 9.0, 24_000, "train", "ingest:music/y.ogg", "music/y.ogg",
                   "A tune from a game.", ["game", "Chiptune"],
                   {"instruments": ["synth lead"], "bpm": "140"}),
    ]
    write_manifest(tmp_path, records)
    return tmp_path


def test_label_helpers():
    assert source_kind("score:bach/x") == "score" and source_kind("composer") == "composer"
    assert source_collection("ingest:0ad/a/b.ogg") == "ingest:0ad"
    assert source_collection("musiccaps") == "musiccaps"
    assert clip_instruments({"parts": [part("violin", 40)], "instruments": ["ignored"]}) == ["violin"]
    assert clip_instruments({"instruments": ["flute", "harp"]}) == ["flute", "harp"]
    assert clip_instruments({}) == [] and clip_programs({}) is None
    assert clip_programs({"parts": [part("kit", 0, True), part("piano", 0), part("x", 5)]}) == [0, 5]
    assert clip_programs({"programs": [3, 3, 1]}) == [1, 3]


def test_corpus_stats_counts_and_histograms(corpus: Path):
    stats = corpus_stats(corpus)
    assert stats["clips"] == 5 and stats["hours"] == pytest.approx(46.0 / 3600, abs=1e-4)
    assert stats["splits"] == {"test": 1, "train": 3, "valid": 1}
    assert stats["sources"] == {"composer": 2, "ingest": 2, "score": 1}
    assert stats["collections"] == {"composer": 2, "ingest:music": 2, "score:bach": 1}
    assert stats["hours_by_source"]["ingest"] == pytest.approx(16.0 / 3600, abs=1e-4)
    assert stats["clip_seconds"] == {"min": 7.0, "mean": 9.2, "max": 10.0}
    assert stats["captioned_clips"] == 4 and stats["labelled_clips"] == 4 and stats["clips_with_drums"] == 1
    assert stats["genre"] == {"chorale": 1, "jazz": 1, "rock": 1}
    # instruments count clips (piano twice in one clip counts once); the label-less clip is ignored
    assert stats["instruments"]["acoustic piano"] == 1 and stats["instruments"]["synth lead"] == 1
    assert stats["distinct_instruments"] == 9
    assert stats["distinct_programs"] == 7  # 29, 33, 0, 32, 40, 41, 42 (the drum kit is not a program)
    assert "000 Acoustic Grand Piano" in stats["programs"]
    assert stats["programs_per_clip"] == {"2": 2, "3": 1}
    assert list(stats["tempo_bpm"]) == ["70-79", "90-99", "120-129", "140-149"]
    assert stats["key_mode"] == {"Bb major": 1, "E minor": 1, "F# minor": 1}
    assert stats["keys_covered"] == 3 and stats["tonics_covered"] == 3
    assert stats["mode"] == {"minor": 2, "major": 1}
    assert stats["aspects"] == {"chiptune": 1, "chorale": 1, "game": 1}

    captions = _captions_module()
    expected = captions.caption_diversity(["A bright rock song.", "A slow jazz piano trio.",
                                           "A four-part chorale for strings.", "A tune from a game."])
    assert {k: v for k, v in stats["caption_diversity"].items() if k != "sampled"} == expected
    assert stats["caption_diversity"]["sampled"] == 4


def test_caption_sample_is_capped(corpus: Path):
    _captions_module()
    stats = corpus_stats(corpus, caption_sample=2)
    assert stats["caption_diversity"]["sampled"] == 2 and stats["caption_diversity"]["captions"] == 2


def test_stats_of_unlabelled_corpus_and_plot(corpus: Path, tmp_path: Path):
    bare = tmp_path / "bare"
    write_manifest(bare, [ClipRecord(f"x{i}", f"audio/{i}.flac", 10.0, 24_000, "train", "ingest:f.ogg",
                                     "f.ogg") for i in range(3)])
    bare_stats = corpus_stats(bare)
    assert bare_stats["clips"] == 3 and bare_stats["genre"] == {} and bare_stats["distinct_programs"] == 0
    assert bare_stats["tempo_bpm"] == {} and bare_stats["keys_covered"] == 0
    assert bare_stats["captioned_clips"] == 0 and bare_stats["instruments"] == {}
    for folder, stats in ((bare, bare_stats), (corpus, corpus_stats(corpus))):
        png = plot_stats(stats, folder / "figs" / "stats.png")
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_missing_manifest_is_an_error(tmp_path: Path):
    with pytest.raises(ManifestError, match=r"no manifest\.jsonl"):
        corpus_stats(tmp_path)
