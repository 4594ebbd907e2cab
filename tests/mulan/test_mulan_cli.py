"""``musiclm mulan ...`` on a tiny corpus: search (with its cache), tag, embed, train -> fit -> export -> eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mulan_testing import tiny_model_config, tiny_training_config, write_tiny_corpus

from musiclm.cli import main
from musiclm.config import save_yaml
from musiclm.data.manifest import read_manifest
from musiclm.mulan.api import MuLan
from musiclm.mulan.model import MuLanModel
from musiclm.mulan.quantizer import fit_quantizer
from musiclm.mulan.search import CACHE_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

MUSICCAPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "musiccaps-public.csv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("mulan_cli_corpus"), per_style=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, corpus) -> Path:
    torch.manual_seed(0)
    mulan = MuLan(MuLanModel(tiny_model_config()))
    audio = mulan.embed_files([corpus / r.path for r in read_manifest(corpus)])
    quantizer, _ = fit_quantizer(audio, 12, 4, min_points_per_code=1, iters=10)
    return mulan.with_quantizer(quantizer).save(tmp_path_factory.mktemp("mulan_model") / "model")


def run_json(capsys, *argv: str) -> dict:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_search_returns_manifest_clips_and_caches_embeddings(capsys, corpus, model_dir, monkeypatch):
    result = run_json(capsys, "mulan", "search", "a calm piano piece", "--corpus", str(corpus), "--top", "3",
                      "--model", str(model_dir))
    ids = {r.id for r in read_manifest(corpus)}
    assert [h["rank"] for h in result["results"]] == [1, 2, 3]
    assert all(h["id"] in ids for h in result["results"])
    scores = [h["score"] for h in result["results"]]
    assert scores == sorted(scores, reverse=True)
    caches = list((corpus / CACHE_DIR).glob("embeddings-*.npz"))
    assert len(caches) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the cached embeddings should have been used")

    monkeypatch.setattr(MuLan, "embed_files", refuse)
    again = run_json(capsys, "mulan", "search", "a calm piano piece", "--corpus", str(corpus), "--top", "3",
                     "--model", str(model_dir))
    assert again["results"] == result["results"]


def test_search_cache_follows_manifest_changes(capsys, corpus, model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns(CACHE_DIR))
    run_json(capsys, "mulan", "search", "techno", "--corpus", str(copy), "--model", str(model_dir))
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    (copy / "manifest.jsonl").write_text("\n".join(lines[:-2]) + "\n")  # two clips fewer
    result = run_json(capsys, "mulan", "search", "techno", "--corpus", str(copy), "--model", str(model_dir),
                      "--top", "50")
    assert len(result["results"]) == len(lines) - 2
    assert len(list((copy / CACHE_DIR).glob("embeddings-*.npz"))) == 1  # the stale file was replaced


def test_tag_and_embed(capsys, corpus, model_dir):
    clip = corpus / read_manifest(corpus)[0].path
    tags = run_json(capsys, "mulan", "tag", str(clip), "--model", str(model_dir))
    assert len(tags["genre"]) == 3 and len(tags["mood"]) == 3 and len(tags["tempo"]) == 1
    assert all(0.0 <= t["probability"] <= 1.0 for t in tags["instruments"])
    emb = run_json(capsys, "mulan", "embed", "--text", "a calm piano piece", "--text", "techno", "--tokens",
                   "--model", str(model_dir))
    assert len(emb["embeddings"]) == 2 and len(emb["embeddings"][0]) == 16
    assert len(emb["tokens"][0]) == 12
    assert main(["mulan", "embed", "--text", "  ", "--model", str(model_dir)]) == 1
    assert "empty" in capsys.readouterr().err


def test_missing_model_is_a_one_line_error(capsys, corpus, tmp_path):
    assert main(["mulan", "search", "x", "--corpus", str(corpus), "--model", str(tmp_path / "nope")]) == 1
    assert "no MuLan model" in capsys.readouterr().err


def test_train_fit_export_eval(capsys, corpus, tmp_path):
    config_path = save_yaml(tiny_training_config(steps=4), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    trained = run_json(capsys, "mulan", "train", "--corpus", str(corpus), "--run-dir", str(run), "--config",
                       str(config_path), "--no-progress", "--device", "cpu")
    assert trained["step"] == 4
    fitted = run_json(capsys, "mulan", "fit-quantizer", str(run), "--compare", "2,4")
    assert fitted["fit"]["num_quantizers"] == 12 and len(fitted["comparison"]) == 2
    assert (run / "quantizer.safetensors").exists()
    exported = run_json(capsys, "mulan", "export", str(run), "-o", str(tmp_path / "model"), "--no-fit")
    assert exported["levels"] == 12
    argv = ["mulan", "eval", "--model", str(tmp_path / "model"), "--corpus", str(corpus), "-o",
            str(tmp_path / "report.json")]
    if MUSICCAPS.exists():
        argv += ["--musiccaps", str(MUSICCAPS)]
    report = run_json(capsys, *argv)
    t2a = report["manifest_captions"]["text_to_audio"]["clip"]
    assert 0.0 <= t2a["r10"] <= 1.0 and t2a["candidates"] == 4
    assert "held_out" in report["paraphrases"] and "genre" in report["zero_shot"]
    assert "level1_agreement" in report["tokens"]
    if MUSICCAPS.exists():
        assert len(report["musiccaps"]) == 20 and len(report["musiccaps"][0]["top"]) == 3
    assert json.loads((tmp_path / "report.json").read_text())["clips"] == 4

    # training on after the fit makes the quantiser stale: export refuses it with --no-fit, else refits
    assert json.loads((run / "quantizer.json").read_text())["checkpoint_step"] == 4
    longer = save_yaml(tiny_training_config(steps=6), tmp_path / "longer.yaml")
    assert run_json(capsys, "mulan", "train", "--corpus", str(corpus), "--run-dir", str(run), "--config",
                    str(longer), "--no-progress", "--device", "cpu")["step"] == 6
    assert MuLan.from_run(run).quantizer is None  # not the quantiser of these weights
    assert main(["mulan", "export", str(run), "-o", str(tmp_path / "stale"), "--no-fit"]) == 1
    assert "fitted on step 4, its latest checkpoint is step 6" in capsys.readouterr().err
    run_json(capsys, "mulan", "export", str(run), "-o", str(tmp_path / "refit"))
    assert json.loads((run / "quantizer.json").read_text())["checkpoint_step"] == 6
    assert MuLan.from_pretrained(tmp_path / "refit").quantizer is not None
