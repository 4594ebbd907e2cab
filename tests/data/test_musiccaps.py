from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.data.manifest import read_manifest, split_for
from musiclm.data.musiccaps import (
    MusicCapsError,
    build_musiccaps_corpus,
    parse_aspects,
    read_musiccaps,
    write_prompts,
)

CSV = Path(__file__).resolve().parents[2].parent / "shared/data/musiccaps-public.csv"
needs_csv = pytest.mark.skipif(not CSV.exists(), reason="the shared MusicCaps CSV is not here")


def tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_parse_aspects_is_safe():
    assert parse_aspects("['low quality', \"sad\", ' ballad ']") == ["low quality", "sad", "ballad"]
    assert parse_aspects("[]") == []
    for bad in ("__import__('os').system('true')", "['a', 3]", "{'a': 1}", "['unclosed'"):
        with pytest.raises(MusicCapsError):
            parse_aspects(bad)


def test_malformed_csv_is_reported(tmp_path: Path):
    (tmp_path / "x.csv").write_text("ytid,caption\nabc,hello\n")
    with pytest.raises(MusicCapsError, match="missing columns"):
        read_musiccaps(tmp_path / "x.csv")
    header = "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset," \
             "is_audioset_eval\n"
    (tmp_path / "y.csv").write_text(header + 'abc,0,10,/m/1,"[\'a\']",hi,1,maybe,False\n')
    with pytest.raises(MusicCapsError, match=r"y.csv:2: .*is_balanced_subset"):
        read_musiccaps(tmp_path / "y.csv")
    with pytest.raises(MusicCapsError, match="no such file"):
        read_musiccaps(tmp_path / "missing.csv")


@needs_csv
def test_real_csv_rows_and_balanced_prompt_set(tmp_path: Path):
    rows = read_musiccaps(CSV)
    assert len(rows) == 5521 and len({r.ytid for r in rows}) == 5521
    assert rows[0].ytid == "-0Gj8-vB1q4"
    assert rows[0].aspects[:2] == ("low quality", "sustained strings melody")
    assert rows[0].audioset_eval and not rows[0].balanced and rows[0].end_s - rows[0].start_s == 10
    assert all(r.caption and r.aspects for r in rows)

    result = write_prompts(CSV, tmp_path, balanced=True)
    lines = [json.loads(line) for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert result["rows"] == len(lines) == 1000
    assert all(p["balanced"] and p["caption"] and isinstance(p["aspects"], list) for p in lines)
    assert set(lines[0]) == {"id", "caption", "aspects", "balanced", "audioset_eval"}
    everything = write_prompts(CSV, tmp_path / "all.jsonl")
    assert everything["rows"] == 5521 and (tmp_path / "all.jsonl").exists()


@needs_csv
def test_corpus_from_a_folder_of_real_ytids(tmp_path: Path):
    rows = read_musiccaps(CSV)
    eval_row = next(r for r in rows if r.audioset_eval and not r.balanced)
    balanced_row = next(r for r in rows if r.balanced)
    plain_row = next(r for r in rows if not r.audioset_eval and r.start_s >= 10)
    silent_row = next(r for r in rows if r not in (eval_row, balanced_row, plain_row))
    audio = tmp_path / "clips"
    audio.mkdir()
    sf.write(audio / f"{eval_row.ytid}.wav", np.stack([tone(10, 44_100)] * 2, axis=1), 44_100)
    sf.write(audio / f"{balanced_row.ytid}.flac", tone(10, 16_000), 16_000)
    # a whole "video": the clip is start_s..end_s of it (marked by a different tone)
    video = np.concatenate([tone(plain_row.start_s, 24_000, 220), tone(10, 24_000, 880),
                            tone(3, 24_000, 220)])
    sf.write(audio / f"{plain_row.ytid}.wav", video, 24_000)
    sf.write(audio / f"{silent_row.ytid}.wav", np.zeros(240_000, np.float32), 24_000)
    (audio / "unrelated.txt").write_text("not audio")

    out = tmp_path / "corpus"
    result = build_musiccaps_corpus(CSV, audio, out, seed=1, progress=False)
    assert result["rows"] == 5521 and result["clips"] == 3 and result["new_clips"] == 3
    assert result["missing_audio"] == 5521 - 4 and result["failed"] == 1
    assert result["failed_examples"][0]["ytid"] == silent_row.ytid

    records = {r.labels["ytid"]: r for r in read_manifest(out)}
    assert set(records) == {eval_row.ytid, balanced_row.ytid, plain_row.ytid}
    for row in (eval_row, balanced_row, plain_row):
        record = records[row.ytid]
        assert record.caption == row.caption and record.aspects == list(row.aspects)
        assert record.labels["author_id"] == row.author_id and record.labels["balanced"] == row.balanced
        assert record.split == ("test" if row.audioset_eval else split_for(row.ytid, 1))
        assert record.seconds == pytest.approx(10.0) and record.source == "musiccaps"
        info = sf.info(out / record.path)
        assert info.samplerate == 24_000 and info.channels == 1
    assert records[eval_row.ytid].split == "test"
    cut, _ = sf.read(out / records[plain_row.ytid].path)
    spectrum = np.abs(np.fft.rfft(cut))
    assert abs(np.argmax(spectrum) * 24_000 / len(cut) - 880) < 2  # the right 10 s were taken

    again = build_musiccaps_corpus(CSV, audio, out, seed=1, progress=False)
    assert again["new_clips"] == 0 and again["resumed_clips"] == 3 and again["clips"] == 3
    balanced_only = build_musiccaps_corpus(CSV, audio, tmp_path / "bal", balanced=True, progress=False)
    assert balanced_only["rows"] == 1000 and balanced_only["clips"] == 1
