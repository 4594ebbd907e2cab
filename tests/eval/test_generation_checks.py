"""The attribute-pair and melody-following checks on tiny random models, fake models and a tiny melody corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import musiclm.cli as cli
from musiclm.audio import save_audio
from musiclm.data.manifest import ClipRecord, write_manifest
from musiclm.eval import generation_checks_cli
from musiclm.eval.generation_checks import (
    STYLE_PROMPTS,
    GenerationCheckError,
    MelodyCorpusError,
    MelodyUnsupportedError,
    loop_to,
    melody_queries,
    melody_table,
    run_attribute_pairs,
    run_melody_generation,
    run_reference_pairs,
)
from musiclm.eval.prompt_pairs import PAIRS

SR = 24_000
SECONDS = 2.0
SCALE = (0, 2, 4, 5, 7, 9, 11)

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")]  # 1-s clips in librosa


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(argv) -> (code, stdout, stderr)`` through ``musiclm.cli.main``, registering the commands first
    when musiclm/cli.py does not list this module yet."""
    original = cli._extensions
    if not any(r.__module__ == generation_checks_cli.__name__ for r in original()):
        monkeypatch.setattr(cli, "_extensions", lambda: [*original(), generation_checks_cli.register])

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# ------------------------------------------------------------------------------------------ melody corpus
def render(notes: list[int], harmonics: tuple[float, ...], seconds: float = SECONDS) -> np.ndarray:
    """Notes of equal length as decaying harmonic tones (the timbre is the harmonics)."""
    note = int(seconds * SR / len(notes))
    t = np.arange(note) / SR
    out = []
    for midi in notes:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        tone = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics))
        out.append(tone * np.minimum(1.0, t / 0.01) * np.exp(-2.0 * t))
    wav = np.concatenate(out)
    return (0.4 * wav / np.abs(wav).max()).astype(np.float32)


def write_melody_corpus(folder: Path, melodies: int = 4, seed: int = 0) -> Path:
    """``melodies`` test melodies (one group each) plus one train melody, two versions each: version 0 an
    "arranged" one with a piano lead (program 0), version 1 a bare flute (program 73, hum-like)."""
    rng = np.random.default_rng(seed)
    records = []
    for g in range(melodies + 1):
        notes = [60 + SCALE[int(rng.integers(7))] for _ in range(8)]
        melody = f"g{g:02d}-a"
        split = "train" if g == melodies else "test"
        for version, (kind, program, harmonics) in enumerate([("arranged", 0, (1.0, 0.6, 0.4, 0.2)),
                                                              ("bare", 73, (1.0, 0.1))]):
            clip = f"{melody}-v{version}"
            save_audio(folder / "audio" / f"{clip}.flac", render(notes, harmonics), SR)
            labels = {"melody_id": melody, "group_id": f"g{g:02d}", "version": version, "kind": kind,
                      "lead_program": program, "twin": None, "hard_negative": False}
            records.append(ClipRecord(id=clip, path=f"audio/{clip}.flac", seconds=SECONDS, sample_rate=SR,
                                      split=split, source="melody-pairs", piece_id=f"g{g:02d}", labels=labels))
    write_manifest(folder, records)
    return folder


@pytest.fixture(scope="module")
def melody_corpus(tmp_path_factory) -> Path:
    return write_melody_corpus(tmp_path_factory.mktemp("melody-corpus"))


@pytest.fixture(scope="module")
def melody_model_dir(tmp_path_factory) -> Path:
    from musiclm.random_model import random_musiclm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return random_musiclm("tiny", melody=True).save(tmp_path_factory.mktemp("melody-musiclm"))
    finally:
        torch.set_num_threads(threads)


