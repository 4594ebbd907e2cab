"""Locked-audio text tuning: only the text side moves, the audio side (and so tokens and stores) does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mulan_testing import tiny_training_config, write_tiny_corpus

from musiclm.cli import main
from musiclm.data.manifest import read_manifest
from musiclm.errors import ConfigError
from musiclm.mulan.api import MuLan
from musiclm.mulan.eval import retrieval_metrics
from musiclm.mulan.quantizer import fit_quantizer
from musiclm.mulan.recipe import train_mulan
from musiclm.mulan.search import CACHE_DIR
from musiclm.mulan.text_tuning import (
    TextTuningConfig,
    _fresh,
    backbone_features,
    build_tuning_set,
    clip_text_views,
    tune_text,
    with_projection,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("tune_text_corpus"), per_style=5)


@pytest.fixture(scope="module")
def mulan(corpus, tmp_path_factory) -> MuLan:
    """A tiny MuLan trained briefly, so that its audio embeddings tell the four styles apart."""
    config = tiny_training_config(steps=40)
    config.eval_clips = 0
    run = tmp_path_factory.mktemp("tune_text_run")
    train_mulan(config, [corpus], run)
    model = MuLan.from_run(run, with_quantizer=False)
    audio = model.embed_files([corpus / r.path for r in read_manifest(corpus)])
    quantizer, _ = fit_quantizer(audio, 12, 4, min_points_per_code=1, iters=10)
    return model.with_quantizer(quantizer)


def small_config(**overrides) -> TextTuningConfig:
    settings = dict(steps=60, batch_size=8, lr=3e-3, paraphrases=2, aspect_views=1, partial_views=1, eval_clips=4)
    return TextTuningConfig(**{**settings, **overrides})


def style_recall(model: MuLan, corpus: Path) -> float:
    """How often a training caption's closest clip is one of its style."""
    records = read_manifest(corpus, "train")
    audio = model.embed_files([corpus / r.path for r in records])
    styles = [r.labels["genre"] for r in records]
    same = torch.tensor([[a == b for b in styles] for a in styles])
    return retrieval_metrics(model.embed_text([r.caption for r in records]) @ audio.t(), same)["r1"]


def test_views_are_distinct_and_deterministic(corpus):
    record = read_manifest(corpus, "train")[0]
    config = small_config(paraphrases=3)
    views = clip_text_views(record, config)
    assert views == clip_text_views(record, config)
    assert views[0] == record.caption and len(views) == len(set(views)) and len(views) >= 3
    assert clip_text_views(record, small_config(paraphrases=0, aspect_views=0, partial_views=0)) == [record.caption]


def test_only_the_text_side_changes_and_retrieval_improves(mulan, corpus):
    tuned, report = tune_text(mulan, [corpus], small_config())
    assert tuned.token_fingerprint() == mulan.token_fingerprint() == report["token_fingerprint"]
    assert tuned.fingerprint() != mulan.fingerprint()
    for (name, a), (_, b) in zip(mulan.model.audio.state_dict().items(), tuned.model.audio.state_dict().items()):
        assert torch.equal(a, b), name
    wav = _load(corpus, "test")
    assert torch.equal(mulan.embed_audio(wav), tuned.embed_audio(wav))
    assert torch.equal(mulan.tokens(mulan.embed_audio(wav)), tuned.tokens(tuned.embed_audio(wav)))
    text = ["a calm piano piece"]
    assert not torch.allclose(mulan.embed_text(text), tuned.embed_text(text))
    # a fresh text projection knows nothing; tuned, it matches training captions to their style's clips
    untrained = with_projection(mulan, _fresh(mulan.model.text.projection, 1), mulan.model.logit_scale)
    assert untrained.token_fingerprint() == mulan.token_fingerprint()
    assert style_recall(tuned, corpus) >= 0.75 > style_recall(untrained, corpus) + 0.25
    assert report["clips"] == 12 and report["views"] > report["clips"]
    assert report["loss"][-1] < report["loss"][0]
    assert set(report["valid_after"]) >= {"caption_r10", "seen_phrasing_r10", "held_out_phrasing_r10", "gap_points"}


def _load(corpus: Path, split: str):
    from musiclm.audio import load_audio

    record = read_manifest(corpus, split)[0]
    return load_audio(corpus / record.path, 24_000)[0]


def test_tuned_model_saves_and_loads_with_the_same_tokens(mulan, corpus, tmp_path):
    tuned, _ = tune_text(mulan, [corpus], small_config(steps=10, eval_clips=0))
    loaded = MuLan.from_pretrained(tuned.save(tmp_path / "tuned"))
    text = ["an energetic techno track", "a dreamy ambient pad"]
    assert torch.equal(loaded.tokens(loaded.embed_text(text)), tuned.tokens(tuned.embed_text(text)))
    assert loaded.token_fingerprint() == mulan.token_fingerprint()


def test_same_config_same_result_and_feature_cache(mulan, corpus):
    config = small_config(steps=15, eval_clips=0, start="current")
    a, _ = tune_text(mulan, [corpus], config)
    caches = list((corpus / CACHE_DIR).glob("text-features-*.npy"))
    assert len(caches) == 1
    b, _ = tune_text(mulan, [corpus], config)
    assert torch.equal(a.embed_text(["a loud rock song"]), b.embed_text(["a loud rock song"]))
    data = build_tuning_set(mulan, [corpus], config)
    assert data.features.shape[0] == int(data.counts.sum()) and len(data.audio) == 12
    views = [v for r in read_manifest(corpus, "train") for v in clip_text_views(r, config)]
    fresh = backbone_features(mulan, views, cache_folder=None)
    assert torch.allclose(fresh, data.features, atol=2e-3)  # the cache holds fp16 copies


def test_sampling_picks_distinct_clips_and_their_own_views(mulan, corpus):
    data = build_tuning_set(mulan, [corpus], small_config(eval_clips=0))
    clips, views = data.sample(8, torch.Generator().manual_seed(0))
    assert len(set(clips.tolist())) == 8
    assert bool(((views >= data.offsets[clips]) & (views < data.offsets[clips] + data.counts[clips])).all())


def test_bad_settings_are_config_errors(mulan, corpus):
    for bad in (dict(steps=0), dict(batch_size=1), dict(feature_noise=-1.0), dict(start="later")):
        with pytest.raises(ConfigError):
            tune_text(mulan, [corpus], small_config(**bad))


def test_cli_writes_a_model_and_its_report(capsys, mulan, corpus, tmp_path):
    model_dir = mulan.save(tmp_path / "model")
    code = main(["mulan", "tune-text", "--model", str(model_dir), "--corpus", str(corpus), "-o",
                 str(tmp_path / "tuned"), "--set", "steps=5", "--set", "batch_size=4", "--set", "eval_clips=0",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["token_fingerprint"] == mulan.token_fingerprint()
    assert MuLan.from_pretrained(tmp_path / "tuned").fingerprint() == result["fingerprint"]
    assert json.loads((tmp_path / "tuned" / "tune-text.json").read_text())["config"]["steps"] == 5
    assert main(["mulan", "tune-text", "--model", str(model_dir), "--corpus", str(corpus), "-o",
                 str(tmp_path / "bad"), "--set", "nonsense=1"]) != 0
