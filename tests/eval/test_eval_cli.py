"""``musiclm eval`` through its own parser: a model run, the floors without a model, and usage errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.data.manifest import ClipRecord, read_manifest, write_manifest
from musiclm.errors import MusicLMError
from musiclm.eval import cli
from musiclm.eval.tagger import Tagger, TaggerConfig, TaggerModel, build_vocab

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


@pytest.fixture(autouse=True)
def no_bundled_model(monkeypatch, tmp_path_factory):
    """Behave as if no bundled model or tagger were installed, whatever this checkout holds."""
    empty = tmp_path_factory.mktemp("no-bundled")
    monkeypatch.setattr(cli, "PRETRAINED", empty)
    monkeypatch.delenv("MUSICLM_MODEL", raising=False)
    monkeypatch.setenv("MUSICLM_TAGGER", str(empty / "tagger"))
    monkeypatch.setenv("MUSICLM_CODEC", str(empty / "codec"))
    monkeypatch.setenv("MUSICLM_MULAN", str(empty / "mulan"))


def tone_clip(freq: float, bpm: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    out = 0.2 * np.sin(2 * np.pi * freq * t) + np.exp(-(t % (60 / bpm)) * 60) * rng.standard_normal(t.size) * 0.5
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-corpus")
    records = []
    for i, (genre, freq, bpm, mode) in enumerate([("rock", 220.0, 120.0, "major"), ("jazz", 330.0, 96.0, "minor")]):
        for split in ("train", "test"):
            clip_id = f"{genre}-{split}"
            save_audio(folder / f"{clip_id}.flac", tone_clip(freq, bpm, i), SR)
            records.append(ClipRecord(id=clip_id, path=f"{clip_id}.flac", seconds=2.0, sample_rate=SR, split=split,
                                      source="composer", caption=f"a {genre} tune", piece_id=clip_id,
                                      labels={"genre": genre, "bpm": bpm, "key": "C", "mode": mode,
                                              "parts": [{"name": "piano", "program": 0, "is_drum": False}]}))
    write_manifest(folder, records)
    return folder


@pytest.fixture(scope="module")
def tagger_dir(corpus, tmp_path_factory) -> Path:
    vocab = build_vocab(r.labels for r in read_manifest(corpus, "train"))
    torch.manual_seed(0)
    config = TaggerConfig(n_fft=512, hop_length=480, n_mels=32, channels=(4, 8), embed_dim=16, dropout=0.0,
                          clip_seconds=2.0, vocab=vocab)
    return Tagger(TaggerModel(config)).save(tmp_path_factory.mktemp("tagger"))


@pytest.fixture
def call(capsys):
    parser = argparse.ArgumentParser(prog="musiclm")
    cli.register(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> dict:
        args = parser.parse_args(list(argv))
        args.handler(args)
        return json.loads(capsys.readouterr().out)

    run.parser = parser
    return run


def test_eval_with_a_model(call, corpus, tiny_model_dir, tagger_dir, tmp_path):
    out = tmp_path / "report"
    result = call("eval", "--model", str(tiny_model_dir), "--prompts", str(corpus), "--out", str(out), "--n", "2",
                  "--duration", "2", "--systems", "model,reference", "--tagger", str(tagger_dir), "--threads", "1",
                  "--no-progress", "--spectrograms", "0", "--json")
    assert set(result["systems"]) == {"model", "reference"} and result["prompts"] == 2
    assert result["systems"]["reference"]["FAD (MuLan)"] == pytest.approx(0.0, abs=1e-6)
    assert {"FAD (tagger)", "KLD (tagger, mean over heads)"} <= set(result["systems"]["model"])
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["command"].startswith(f"musiclm eval --model {tiny_model_dir} --prompts {corpus}")
    assert "--n 2 --duration 2 --systems model,reference" in report["settings"]["command"]
    assert (out / "audio/model/rock-test.flac").exists() and (out / "report.md").exists()
    assert any("memorisation: skipped" in n for n in result["notes"])


def test_floors_and_ceilings_run_without_a_model(call, corpus, tiny_model_dir, tmp_path):
    out = tmp_path / "floors"
    result = call("eval", "--prompts", str(corpus), "--out", str(out), "--duration", "2", "--codec",
                  str(tiny_model_dir / "codec"), "--mulan", str(tiny_model_dir / "mulan"), "--no-progress",
                  "--spectrograms", "0", "--json")
    assert list(result["systems"]) == ["reference", "codec", "retrieval"]
    assert "model and unconditional: not evaluated (no model folder; pass --model DIR)" in result["notes"]
    assert any("tagger metrics" in n for n in result["notes"])
    assert list((out / "cache").glob("retrieval-*.npz"))


def test_usage_errors(call, corpus, tiny_model_dir, tmp_path):
    base = ["eval", "--prompts", str(corpus), "--out", str(tmp_path / "x"), "--no-progress", "--json"]
    with pytest.raises(MusicLMError, match="need a model"):
        call(*base, "--systems", "model")
    with pytest.raises(MusicLMError, match="--systems takes"):
        call(*base, "--systems", "model,best")
    with pytest.raises(MusicLMError, match="--duration"):
        call(*base, "--duration", "0")
    with pytest.raises(MusicLMError, match="needs MuLan"):
        call(*base, "--systems", "reference")
    csv = tmp_path / "mc.csv"
    csv.write_text("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,"
                   'is_audioset_eval\nq1,0,10,"/m/1","[]","A calm piano piece.",1,True,False\n')
    with pytest.raises(MusicLMError, match="no system left"):
        call("eval", "--prompts", str(csv), "--out", str(tmp_path / "y"), "--systems", "reference,codec",
             "--mulan", str(tiny_model_dir / "mulan"), "--no-progress", "--json")


def test_command_line_round_trips(call):
    args = call.parser.parse_args(["eval", "--prompts", "corpora/synth", "--out", "runs/e", "--n", "200",
                                   "--systems", "reference,codec", "--threads", "1", "--duration", "10"])
    line = cli.command_line(args)
    assert line == "musiclm eval --prompts corpora/synth --out runs/e --n 200 --systems reference,codec --threads 1"
    assert vars(call.parser.parse_args(line.split()[1:])) == vars(args)