class FakeModel:
    """Generates noise from text and the looped melody itself with a melody: a perfect melody follower."""

    sample_rate = SR
    supports_melody = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    @staticmethod
    def check_duration(duration: float) -> float:
        return float(duration)

    def generate(self, texts, duration, *, seed=0, num_samples=1):
        self.calls.append(("text", len(texts), seed, num_samples))
        rng = np.random.default_rng([seed, 7])
        wav = rng.standard_normal((len(texts) * num_samples, int(duration * SR))).astype(np.float32) * 0.1
        return torch.from_numpy(wav), SR

    def generate_with_melody(self, texts, melody, sr, duration, *, seed=0):
        self.calls.append(("melody", len(texts), seed, 1))
        rows = np.atleast_2d(melody)
        assert sr == SR and rows.shape[0] == len(texts)
        return torch.from_numpy(np.stack([loop_to(r, int(duration * SR)) for r in rows])), SR

    def resynthesize(self, audio, sr, texts, duration, *, seed=0):
        """A perfect semantic-to-acoustic path: the melody again, rotated by half a note, so it scores < 1."""
        self.calls.append(("resynthesis", len(texts), seed, 1))
        rows = np.atleast_2d(audio)
        looped = np.stack([loop_to(r, int(duration * SR)) for r in rows])
        return torch.from_numpy(np.roll(looped, SR // 8, axis=1)), SR

    class codec:  # stands in for the model's codec attribute
        @staticmethod
        def encode(wav, sr, bitrate=None):
            return torch.as_tensor(np.asarray(wav))[None]

        @staticmethod
        def decode(codes, length):
            return codes[:, :length]


# --------------------------------------------------------------------------------------------- pairs
def test_pairs_command_writes_json_markdown_and_plot(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "pairs"
    code, stdout, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--seeds", "2", "--duration", "1",
                                    "--out", str(out), "--threads", "1", "--no-progress", "--json"])
    assert code == 0, stderr
    headline = json.loads(stdout)
    assert headline["total"] == 4 and set(headline["pairs"]) == {p.name for p in PAIRS}
    report = json.loads((out / "pairs.json").read_text())
    assert report["total"] == 4 and report["seeds"] == [0, 1] and report["duration"] == 1.0
    assert [p["name"] for p in report["pairs"]] == [p.name for p in PAIRS]
    for pair in report["pairs"]:
        assert len(pair["high_values"]) == 2 and len(pair["low_values"]) == 2
        assert all(np.isfinite(pair["high_values"] + pair["low_values"]))
        assert 0.0 <= pair["p_value"] <= 1.0
    assert report["passed"] == sum(p["passed"] for p in report["pairs"])
    markdown = (out / "pairs.md").read_text()
    assert "| pair | measure |" in markdown and "musiclm eval-pairs --model" in markdown and "--seeds 2" in markdown
    assert (out / "pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batched_seeds_make_one_call_per_group_and_one_sample_per_seed():
    model = FakeModel()
    result = run_attribute_pairs(model, seeds=[3, 4, 5], duration=1.0, batch_seeds=2)
    assert [c[2:] for c in model.calls] == [(3, 2), (5, 1)]  # seeds 3+4 in one call, then 5
    assert all(c[1] == 2 * len(PAIRS) for c in model.calls)
    assert result["seeds"] == [3, 4, 5] and result["total"] == 4
    loudness = next(p for p in result["pairs"] if p["name"] == "energy")["high_values"]
    assert len(loudness) == 3 and len(set(np.round(loudness, 6))) >= 2  # different samples, not one copied


def write_attribute_corpus(folder: Path, per_side: int = 3) -> Path:
    """Test clips labelled for every pair's sides: fast/major/high-energy clips are loud clicks at 170 BPM over
    a major chord, slow/minor/low-energy ones quiet 70 BPM clicks-free minor chords with piano and no drums."""
    t = np.arange(int(SECONDS * SR)) / SR
    records = []
    for i in range(2 * per_side):
        fast = i < per_side
        notes = [60, 64, 67] if fast else [57, 60, 64]
        wav = sum(np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * t) for n in notes) * (0.2 if fast else 0.02)
        if fast:
            for beat in np.arange(0.05, SECONDS, 60 / 170):
                start = int(beat * SR)
                wav[start:start + 300] += np.random.default_rng(i).uniform(-0.9, 0.9, 300)
        clip = f"a{i}"
        save_audio(folder / "audio" / f"{clip}.flac", wav.astype(np.float32), SR)
        labels = {"bpm": 170.0 if fast else 70.0, "has_drums": fast, "programs": [0], "mode":
                  "major" if fast else "minor", "energy": "high" if fast else "low"}
        records.append(ClipRecord(id=clip, path=f"audio/{clip}.flac", seconds=SECONDS, sample_rate=SR,
                                  split="test", source="compose", piece_id=clip, labels=labels))
    write_manifest(folder, records)
    return folder


def test_reference_measures_labelled_real_clips_and_their_codec_roundtrip(tmp_path):
    corpus = write_attribute_corpus(tmp_path / "corpus")

    class HalvingCodec:  # a lossy "codec" that halves the level: loudness drops, the contrasts survive
        sample_rate = SR

        @staticmethod
        def roundtrip(wav, sample_rate, bitrate=None):
            assert sample_rate == SR and bitrate is None
            return np.asarray(wav) * 0.5

    result = run_reference_pairs(corpus, HalvingCodec(), clips=3, duration=SECONDS)
    assert [p["name"] for p in result["real"]] == [p.name for p in PAIRS] == [p["name"] for p in result["codec"]]
    for pair in result["real"]:
        assert len(pair["high_values"]) == 3 == len(pair["low_values"]) and pair["high_mean"] > pair["low_mean"]
    real, coded = ({p["name"]: p for p in result[k]} for k in ("real", "codec"))
    assert coded["energy"]["high_mean"] == pytest.approx(real["energy"]["high_mean"] - 6.02, abs=0.1)
    assert "tempo (BPM)" in real["tempo"]["also"]
    assert all(len(side) == 3 for sides in result["clips"].values() for side in sides)
    with pytest.raises(GenerationCheckError, match="at least 2 clips a side"):
        run_reference_pairs(corpus, clips=1)
    with pytest.raises(GenerationCheckError, match=r"manifest|corpus"):
        run_reference_pairs(tmp_path / "nowhere")


def test_pairs_command_reference_only(run_cli, tiny_model_dir, tmp_path):
    corpus = write_attribute_corpus(tmp_path / "corpus", per_side=2)
    out = tmp_path / "ref"
    code, stdout, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--reference", str(corpus),
                                    "--reference-clips", "2", "--reference-only", "--duration", "1", "--out",
                                    str(out), "--threads", "1", "--no-progress", "--json"])
    assert code == 0, stderr
    headline = json.loads(stdout)
    assert set(headline["reference"]) == {"real", "codec"} and "passed" not in headline
    report = json.loads((out / "pairs.json").read_text())
    assert report["pairs"] == [] and len(report["reference"]["real"]) == 4
    markdown = (out / "pairs.md").read_text()
    assert "## The measures on real clips" in markdown and "--reference-only" in markdown
    assert not (out / "pairs.png").exists()
    code, _, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--reference-only", "--out", str(out)])
    assert code != 0 and "--reference" in stderr


