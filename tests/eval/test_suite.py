"""The evaluation suite on a tiny random MusicLM: prompt sets, systems, metrics, resumption, report, memorisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import load_audio, save_audio
from musiclm.data.manifest import ClipRecord, read_manifest, write_manifest
from musiclm.eval import EvalError
from musiclm.eval.prompts import jsonl_prompts, load_prompts, subsample
from musiclm.eval.report import lookup, markdown
from musiclm.eval.suite import CACHE_DIR, Evaluators, clip_path, run_suite, semantic_memorization
from musiclm.eval.systems import (
    SYSTEM_NAMES,
    CodecSystem,
    ModelSystem,
    ReferenceSystem,
    RetrievalLibrary,
    RetrievalSystem,
    System,
    UnconditionalSystem,
    batch_seed,
)
from musiclm.eval.tagger import Tagger, TaggerConfig, TaggerModel, build_vocab

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000
SECONDS = 3.0
PITCH = {"C": 0, "D": 2, "G": 7, "A": 9}
STYLES = (  # genre, bpm, key, mode, parts (name, program, is_drum)
    ("rock", 120.0, "C", "major", [("drum kit", 0, True), ("electric guitar", 29, False)]),
    ("ambient", 90.0, "A", "minor", [("warm pad", 89, False)]),
    ("techno", 140.0, "D", "minor", [("synth bass", 38, False), ("drum kit", 0, True)]),
    ("folk", 100.0, "G", "major", [("acoustic guitar", 25, False)]),
)
CSV_HEADER = ("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
              "is_audioset_eval\n")


def style_clip(bpm: float, key: str, mode: str, seed: int) -> np.ndarray:
    """A sustained triad in ``key``/``mode`` with noise clicks on every beat at ``bpm``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    root = 220.0 * 2 ** (PITCH[key] / 12)
    third = 4 if mode == "major" else 3
    chord = sum(np.sin(2 * np.pi * root * 2 ** (s / 12) * t) for s in (0, third, 7, 12))
    click = np.exp(-(t % (60.0 / bpm)) * 60) * rng.standard_normal(t.size) * 0.8
    out = 0.15 * chord + click
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def write_eval_corpus(folder: Path, train: int = 2, test: int = 1) -> Path:
    records, n = [], 0
    for genre, bpm, key, mode, parts in STYLES:
        for split, count in (("train", train), ("test", test)):
            for i in range(count):
                clip_id = f"{genre}-{split}-{i}"
                save_audio(folder / f"audio/{clip_id}.flac", style_clip(bpm, key, mode, n), SR)
                labels = {"genre": genre, "bpm": bpm, "key": key, "mode": mode, "mood": ["calm"],
                          "parts": [{"name": p, "program": g, "is_drum": d, "role": "x"} for p, g, d in parts]}
                records.append(ClipRecord(id=clip_id, path=f"audio/{clip_id}.flac", seconds=SECONDS, sample_rate=SR,
                                          split=split, source="composer", piece_id=clip_id, labels=labels,
                                          caption=f"a {genre} piece at {bpm:.0f} BPM in {key} {mode}"))
                n += 1
    write_manifest(folder, records)
    return folder


