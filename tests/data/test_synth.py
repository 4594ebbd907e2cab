"""The synthetic corpus: deterministic, valid, resumable, leak-free, and its labels agree with its audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.analysis import estimate_key, estimate_tempo, key_agreement, tempo_agreement
from musiclm.data.manifest import PARTS_DIR, check_split_leakage, read_manifest
from musiclm.data.render import check_audio
from musiclm.data.synth import build_corpus, clip_starts, plan_jobs

pytest.importorskip("fluidsynth")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    summary = build_corpus(out, 24, seconds=10.0, seed=3, workers=2, progress=False)
    return out, summary


def test_manifest_is_valid_and_complete(corpus):
    out, summary = corpus
    records = read_manifest(out)
    assert len(records) + summary["clips_rejected_now"] == 24
    assert len(records) >= 22
    for record in records:
        assert record.sample_rate == 24_000 and record.seconds == 10.0
        assert record.caption and record.aspects and record.labels["genre"]
        assert (out / record.path).exists() and (out / record.annotations).exists()
    assert len({r.labels["genre"] for r in records}) >= 10  # styles are dealt round-robin
    assert check_split_leakage(records) == {}


def test_audio_is_24k_mono_not_silent_not_clipped(corpus):
    out, _ = corpus
    for record in read_manifest(out):
        wav, sr = sf.read(out / record.path, dtype="float32")
        assert sr == 24_000 and wav.ndim == 1 and len(wav) == 240_000
        assert check_audio(wav, sr) is None


def test_annotations_are_relative_to_the_clip(corpus):
    out, _ = corpus
    for record in read_manifest(out)[:6]:
        notes = json.loads((out / record.annotations).read_text())
        assert notes["beats"] and all(0.0 <= b < 10.0 for b in notes["beats"])
        assert all(0.0 <= s < e <= 10.0 for s, e, *_ in notes["melody"] + notes["chords"])


def test_labels_agree_with_the_audio(corpus):
    out, _ = corpus
    records = read_manifest(out)
    tempo_ok = key_ok = key_measured = 0
    for record in records:
        wav, sr = sf.read(out / record.path, dtype="float32")
        labels = record.labels
        if tempo_agreement(estimate_tempo(wav, sr), labels["bpm"]) in ("exact", "octave"):
            tempo_ok += 1
        if labels["mode"] in ("major", "minor"):
            key_measured += 1
            key_ok += key_agreement(estimate_key(wav, sr), labels["key"], labels["mode"]) in ("exact", "relative")
    assert tempo_ok / len(records) >= 0.8, f"tempo agrees on {tempo_ok}/{len(records)}"
    assert key_measured == 0 or key_ok / key_measured >= 0.6, f"key agrees on {key_ok}/{key_measured}"


def test_deterministic_from_the_seed_whatever_the_worker_schedule(corpus, tmp_path):
    out, _ = corpus
    build_corpus(tmp_path, 4, seconds=10.0, seed=3, workers=1, progress=False)
    small = {r.id: r for r in read_manifest(tmp_path)}
    big = {r.id: r for r in read_manifest(out)}
    assert small and set(small) <= set(big)
    for cid, record in small.items():
        assert record == big[cid]
        a, _ = sf.read(tmp_path / record.path, dtype="float32")
        b, _ = sf.read(out / big[cid].path, dtype="float32")
        # FluidSynth's reused voices leave ~1e-8 differences: at most the last bit of 24-bit FLAC may flip
        assert np.abs(a - b).max() <= 2.0**-23 + 1e-9


def test_resume_after_interruption_redoes_only_what_is_missing(tmp_path):
    build_corpus(tmp_path, 4, seconds=4.0, seed=11, workers=1, progress=False)
    before = read_manifest(tmp_path)
    # simulate a kill: manifest never merged, one clip's audio lost, the part file's last line cut short
    (tmp_path / "manifest.jsonl").unlink()
    (tmp_path / before[0].path).unlink()
    part = next((tmp_path / PARTS_DIR).glob("*.jsonl"))
    text = part.read_text()
    part.write_text(text[: len(text) - 40])
    summary = build_corpus(tmp_path, 4, seconds=4.0, seed=11, workers=1, progress=False)
    assert 1 <= summary["clips_written_now"] <= 4
    assert [r.id for r in read_manifest(tmp_path)] == [r.id for r in before]
    again = build_corpus(tmp_path, 4, seconds=4.0, seed=11, workers=1, progress=False)
    assert again["clips_written_now"] == 0


def test_ranks_partition_the_pieces():
    everyone = [j.index for r in range(3) for j in plan_jobs(20, 10.0, 0, rank=r, world_size=3)]
    assert sorted(everyone) == list(range(10))
    clips = [c for r in range(3) for j in plan_jobs(21, 10.0, 0, rank=r, world_size=3) for c in j.clip_ids]
    assert len(clips) == len(set(clips)) == 21


def test_clip_starts_are_bar_lines_and_do_not_overlap():
    from musiclm.data.composer import compose

    piece = compose(sorted(__import__("musiclm.data.composer", fromlist=["STYLES"]).STYLES)[0],
                    np.random.default_rng(0), seconds=30.0)
    starts = clip_starts(piece, 10.0, 2)
    assert len(starts) == 2 and starts[1] - starts[0] >= 10.0 - 1e-6
    assert all(any(abs(s - b) < 1e-6 for b in piece.bar_times) for s in starts)
    assert all(s + 10.0 <= piece.seconds + 1e-6 for s in starts)


def test_bad_arguments(tmp_path):
    from musiclm.errors import MusicLMError

    with pytest.raises(MusicLMError, match="clips"):
        build_corpus(tmp_path, 0)
    with pytest.raises(MusicLMError, match="seconds"):
        build_corpus(tmp_path, 1, seconds=0.5)
    shutil.rmtree(tmp_path, ignore_errors=True)