def test_pairs_command_passes_sampling_settings_on(run_cli, tiny_model_dir, tmp_path, monkeypatch):
    from musiclm.pipeline import MusicLM

    seen = []
    original = MusicLM.generate

    def generate(self, *args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("cfg", "temperature", "top_k")})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MusicLM, "generate", generate)
    out = tmp_path / "pairs"
    code, _, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--seeds", "1", "--duration", "0.5",
                               "--cfg", "5", "--temperature", "1.0,0.9,0.5", "--out", str(out), "--threads", "1",
                               "--no-progress", "--json"])
    assert code == 0, stderr
    assert seen == [{"cfg": 5.0, "temperature": [1.0, 0.9, 0.5], "top_k": None}]
    report = json.loads((out / "pairs.json").read_text())
    assert report["sampling"] == {"cfg": 5.0, "temperature": [1.0, 0.9, 0.5]}
    assert "--cfg 5" in (out / "pairs.md").read_text()
    code, _, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--seeds", "1", "--duration", "0.5",
                               "--cfg", "-2", "--out", str(out), "--no-progress"])
    assert code != 0 and "cfg" in stderr and len(seen) == 1  # refused before generating anything


def test_pairs_reject_bad_settings():
    with pytest.raises(GenerationCheckError, match=r"distinct|differ"):
        run_attribute_pairs(FakeModel(), seeds=[1, 1], duration=1.0)
    with pytest.raises(GenerationCheckError, match="batch_seeds"):
        run_attribute_pairs(FakeModel(), seeds=[1], duration=1.0, batch_seeds=0)