def write_csv(path: Path) -> Path:
    rows = ['a1,30,40,"/m/1","[\'rock\', \'guitar\']","A loud rock song with guitars.",1,True,True',
            'b2,0,10,"/m/2","[\'piano\']","A calm solo piano piece.",2,False,False',
            'c3,10,20,"/m/3","[]","Fast techno with a kick drum.",3,True,False']
    path.write_text(CSV_HEADER + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_eval_corpus(tmp_path_factory.mktemp("eval-corpus"))


@pytest.fixture(scope="module")
def tagger(corpus) -> Tagger:
    vocab = build_vocab(r.labels for r in read_manifest(corpus, "train"))
    torch.manual_seed(0)
    config = TaggerConfig(n_fft=512, hop_length=480, n_mels=32, channels=(4, 8), embed_dim=16, dropout=0.0,
                          clip_seconds=2.0, vocab=vocab)
    return Tagger(TaggerModel(config))


# ------------------------------------------------------------------------------------------------ prompts
def test_subsample_is_deterministic_and_keeps_order():
    items = list(range(100))
    a, b, c = subsample(items, 10, 1), subsample(items, 10, 1), subsample(items, 10, 2)
    assert a == b and a != c and a == sorted(a) and len(set(a)) == 10
    assert subsample(items, None, 0) == items and subsample(items, 500, 0) == items
    with pytest.raises(EvalError, match="--n"):
        subsample(items, 0, 0)


def test_corpus_prompts_carry_references_and_labels(corpus):
    prompts = load_prompts(corpus)
    assert prompts.kind == "corpus" and prompts.paired and prompts.available == 4
    assert [p.id for p in prompts.prompts] == [r.id for r in read_manifest(corpus, "test")]
    first = prompts.prompts[0]
    assert Path(first.reference).is_file() and first.labels["bpm"] == 90.0 and "ambient" in first.text
    two = load_prompts(corpus, n=2, seed=5)
    assert len(two.prompts) == 2 and [p.id for p in two.prompts] == [p.id for p in load_prompts(corpus, 2, 5).prompts]
    assert prompts.reference_clips() == prompts.prompts
    with pytest.raises(EvalError, match="no such"):
        load_prompts(corpus / "missing")


def test_musiccaps_prompts_are_text_only_with_a_reference_pool(corpus, tmp_path):
    csv = write_csv(tmp_path / "musiccaps.csv")
    balanced = load_prompts(csv)
    assert [p.id for p in balanced.prompts] == ["musiccaps-a1", "musiccaps-c3"]
    assert not balanced.paired and balanced.reference_clips() == [] and balanced.corpus is None
    everything = load_prompts(csv, balanced=False, reference_corpus=corpus, n_reference=3)
    assert len(everything.prompts) == 3 and everything.kind == "text"
    assert len(everything.reference_pool) == 3 and all(p.reference for p in everything.reference_pool)
    assert everything.describe()["reference_count"] == 3


def test_jsonl_prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x1", "caption": "a calm piano piece"}\n{"text": "fast drums"}\n')
    prompts = jsonl_prompts(path)
    assert [(p.id, p.text) for p in prompts] == [("x1", "a calm piano piece"), ("prompt-00002", "fast drums")]
    path.write_text('{"id": "x1", "caption": "a"}\n{"id": "x1", "caption": "b"}\n')
    with pytest.raises(EvalError, match="twice"):
        jsonl_prompts(path)
    path.write_text('{"id": "x/1", "caption": "a"}\n')
    with pytest.raises(EvalError, match="cannot name a file"):
        jsonl_prompts(path)


# ------------------------------------------------------------------------------------------------ systems
def test_reference_and_codec_systems_keep_length(corpus, tiny_musiclm):
    prompts = load_prompts(corpus).prompts[:2]
    wav, _ = load_audio(prompts[0].reference, SR)
    [ref, _] = ReferenceSystem().render(prompts, 2.0, 0)
    np.testing.assert_array_equal(ref.audio, wav[: 2 * SR])
    coded = CodecSystem(tiny_musiclm.codec).render(prompts, 2.0, 0)
    assert [c.audio.shape for c in coded] == [(2 * SR,), (2 * SR,)]
    assert not np.allclose(coded[0].audio, ref.audio)  # the random codec is lossy


def test_batch_seed_depends_on_seed_and_first_prompt():
    assert batch_seed(0, ["a", "b"]) == batch_seed(0, ["a", "c"]) != batch_seed(1, ["a", "b"])
    assert batch_seed(0, ["a"]) != batch_seed(0, ["b"])


def test_retrieval_library_caches_and_finds_the_nearest_clip(corpus, tiny_musiclm, tmp_path, monkeypatch):
    mulan = tiny_musiclm.mulan
    library = RetrievalLibrary.build(corpus, mulan, tmp_path)
    assert len(library) == 8 and library.valid.all() and len(list(tmp_path.glob("retrieval-*.npz"))) == 1
    index, cosine = library.nearest(library.embeddings[[3, 5]])
    assert index.tolist() == [3, 5] and np.allclose(cosine, 1.0, atol=1e-5)
    import musiclm.eval.systems as systems

    def no_embedding(*_args):
        raise AssertionError("the cached embeddings must be reused")

    monkeypatch.setattr(systems, "_embed_clips", no_embedding)
    again = RetrievalLibrary.build(corpus, mulan, tmp_path)
    np.testing.assert_array_equal(again.embeddings, library.embeddings)
    clips = RetrievalSystem(mulan, again).render(load_prompts(corpus).prompts[:2], 2.0, 0)
    assert all(c.info["retrieved"] in again.ids and c.audio.shape == (2 * SR,) for c in clips)


# ---------------------------------------------------------------------------------------------- the suite
@pytest.fixture(scope="module")
def evaluated(corpus, tiny_musiclm, tagger, tmp_path_factory):
    """All five systems evaluated once on the tiny model (3 s clips, 4 prompts)."""
    out = tmp_path_factory.mktemp("eval-out")
    prompts = load_prompts(corpus)
    library = RetrievalLibrary.build(prompts.corpus, tiny_musiclm.mulan, out / CACHE_DIR)
    systems = [ModelSystem(tiny_musiclm, batch_size=4), ReferenceSystem(), CodecSystem(tiny_musiclm.codec),
               RetrievalSystem(tiny_musiclm.mulan, library), UnconditionalSystem(tiny_musiclm, batch_size=4)]
    result = run_suite(prompts, systems, Evaluators(tiny_musiclm.mulan, tagger), out, duration=SECONDS,
                       progress=False, spectrograms=1)
    return out, prompts, result


def test_every_clip_and_report_file_is_written(evaluated):
    out, prompts, _ = evaluated
    for system in SYSTEM_NAMES:
        for prompt in prompts.prompts:
            wav, rate = load_audio(clip_path(out, system, prompt.id), None, allow_silent=True)
            assert rate == SR and wav.shape == (int(SECONDS * SR),)
    for name in ("report.json", "report.md", "prompts.json", "plots/metrics.png", "plots/tempo.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "plots").glob("spectrogram-*.png"))) == len(SYSTEM_NAMES)
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert list(report["systems"]) == list(SYSTEM_NAMES)
    text = (out / "report.md").read_text()
    for heading in ("## FAD", "## KLD", "## MCC", "## Attribute adherence", "## Memorisation", "plots/tempo.png"):
        assert heading in text
    assert "no token store given" in text


def test_floors_and_ceilings_behave(evaluated):
    _, prompts, result = evaluated
    systems = result.report["systems"]
    reference = systems["reference"]["metrics"]
    assert reference["fad"]["mulan"] == pytest.approx(0.0, abs=1e-6) and reference["kld"]["mean"] == pytest.approx(0)
    # The references are rendered at their labelled tempo and mode: the ceiling of adherence is perfect.
    assert lookup(reference, "adherence.tempo.accuracy") == 1.0
    assert lookup(reference, "adherence.mode.accuracy") == 1.0
    for name in ("model", "codec", "unconditional"):
        assert systems[name]["metrics"]["fad"]["mulan"] > 0 and systems[name]["metrics"]["kld"]["mean"] > 0
    assert set(systems["model"]["metrics"]["kld"]) == {"genre", "instruments", "mood", "tempo", "mode", "mean"}
    rows = systems["retrieval"]["per_clip"]
    assert all(r["retrieved"].endswith(("-train-0", "-train-1")) for r in rows)
    tempo_rows = [r for r in systems["reference"]["per_clip"]]
    assert [r["requested_bpm"] for r in tempo_rows] == [p.labels["bpm"] for p in prompts.prompts]
    assert all(r["tempo"] == "match" for r in tempo_rows)


def test_mcc_matches_a_direct_computation(evaluated, tiny_musiclm):
    out, prompts, result = evaluated
    wavs = [load_audio(clip_path(out, "model", p.id), SR)[0] for p in prompts.prompts]
    audio = tiny_musiclm.mulan.embed_audio(wavs, SR).numpy()
    text = tiny_musiclm.mulan.embed_text([p.text for p in prompts.prompts]).numpy()
    expected = (audio * text).sum(axis=1)
    per_clip = [r["mcc"] for r in result.report["systems"]["model"]["per_clip"]]
    np.testing.assert_allclose(per_clip, expected, atol=1e-5)
    assert result.report["systems"]["model"]["metrics"]["mcc"] == pytest.approx(expected.mean(), abs=1e-5)


class Refuses(System):
    """A system that must never be asked to render (everything is cached)."""

    name = "model"
    description = "must not render"

    def render(self, prompts, duration, seed):
        raise AssertionError(f"rendered {[p.id for p in prompts]} again")


def test_a_rerun_reuses_cached_clips_and_features(evaluated, tiny_musiclm, tagger):
    out, prompts, result = evaluated
    again = run_suite(prompts, [Refuses()], Evaluators(tiny_musiclm.mulan, tagger), out, duration=SECONDS,
                      progress=False, spectrograms=0)
    assert again.report["systems"]["model"]["cached"] == len(prompts.prompts)
    assert again.report["systems"]["model"]["metrics"]["mcc"] == result.report["systems"]["model"]["metrics"]["mcc"]


def test_a_missing_clip_is_rendered_again(evaluated, tiny_musiclm, tagger, tmp_path):
    out, prompts, _ = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    clip_path(copy, "unconditional", prompts.prompts[1].id).unlink()
    again = run_suite(prompts, [UnconditionalSystem(tiny_musiclm, batch_size=4)],
                      Evaluators(tiny_musiclm.mulan, tagger), copy, duration=SECONDS, progress=False,
                      spectrograms=0)
    assert (again.report["systems"]["unconditional"]["rendered"], again.report["systems"]["unconditional"]["cached"]
            ) == (1, len(prompts.prompts) - 1)
    assert clip_path(copy, "unconditional", prompts.prompts[1].id).exists()


def test_text_only_prompts_use_the_reference_pool(corpus, tiny_musiclm, tagger, tmp_path):
    prompts = load_prompts(write_csv(tmp_path / "mc.csv"), reference_corpus=corpus, n_reference=4)
    library = RetrievalLibrary.build(prompts.corpus, tiny_musiclm.mulan, tmp_path / "out" / CACHE_DIR)
    result = run_suite(prompts, [ReferenceSystem(), RetrievalSystem(tiny_musiclm.mulan, library)],
                       Evaluators(tiny_musiclm.mulan, tagger), tmp_path / "out", duration=2.0, progress=False,
                       spectrograms=0)
    systems = result.report["systems"]
    assert list(systems) == ["retrieval"]
    metrics = systems["retrieval"]["metrics"]
    assert metrics["kld"] is None and metrics["adherence"] == {}
    assert metrics["fad"]["mulan"] is not None and result.report["prompts"]["reference_count"] == 4
    notes = " ".join(result.report["notes"])
    assert "reference: skipped" in notes and "KLD and attribute adherence: not measured" in notes
    assert (tmp_path / "out" / "features" / "reference-set.npz").exists()


def test_markdown_survives_missing_metrics(evaluated):
    _, _, result = evaluated
    report = json.loads(json.dumps(result.report))
    report["systems"]["model"]["metrics"]["fad"] = {"mulan": None, "tagger": None}
    report["systems"]["model"]["metrics"]["adherence"] = {}
    text = markdown(report)
    assert "| model | - | - |" in text


# ---------------------------------------------------------------------------------------------- memorisation
def test_memorization_study_on_a_token_store(corpus, tiny_musiclm, tmp_path):
    from musiclm.tokenstore.build import TokenizerModels, build_store

    models = TokenizerModels(tiny_musiclm.codec, tiny_musiclm.semantic_tokenizer, tiny_musiclm.mulan)
    build_store([corpus], tmp_path / "tokens", models, shard_size=16, progress=False)
    kwargs = {"sequences": 5, "prompt_seconds": 1.0, "continuation_seconds": 1.0, "batch_size": 2}
    report = semantic_memorization(tiny_musiclm, tmp_path / "tokens", **kwargs)
    assert report["sequences"] == 5 and report["prompt_tokens"] == 25 and report["continuation_tokens"] == 25
    assert report["store_mulan_matches_model"] and report["training_clips"] == 8
    assert 0.0 <= report["exact_rate"] <= report["approximate_rate"] <= 1.0
    again = semantic_memorization(tiny_musiclm, tmp_path / "tokens", **kwargs)  # greedy: deterministic
    assert again["median_cost"] == report["median_cost"]
    with pytest.raises(EvalError, match="no training clip"):
        semantic_memorization(tiny_musiclm, tmp_path / "tokens", prompt_seconds=3.0, continuation_seconds=1.0)


def test_vggish_rows_are_every_example_of_every_clip(tiny_musiclm):
    from musiclm.eval.suite import fad_scores, measure_clips
    from musiclm.eval.vggish import random_vggish

    evaluators = Evaluators(tiny_musiclm.mulan, vggish=random_vggish(0))
    assert evaluators.fad_embeddings() == ["mulan", "vggish"]
    rng = np.random.default_rng(0)
    wavs = [0.1 * rng.standard_normal(int(s * SR)).astype(np.float32) for s in (2.0, 3.0, 1.0)]
    features = measure_clips(["a", "b", "c"], wavs, evaluators)
    assert features.vggish_offsets.tolist() == [0, 2, 5, 6]  # 0.96 s examples, an incomplete last one dropped
    assert features.vggish.shape == (6, 128)
    scores = fad_scores(features, features, evaluators.fad_embeddings())
    assert scores["vggish"] == pytest.approx(0.0, abs=1e-6)
