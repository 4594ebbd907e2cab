"""Building a token store with tiny random models: rates, round trip, sharding, resume, bad clips, the CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent.parent
for helper_dir in ("codec", "semantic", "mulan"):  # reuse the tiny models the model tests build
    if str(TESTS / helper_dir) not in sys.path:
        sys.path.insert(0, str(TESTS / helper_dir))

from codec_helpers import synth_clip, tiny_codec_config  # noqa: E402
from mulan_testing import tiny_model_config  # noqa: E402
from semantic_testkit import tiny_tokenizer  # noqa: E402

import musiclm.tokenstore.build as build_module  # noqa: E402
from musiclm.audio import load_audio, save_audio  # noqa: E402
from musiclm.codec.api import Codec  # noqa: E402
from musiclm.codec.model import SoundStream  # noqa: E402
from musiclm.data.manifest import ClipRecord, write_manifest  # noqa: E402
from musiclm.errors import MusicLMError  # noqa: E402
from musiclm.mulan.api import MuLan  # noqa: E402
from musiclm.mulan.model import MuLanModel  # noqa: E402
from musiclm.mulan.quantizer import EmbeddingQuantizer  # noqa: E402
from musiclm.tokenstore import TokenStore  # noqa: E402
from musiclm.tokenstore.build import (  # noqa: E402
    TokenizeError,
    TokenizerModels,
    build_store,
    default_batch,
    plan_clips,
    resolve_rank,
    store_status,
)
from musiclm.tokenstore.cli import TokenizeUsageError, register  # noqa: E402
from musiclm.tokenstore.store import SHARDS_DIR, STORE_FILE, shard_path  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000
LENGTHS = (1.0, 1.01, 1.0, 0.7, 1.0, 1.01, 1.0, 1.0, 1.3, 1.0, 1.0)  # ragged on purpose: 480 and 960 do not divide


def make_models(seed: int = 0) -> TokenizerModels:
    torch.manual_seed(seed)
    codec = Codec(SoundStream(tiny_codec_config()))
    quantizer = EmbeddingQuantizer(12, 8, 16)
    quantizer.codebooks.copy_(torch.randn(12, 8, 16, generator=torch.Generator().manual_seed(seed)) * 0.3)
    return TokenizerModels(codec, tiny_tokenizer(seed), MuLan(MuLanModel(tiny_model_config()), quantizer))


@pytest.fixture(scope="module")
def models() -> TokenizerModels:
    return make_models(0)


@pytest.fixture(scope="module")
def model_dirs(models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"codec": models.codec.save(root / "codec"), "semantic": models.semantic.save(root / "semantic"),
            "mulan": models.mulan.save(root / "mulan")}


def write_corpus(folder: Path, lengths=LENGTHS, seed: int = 0, prefix: str = "c", bad: dict | None = None) -> Path:
    """Clips of ``lengths`` seconds with captions; ``bad`` maps clip numbers to "silent", "corrupt", "missing"
    or "constant" (valid audio that the test's patched model refuses)."""
    rng = np.random.default_rng(seed)
    bad = bad or {}
    records = []
    for i, seconds in enumerate(lengths):
        rel = f"audio/{prefix}{i:03d}.wav"
        kind = bad.get(i)
        if kind == "silent":
            save_audio(folder / rel, np.zeros(int(seconds * SR), np.float32), SR)
        elif kind == "corrupt":
            (folder / "audio").mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
        elif kind == "constant":
            save_audio(folder / rel, np.full(int(seconds * SR), 0.25, np.float32), SR)
        elif kind != "missing":
            save_audio(folder / rel, synth_clip(rng, seconds, SR), SR)
        records.append(ClipRecord(id=f"{prefix}{i:03d}", path=rel, seconds=seconds, sample_rate=SR,
                                  split=["train", "train", "valid", "test"][i % 4], source="test",
                                  piece_id=f"{prefix}-piece{i}", caption=f"caption of clip {i}" if i % 5 else None))
    write_manifest(folder, records)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def reference(models, corpus, tmp_path_factory) -> Path:
    """A store of the whole corpus in one process: shards of 4 clips, batches of 3."""
    out = tmp_path_factory.mktemp("reference")
    build_store([corpus], out, models, shard_size=4, batch=3, progress=False)
    return out


def shard_contents(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every shard's arrays except the report (which records timings and ranks)."""
    out = {}
    for path in sorted((folder / SHARDS_DIR).glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            out[path.name] = {k: npz[k] for k in npz.files if k != "report"}
    return out


def assert_same_shards(a: Path, b: Path) -> None:
    left, right = shard_contents(a), shard_contents(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert sorted(left[name]) == sorted(right[name])
        for key in left[name]:
            assert np.array_equal(left[name][key], right[name][key]), (name, key)


# ------------------------------------------------------------------------------------------ content
def test_store_holds_the_models_outputs_at_the_right_rates(models, corpus, reference):
    store = TokenStore.open(reference)
    assert len(store) == len(LENGTHS) and store.complete
    assert store.ids == [f"c{i:03d}" for i in range(len(LENGTHS))]  # manifest order
    assert store.info.levels == 12 and store.info.frame_rate == 50.0 and store.info.semantic_rate == 25
    assert store.info.num_shards == 3 and store.info.mulan_levels == 12 and store.info.embed_dim == 16
    for i, seconds in enumerate(LENGTHS):
        wav, _ = load_audio(corpus / f"audio/c{i:03d}.wav", SR)
        samples = wav.shape[0]
        codes, semantic = store.codes(i), store.semantic(i)
        assert codes.dtype == semantic.dtype == store.mulan_tokens(i).dtype == np.int16
        assert codes.shape == (12, -(-samples // 480)) and semantic.shape == (-(-samples // 960),)
        assert store.seconds(i) == pytest.approx(seconds, abs=1e-4)
        direct = models.codec.encode(wav, levels=12)[0].numpy()
        assert np.array_equal(codes, direct)
        assert np.array_equal(semantic, models.semantic.tokenize(wav)[0].numpy())
        embedding = models.mulan.embed_audio(wav)
        assert np.allclose(store.mulan_embedding(i).astype(np.float32), embedding[0].numpy(), atol=2e-3)
        assert store.mulan_embedding(i).dtype == np.float16
        assert np.array_equal(store.mulan_tokens(i), models.mulan.tokens(embedding)[0].numpy())
        assert store.caption(i) == (f"caption of clip {i}" if i % 5 else "")
        assert store.split(i) == ["train", "train", "valid", "test"][i % 4]
    assert len(np.unique(np.concatenate([store.codes(i)[0] for i in range(len(store))]))) > 5  # not constant


def test_store_json_records_models_and_layout(models, reference):
    data = json.loads((reference / STORE_FILE).read_text())
    ident = models.identity()
    for name in ("codec", "semantic", "mulan"):
        assert data[name]["fingerprint"] == ident[name]["fingerprint"]
    assert data["mulan"]["fingerprint"] == models.mulan.token_fingerprint()  # the audio side only
    assert data["codec"]["codebook_size"] == 1024 and data["semantic"]["num_clusters"] == 16
    assert data["mulan"]["codebook_size"] == 8 and data["shard_size"] == 4 and data["num_clips"] == len(LENGTHS)
    assert data["codec"]["config"]["num_quantizers"] == 12 and data["corpora"][0]["clips"] == len(LENGTHS)


def test_fingerprints_survive_save_and_load(models, model_dirs):
    loaded = TokenizerModels.load(model_dirs["codec"], model_dirs["semantic"], model_dirs["mulan"])
    assert loaded.identity()["codec"]["fingerprint"] == models.identity()["codec"]["fingerprint"]
    assert loaded.identity()["semantic"]["fingerprint"] == models.identity()["semantic"]["fingerprint"]
    assert loaded.identity()["mulan"]["fingerprint"] == models.identity()["mulan"]["fingerprint"]


def test_split_filter(models, corpus, tmp_path):
    build_store([corpus], tmp_path, models, splits="valid,test", shard_size=4, progress=False)
    store = TokenStore.open(tmp_path)
    assert set(store.splits) == {"valid", "test"} and len(store) == 5
    with pytest.raises(TokenizeError, match="--splits"):
        build_store([corpus], tmp_path / "x", models, splits="training")


# ---------------------------------------------------------------------------------------- sharding
def test_two_ranks_make_exactly_the_shards_of_one(models, corpus, reference, tmp_path):
    report0 = build_store([corpus], tmp_path, models, shard_size=4, batch=3, rank=0, world_size=2, progress=False)
    assert report0.shards_written == 2 and not shard_path(tmp_path, 1).exists()  # shards 0 and 2
    with pytest.raises(MusicLMError, match="1 of 3 shards are not done"):
        TokenStore.open(tmp_path)
    report1 = build_store([corpus], tmp_path, models, shard_size=4, batch=3, rank=1, world_size=2, progress=False)
    assert report1.shards_written == 1 and report0.clips_tokenized + report1.clips_tokenized == len(LENGTHS)
    assert (tmp_path / STORE_FILE).read_text() == (reference / STORE_FILE).read_text()
    assert_same_shards(tmp_path, reference)


def test_default_batch_depends_on_the_device(models, corpus, tmp_path):
    assert default_batch("cpu") == 1 and default_batch("cuda") == 8
    report = build_store([corpus], tmp_path, models, shard_size=4, splits="valid", progress=False)
    assert report.batch == 1 and report.clips_tokenized == 3


def test_rank_from_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_rank() == (1, 3)
    assert resolve_rank(0, 1) == (0, 1)  # explicit arguments win
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(TokenizeError, match="0 <= rank < world size"):
        resolve_rank()


# ------------------------------------------------------------------------------------------- resume
def test_resume_completes_a_damaged_store_identically(models, corpus, reference, tmp_path):
    shutil.copytree(reference, tmp_path / "store")
    out = tmp_path / "store"
    shard_path(out, 1).unlink()  # killed before shard 1 was renamed into place ...
    (out / SHARDS_DIR / f".{shard_path(out, 1).name}.abc123.tmp").write_bytes(b"half a shard")  # ... mid-write
    shard_path(out, 2).write_bytes(shard_path(out, 2).read_bytes()[:100])  # and a damaged file
    report = build_store([corpus], out, models, shard_size=4, batch=3, progress=False)
    assert report.shards_already_done == 1 and report.shards_written == 2
    assert not list((out / SHARDS_DIR).glob(".*.tmp"))
    assert_same_shards(out, reference)
    again = build_store([corpus], out, models, shard_size=4, batch=3, progress=False)
    assert again.shards_written == 0 and again.shards_already_done == 3


def test_a_killed_run_loses_only_its_current_shard(models, corpus, reference, tmp_path, monkeypatch):
    real = build_module.tokenize_batch

    def dies_in_second_shard(m, wavs, parts=build_module.PARTS):
        if shard_path(tmp_path, 0).exists():
            raise KeyboardInterrupt  # stands in for a kill: not an error the build may swallow
        return real(m, wavs, parts)

    monkeypatch.setattr(build_module, "tokenize_batch", dies_in_second_shard)
    with pytest.raises(KeyboardInterrupt):
        build_store([corpus], tmp_path, models, shard_size=4, batch=3, progress=False)
    assert shard_path(tmp_path, 0).exists() and not shard_path(tmp_path, 1).exists()
    monkeypatch.setattr(build_module, "tokenize_batch", real)
    report = build_store([corpus], tmp_path, models, shard_size=4, batch=3, progress=False)
    assert report.shards_already_done == 1 and report.shards_written == 2
    assert_same_shards(tmp_path, reference)


# ----------------------------------------------------------------------------------------- bad clips
def test_bad_clips_are_skipped_and_reported(models, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus", lengths=(1.0,) * 8,
                          bad={1: "silent", 3: "corrupt", 5: "missing", 6: "constant"})
    real = build_module.tokenize_batch

    def refuses_constant_audio(m, wavs, parts=build_module.PARTS):
        if any(np.all(row == row[0]) for row in wavs):
            raise RuntimeError("constant input")
        return real(m, wavs, parts)

    monkeypatch.setattr(build_module, "tokenize_batch", refuses_constant_audio)
    out = tmp_path / "store"
    report = build_store([corpus], out, models, shard_size=8, batch=4, progress=False)
    reasons = {s["id"]: s["reason"] for s in report.skipped}
    assert sorted(reasons) == ["c001", "c003", "c005", "c006"] and report.clips_tokenized == 4
    assert "silent" in reasons["c001"] and "corrupt" in reasons["c003"] and "no such file" in reasons["c005"]
    assert "constant input" in reasons["c006"]
    store = TokenStore.open(out)
    assert store.ids == ["c000", "c002", "c004", "c007"]
    assert {s["id"] for s in store.skipped} == set(reasons)
    # the good clips of the failed batch were tokenized alone, with the same result
    wav, _ = load_audio(corpus / "audio/c004.wav", SR)
    assert np.array_equal(store.codes(2), models.codec.encode(wav, levels=12)[0].numpy())
    status = store_status(out)
    assert status["clips_skipped"] == 4 and status["clips_tokenized"] == 4 and status["complete"]


def test_a_mostly_broken_shard_stops_the_build(models, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", lengths=(1.0,) * 4, bad={0: "missing", 1: "missing", 2: "corrupt"})
    with pytest.raises(TokenizeError, match="3 of 4 clips failed"):
        build_store([corpus], tmp_path / "store", models, progress=False)
    assert not shard_path(tmp_path / "store", 0).exists()
    report = build_store([corpus], tmp_path / "store2", models, progress=False, max_skip_fraction=1.0)
    assert report.clips_skipped == 3 and len(TokenStore.open(tmp_path / "store2")) == 1


# ---------------------------------------------------------------------------------- mixing is refused
def test_other_models_or_layout_are_refused(models, corpus, reference, tmp_path):
    shutil.copytree(reference, tmp_path / "store")
    other = make_models(seed=1)
    with pytest.raises(TokenizeError, match=r"codec model differs.*never be mixed"):
        build_store([corpus], tmp_path / "store", other, shard_size=4, progress=False)
    with pytest.raises(TokenizeError, match="clip layout differs"):
        build_store([corpus], tmp_path / "store", models, shard_size=5, progress=False)
    with pytest.raises(TokenizeError, match="clip layout differs"):
        build_store([corpus], tmp_path / "store", models, shard_size=4, splits="train", progress=False)
    assert_same_shards(tmp_path / "store", reference)  # nothing was touched


def test_several_corpora(models, corpus, tmp_path):
    second = write_corpus(tmp_path / "second", lengths=(1.0, 1.0), seed=3, prefix="d")
    build_store([corpus, second], tmp_path / "store", models, shard_size=64, progress=False)
    store = TokenStore.open(tmp_path / "store")
    assert store.ids[-2:] == ["d000", "d001"] and store.corpus(len(store) - 1) == "second"
    clash = write_corpus(tmp_path / "clash", lengths=(1.0,), prefix="c")
    with pytest.raises(TokenizeError, match=r"c000.*separate stores"):
        plan_clips([corpus, clash])
    with pytest.raises(MusicLMError, match=r"no manifest\.jsonl"):
        plan_clips([tmp_path / "nothing"])


# ---------------------------------------------------------------------------------------------- reuse
def with_new_mulan(models: TokenizerModels, seed: int) -> TokenizerModels:
    return TokenizerModels(models.codec, models.semantic, make_models(seed).mulan)


def test_reuse_copies_unchanged_models_and_computes_the_new_one(models, corpus, reference, tmp_path, monkeypatch):
    new = with_new_mulan(models, seed=1)
    full = tmp_path / "full"
    build_store([corpus], full, new, shard_size=4, batch=3, progress=False)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a copied model ran")

    monkeypatch.setattr(new.codec, "encode", must_not_run)
    monkeypatch.setattr(new.semantic, "tokenize", must_not_run)
    out = tmp_path / "reused"
    report = build_store([corpus], out, new, shard_size=4, batch=3, progress=False, reuse=reference)
    assert report.parts_copied == ["codec", "semantic"] and report.parts_computed == ["mulan"]
    assert report.clips_tokenized == len(LENGTHS) and report.shards_written == 3
    assert_same_shards(out, full)  # exactly what a full build with the new MuLan makes
    old, fresh = TokenStore.open(reference), TokenStore.open(out)
    assert fresh.info.key != old.info.key and fresh.info.mulan["fingerprint"] == new.mulan.token_fingerprint()
    assert not np.array_equal(fresh.mulan_tokens(0), old.mulan_tokens(0))
    assert np.array_equal(fresh.codes(3), old.codes(3)) and np.array_equal(fresh.semantic(3), old.semantic(3))
    # resuming the reusing build touches nothing
    again = build_store([corpus], out, new, shard_size=4, progress=False, reuse=reference)
    assert again.shards_written == 0 and again.shards_already_done == 3


def test_reuse_copies_tokens_recorded_under_whole_model_fingerprints(models, corpus, reference, tmp_path,
                                                                      monkeypatch):
    """Stores made before token fingerprints recorded the whole codec and MuLan; their tokens still copy."""
    with monkeypatch.context() as old_software:  # a build that records the whole-model fingerprints
        for model in (models.codec, models.mulan):
            old_software.setattr(type(model), "token_fingerprint", type(model).fingerprint)
        build_store([corpus], tmp_path / "legacy", models, shard_size=4, progress=False)
    legacy = tmp_path / "legacy"
    assert TokenStore.open(legacy).info.codec["fingerprint"] == models.codec.fingerprint()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a copied model ran")

    for model, method in ((models.codec, "encode"), (models.semantic, "tokenize"), (models.mulan, "embed_audio")):
        monkeypatch.setattr(model, method, must_not_run)
    report = build_store([corpus], tmp_path / "out", models, shard_size=4, progress=False, reuse=legacy)
    assert report.parts_copied == ["codec", "semantic", "mulan"] and report.parts_computed == []
    fresh = TokenStore.open(tmp_path / "out")
    assert fresh.info.codec["fingerprint"] == models.codec.token_fingerprint() != models.codec.fingerprint()
    assert fresh.info.mulan["fingerprint"] == models.mulan.token_fingerprint()
    assert np.array_equal(fresh.codes(3), TokenStore.open(reference).codes(3))


def test_reuse_keeps_skipped_clips_skipped(models, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus", lengths=(1.0,) * 6, bad={2: "corrupt"})
    build_store([corpus], tmp_path / "old", models, shard_size=6, progress=False)
    report = build_store([corpus], tmp_path / "new", with_new_mulan(models, 2), shard_size=6, progress=False,
                         reuse=tmp_path / "old")
    assert report.clips_tokenized == 5 and [s["id"] for s in report.skipped] == ["c002"]
    assert "skipped in" in report.skipped[0]["reason"] and "corrupt" in report.skipped[0]["reason"]
    assert TokenStore.open(tmp_path / "new").ids == ["c000", "c001", "c003", "c004", "c005"]


def test_reuse_refuses_other_layouts_and_unfinished_stores(models, corpus, reference, tmp_path):
    new = with_new_mulan(models, seed=1)
    with pytest.raises(TokenizeError, match="clip layout differs"):
        build_store([corpus], tmp_path / "a", new, shard_size=5, progress=False, reuse=reference)
    with pytest.raises(TokenizeError, match="another store than --out"):
        build_store([corpus], reference, new, shard_size=4, progress=False, reuse=reference)
    with pytest.raises(TokenizeError, match=r"^--reuse .*nothing"):
        build_store([corpus], tmp_path / "b", new, shard_size=4, progress=False, reuse=tmp_path / "nothing")
    partial = tmp_path / "partial"
    shutil.copytree(reference, partial)
    shard_path(partial, 1).unlink()
    with pytest.raises(TokenizeError, match="lacks shard 1"):
        build_store([corpus], tmp_path / "c", new, shard_size=4, progress=False, reuse=partial)


# ------------------------------------------------------------------------------------------------ CLI
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="musiclm")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_build_resume_and_info(model_dirs, corpus, reference, tmp_path, capsys):
    flags = ["--codec", str(model_dirs["codec"]), "--semantic", str(model_dirs["semantic"]),
             "--mulan", str(model_dirs["mulan"]), "--device", "cpu", "--threads", "1"]
    args = parse(["tokenize", "--corpus", str(corpus), "--out", str(tmp_path), "--shard-size", "4", "--batch", "3",
                  "--no-progress", "--json", *flags])
    args.handler(args)
    result = json.loads(capsys.readouterr().out)
    assert result["shards_written"] == 3 and result["clips_tokenized"] == len(LENGTHS)
    assert_same_shards(tmp_path, reference)  # models loaded from folders give the same tokens
    args = parse(["tokenize", "--corpus", str(corpus), "--out", str(tmp_path), "--shard-size", "4",
                  "--no-progress", "--rank", "0", "--world-size", "1", *flags])
    args.handler(args)
    assert "wrote 0 shard(s), 3 already done" in capsys.readouterr().out

    new_mulan = make_models(seed=1).mulan.save(tmp_path.parent / f"{tmp_path.name}-mulan1")
    reused = tmp_path.parent / f"{tmp_path.name}-reused"
    args = parse(["tokenize", "--corpus", str(corpus), "--out", str(reused), "--shard-size", "4", "--no-progress",
                  "--reuse", str(tmp_path), *flags[:4], "--mulan", str(new_mulan), "--threads", "1"])
    args.handler(args)
    text = capsys.readouterr().out
    assert "copied codec, semantic from" in text and "computed mulan" in text
    assert TokenStore.open(reused).info.mulan["fingerprint"] != TokenStore.open(tmp_path).info.mulan["fingerprint"]

    args = parse(["tokenize", "info", str(tmp_path), "--json"])
    args.handler(args)
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["shards_done"] == 3 and info["clips_tokenized"] == len(LENGTHS)
    assert info["splits"]["train"]["clips"] == 6 and info["codec"]["levels"] == 12
    shard_path(tmp_path, 2).unlink()
    args = parse(["tokenize", "info", str(tmp_path)])
    args.handler(args)
    text = capsys.readouterr().out
    assert "INCOMPLETE, 2 of 3 shards done (missing 2)" in text and "valid" in text


def test_cli_errors(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_CODEC", str(tmp_path / "no-codec"))
    args = parse(["tokenize", "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--no-progress"])
    with pytest.raises(TokenizeUsageError, match=r"no codec model at .*no-codec \(from \$MUSICLM_CODEC\)"):
        args.handler(args)
    args = parse(["tokenize", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        args.handler(args)
    assert exit_info.value.code == 2
    args = parse(["tokenize", "info", str(tmp_path / "missing")])
    with pytest.raises(MusicLMError, match="not a token store"):
        args.handler(args)