# ------------------------------------------------------------------------------------------- melodies
def test_queries_are_distinct_held_out_melodies_with_hum_like_versions(melody_corpus):
    queries = melody_queries(melody_corpus, 4, rng=np.random.default_rng(1))
    assert len({q.melody_id for q in queries}) == 4
    assert all(q.melody_id != "g04-a" for q in queries)  # the train melody is not held out
    assert all(q.path.name.endswith("-v1.flac") and q.path.exists() for q in queries)  # the bare flute version
    assert [q.prompt for q in queries] == list(STYLE_PROMPTS[:4])
    assert all(q.unrelated_id != q.melody_id and q.unrelated_id != "g04-a" for q in queries)
    again = melody_queries(melody_corpus, 4, rng=np.random.default_rng(1))
    assert again == queries
    with pytest.raises(GenerationCheckError, match="holds 4 melodies"):
        melody_queries(melody_corpus, 5, rng=np.random.default_rng(0))


def test_a_perfect_melody_follower_scores_near_one_and_beats_text_only(melody_corpus):
    model = FakeModel()
    queries = melody_queries(melody_corpus, 4, rng=np.random.default_rng(0))
    result = run_melody_generation(model, queries, duration=3.0, seeds=(0, 1), batch=3)
    assert len(result["rows"]) == 8
    assert sum(c[1] for c in model.calls if c[0] == "melody") == 8  # every query, every seed, batched 3 + 1
    assert result["with_melody"]["mean"] > 0.95  # the looped melody itself, aligned with the looped reference
    assert result["text_only"]["mean"] < 0.5 and result["ratio"] > 2.0
    assert result["wilcoxon_p"] < 0.01
    assert result["unrelated"]["n"] == 4 and result["unrelated"]["mean"] < result["with_melody"]["mean"]


def test_ceilings_measure_the_codec_and_the_acoustic_stages(melody_corpus):
    model = FakeModel()
    queries = melody_queries(melody_corpus, 4, rng=np.random.default_rng(0))
    plain = run_melody_generation(model, queries, duration=3.0, seeds=(0,), batch=4)
    assert "codec" not in plain and not any(c[0] == "resynthesis" for c in model.calls)
    result = run_melody_generation(model, queries, duration=3.0, seeds=(0, 1), batch=4, ceilings=True)
    assert result["codec"]["n"] == 4 and result["codec"]["mean"] > 0.95  # a lossless codec keeps every frame
    assert result["resynthesis"]["n"] == 8 and 0.0 < result["resynthesis"]["mean"] < result["codec"]["mean"]
    assert all("resynthesis" in row and "codec" in row for row in result["rows"])
    assert "ceiling: acoustic stages" in melody_table(result)


def test_melody_command_on_a_tiny_melody_model(run_cli, melody_model_dir, melody_corpus, tmp_path):
    out = tmp_path / "melody"
    code, stdout, stderr = run_cli(["eval-melody", "--model", str(melody_model_dir), "--melodies", str(melody_corpus),
                                    "--n", "3", "--duration", "1", "--batch", "2", "--out", str(out),
                                    "--threads", "1", "--no-progress", "--json", "--ceilings"])
    assert code == 0, stderr
    headline = json.loads(stdout)
    report = json.loads((out / "melody.json").read_text())
    assert len(report["rows"]) == 3 and len({r["melody_id"] for r in report["rows"]}) == 3
    for row in report["rows"]:
        assert 0.0 <= row["with_melody"] <= 1.0 and 0.0 <= row["text_only"] <= 1.0 and 0.0 <= row["unrelated"] <= 1.0
    assert headline["ratio"] is None or headline["ratio"] >= 0.0
    assert 0.0 <= report["wilcoxon_p"] <= 1.0
    markdown = (out / "melody.md").read_text()
    assert "| with melody |" in markdown and "| unrelated melody (chance level) |" in markdown
    assert "ceiling: the melody through the codec" in markdown and 0.0 <= headline["resynthesis"]["mean"] <= 1.0
    assert "musiclm eval-melody --model" in markdown and "Ratio with / without melody" in markdown


def test_model_without_melody_gives_a_clear_error(run_cli, tiny_musiclm, tiny_model_dir, melody_corpus, tmp_path):
    queries = melody_queries(melody_corpus, 1, rng=np.random.default_rng(0))
    with pytest.raises(MelodyUnsupportedError, match="no melody conditioning"):
        run_melody_generation(tiny_musiclm, queries, duration=1.0)
    code, _, stderr = run_cli(["eval-melody", "--model", str(tiny_model_dir), "--melodies", str(melody_corpus),
                               "--n", "1", "--duration", "1", "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 1 and "no melody conditioning" in stderr


def test_folders_that_are_not_melody_corpora_give_clear_errors(run_cli, melody_model_dir, tmp_path):
    with pytest.raises(MelodyCorpusError, match="no such folder"):
        melody_queries(tmp_path / "missing", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MelodyCorpusError, match=r"no manifest\.jsonl"):
        melody_queries(tmp_path / "empty", 2)
    plain = tmp_path / "plain"
    save_audio(plain / "a.flac", render([60, 62, 64, 65], (1.0,)), SR)
    write_manifest(plain, [ClipRecord(id="a", path="a.flac", seconds=SECONDS, sample_rate=SR, split="test",
                                      source="synth", labels={"genre": "folk"})])
    with pytest.raises(MelodyCorpusError, match="not a usable melody-pairs corpus"):
        melody_queries(plain, 1)
    code, _, stderr = run_cli(["eval-melody", "--model", str(melody_model_dir), "--melodies", str(plain), "--n", "1",
                               "--out", str(tmp_path / "y"), "--no-progress"])
    assert code == 1 and "melody-pairs corpus" in stderr


def test_pairs_command_sends_reference_clips_through_another_codec(run_cli, tiny_model_dir, tmp_path):
    from musiclm.codec.api import Codec
    from musiclm.codec.config import CodecConfig
    from musiclm.codec.model import SoundStream

    torch.manual_seed(0)
    other = Codec(SoundStream(CodecConfig(architecture="spectral", spectral_dim=16, spectral_ffn=32,
                                          spectral_blocks=1, latent_dim=8, kmeans_init=False)))
    other_dir = other.save(tmp_path / "other-codec")
    corpus = write_attribute_corpus(tmp_path / "corpus", per_side=2)
    reports = {}
    for name, extra in (("own", []), ("other", ["--codec", str(other_dir)])):
        code, _, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--reference", str(corpus),
                                   "--reference-clips", "2", "--reference-only", "--duration", "1", "--out",
                                   str(tmp_path / name), "--threads", "1", "--no-progress", *extra])
        assert code == 0, stderr
        reports[name] = json.loads((tmp_path / name / "pairs.json").read_text())
    own, other_report = (reports[k]["reference"] for k in ("own", "other"))
    assert own["real"] == other_report["real"]
    assert own["codec"] != other_report["codec"]
    assert "--codec" in reports["other"]["settings"]["command"]
    code, _, stderr = run_cli(["eval-pairs", "--model", str(tiny_model_dir), "--codec", str(other_dir),
                               "--out", str(tmp_path / "x")])
    assert code != 0 and "--codec needs --reference" in stderr
