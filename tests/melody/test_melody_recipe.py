"""Melody training: feature cache, aligned views, augmentation, evaluation, a short real run and the CLI path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.config import save_yaml
from musiclm.data.manifest import ClipRecord, read_manifest, write_manifest
from musiclm.melody.cli import main as melody_main
from musiclm.melody.config import (
    EncoderConfig,
    FeatureAugmentConfig,
    FrontendConfig,
    MelodyConfig,
    MelodyQuantizerConfig,
    MelodyTrainingConfig,
)
from musiclm.melody.evaluate import rank_trials, retrieval_report, retrieval_trials
from musiclm.melody.model import MelodyEmbedder
from musiclm.melody.pairs import TimeMap, read_pairs
from musiclm.melody.recipe import FeatureCache, MelodyRecipe, MelodyViews, augment_features, embed_cached_clips
from musiclm.train.config import OptimizerConfig, TrainConfig
from musiclm.train.engine import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000
NOTE = 0.25
SECONDS = 2.0
SCALE = (0, 2, 4, 5, 7, 9, 11)


def hz(pitch: float) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def render(tune: list[int], timbre: int, scale: float = 1.0, octave: int = 0, band: bool = False) -> np.ndarray:
    """A tune of quarter-second notes; timbres differ in their harmonics; ``band`` adds a low chord."""
    n = int(SECONDS * SR)
    out = np.zeros(n)
    for i, pitch in enumerate(tune):
        start, length = int(i * NOTE * scale * SR), int(NOTE * scale * SR)
        t = np.arange(min(length, n - start)) / SR
        if len(t) == 0:
            break
        f0 = hz(pitch + 12 * octave)
        harmonics = [(1.0,), (1.0, 0.5, 0.3, 0.2), (1.0, 0.0, 0.33, 0.0, 0.2)][timbre]
        tone = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(harmonics))
        out[start : start + len(t)] += tone * np.minimum(1.0, t / 0.01) * np.exp(-t * (1 + 3 * timbre))
    if band:
        t = np.arange(n) / SR
        out += 0.25 * sum(np.sin(2 * np.pi * hz(p) * t) for p in (48, 52, 55))
    return (0.4 * out / np.abs(out).max()).astype(np.float32)


def write_pair_set(folder: Path, melodies: int = 18, twins: int = 5, seed: int = 0) -> Path:
    """Melodies of 8 notes in C major, 3 versions each (pure, bright an octave up with a 5 % slower tempo, hollow
    over a chord); the first ``twins`` groups add a hard negative. Groups 0-11 train, 12-14 valid, 15- test."""
    rng = np.random.default_rng(seed)
    records = []
    for g in range(melodies):
        tune = [60 + 12 * int(rng.integers(0, 2)) + SCALE[int(rng.integers(7))] for _ in range(8)]
        tunes = [("a", tune)]
        if g < twins:
            tunes.append(("b", [60 + 12 * int(rng.integers(0, 2)) + SCALE[int(rng.integers(7))] for _ in range(8)]))
        split = "train" if g < 12 else "valid" if g < 15 else "test"
        for suffix, notes in tunes:
            melody = f"g{g:02d}-{suffix}"
            for k, (timbre, scale, octave, band) in enumerate([(0, 1.0, 0, False), (1, 1.05, 1, False),
                                                               (2, 1.0, 0, True)]):
                clip = f"{melody}-v{k}"
                save_audio(folder / "audio" / f"{clip}.flac", render(notes, timbre, scale, octave, band), SR)
                labels = {"melody_id": melody, "group_id": f"g{g:02d}", "version": k,
                          "kind": "arranged" if band else "bare", "key": "C", "mode": "major",
                          "twin": (f"g{g:02d}-b" if suffix == "a" else f"g{g:02d}-a") if g < twins else None,
                          "hard_negative": suffix == "b", "time_map": TimeMap(scale=scale, seconds=SECONDS).to_dict()}
                records.append(ClipRecord(id=clip, path=f"audio/{clip}.flac", seconds=SECONDS, sample_rate=SR,
                                          split=split, source="melody-pairs", piece_id=f"g{g:02d}", labels=labels))
    write_manifest(folder, records)
    return folder


def tiny_training(steps: int = 60) -> MelodyTrainingConfig:
    model = MelodyConfig(embed_dim=16, window_seconds=1.0, hop_seconds=0.6, min_seconds=0.25,
                         frontend=FrontendConfig(n_fft=2048, min_midi=48, octaves=4),
                         encoder=EncoderConfig(dim=32, layers=1, heads=2, ffn=64, patch_frames=5, dropout=0.0),
                         quantizer=MelodyQuantizerConfig(num_quantizers=3, codebook_size=8, kmeans_iters=10))
    return MelodyTrainingConfig(
        model=model,
        train=TrainConfig(max_steps=steps, batch_size=8, device="cpu", checkpoint_every=1000, eval_every=30,
                          sample_every=1000, log_every=1000, checkpoint_minutes=None, progress=False,
                          optimizer=OptimizerConfig(lr=3e-3, warmup_steps=5, weight_decay=0.0)),
        eval_melodies=20,
    )


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return write_pair_set(tmp_path_factory.mktemp("synthetic_pairs"))


@pytest.fixture(scope="module")
def trained(pairs_dir, tmp_path_factory):
    """A tiny model trained for 60 steps (and an untrained twin of it), both in eval mode."""
    torch.manual_seed(0)
    config = tiny_training(60)
    untrained = MelodyEmbedder(config.model).eval()
    run = tmp_path_factory.mktemp("melody_run")
    result = Trainer(MelodyRecipe(config, [pairs_dir]), config.train, run).fit()
    model = MelodyEmbedder(config.model)
    from musiclm.train.checkpoint import load_weights

    load_weights(model, Path(result.checkpoint) / "model-melody.safetensors")
    return config, run, result, model.eval(), untrained


# -------------------------------------------------------------------------------------------- the cache
def test_feature_cache_is_built_once_and_rebuilt_when_the_set_changes(tmp_path):
    folder = write_pair_set(tmp_path / "pairs", melodies=3, twins=0)
    frontend = tiny_training().model.frontend
    cache = FeatureCache(folder, frontend)
    stamp = cache.array_path.stat().st_mtime_ns
    assert FeatureCache(folder, frontend).array_path.stat().st_mtime_ns == stamp
    full = cache.full("g00-a-v0")
    assert full.shape == (48, int(SECONDS * SR) // 480 + 1)
    crop = cache.crop("g00-a-v0", -10, 50)
    assert (crop[:, :10] == frontend.floor_db).all() and np.allclose(crop[:, 10:], full[:, :40], atol=0.1)
    assert (cache.crop("g00-a-v0", full.shape[1] - 5, 50)[:, 5:] == frontend.floor_db).all()
    records = read_manifest(folder)
    write_manifest(folder, records[:-1])
    assert FeatureCache(folder, frontend).array_path.stat().st_mtime_ns != stamp
    other = FeatureCache(folder, FrontendConfig(n_fft=1024, min_midi=48, octaves=4))
    assert other.array_path != cache.array_path


# -------------------------------------------------------------------------------------------- the views
def test_items_are_a_melody_and_its_partner_deterministic_per_epoch(pairs_dir):
    config = tiny_training()
    config.twin_prob = 1.0
    views = MelodyViews([pairs_dir], config, "train")
    assert len(views) == 12 + 5  # train groups, five with a hard negative
    item = views[0]
    assert item["features"].shape == (4, 48, 50) and item["features"].dtype == torch.float32
    melody, partner = views.melody_ids[0], views.melody_ids[int(item["labels"][2])]
    assert item["labels"][:2].tolist() == [0, 0] and partner == views.pairs.twins[melody]
    assert item["items"].tolist() == [0] * 4
    assert torch.equal(views[0]["features"], item["features"])
    views.set_epoch(1)
    assert not torch.equal(views[0]["features"], item["features"])
    config.twin_prob, config.same_key_prob = 0.0, 0.0
    others = MelodyViews([pairs_dir], config, "train")
    partners = {others.partner(others.melody_ids[3], np.random.default_rng(i)) for i in range(30)}
    assert others.melody_ids[3] not in partners and len(partners) > 5


def test_crops_of_two_versions_are_aligned_on_the_tune(pairs_dir):
    config = tiny_training()
    config.crop_jitter_seconds, config.tail_crop_prob = 0.0, 0.0
    views = MelodyViews([pairs_dir], config, "train", augment=False)
    melody = views.melody_ids[5]
    pure, slow = views.clip(melody, 0), views.clip(melody, 1)  # version 1 plays 5 % slower
    cache = views.cache_for(pure)
    onset = 0.75
    a = cache.crop(pure.id, int(round(onset * 50)), 50)
    aligned = cache.crop(slow.id, int(round(float(slow.time_map.clip_time(onset)) * 50)), 50)
    assert float(slow.time_map.clip_time(onset)) == pytest.approx(onset * 1.05)
    pitch = lambda x: x[:, :8].argmax(0) % 12  # noqa: E731  (pitch class: version 1 is an octave up)
    assert np.mean(pitch(a) == pitch(aligned)) >= 0.75


def test_augmentation_is_deterministic_and_mild():
    config = FeatureAugmentConfig(eq_prob=1.0, noise_prob=1.0, time_mask_prob=1.0)
    frontend = tiny_training().model.frontend
    rng = np.random.default_rng(0)
    db = rng.normal(-40, 10, size=(48, 50)).astype(np.float32)
    a = augment_features(db, np.random.default_rng(1), config, frontend)
    b = augment_features(db, np.random.default_rng(1), config, frontend)
    assert np.array_equal(a, b) and a.shape == db.shape and np.isfinite(a).all()
    assert (a == frontend.floor_db).all(axis=0).any()  # a masked frame
    kept = ~(a == frontend.floor_db).all(axis=0)
    assert np.corrcoef(a[:, kept].ravel(), db[:, kept].ravel())[0, 1] > 0.5


# ---------------------------------------------------------------------------------------------- metrics
def test_retrieval_trials_rank_one_version_against_other_melodies():
    melody_of = [m for m in "abcdef" for _ in range(2)]
    trials = retrieval_trials(melody_of, candidates=4, seed=0)
    assert len(trials) == 6
    for query, target, cands in trials:
        assert melody_of[query] == melody_of[target] and query != target and cands[0] == target
        assert len(cands) == 4 and len({melody_of[c] for c in cands}) == 4
    sim = torch.eye(12)
    for query, target, _ in trials:
        sim[query, target] = 0.9
    assert (rank_trials(sim, trials) == 0).all()
    sim.fill_(0.5)  # ties count against the target
    assert (rank_trials(sim, trials) == 3).all()


def test_retrieval_report_on_perfect_and_random_embeddings():
    melody_of = [m for m in range(30) for _ in range(3)]
    perfect = torch.nn.functional.normalize(torch.randn(30, 16), dim=1).repeat_interleave(3, 0)[:, None, :]
    mask = torch.ones(90, 1, dtype=torch.bool)
    report = retrieval_report(perfect, mask, [str(m) for m in melody_of], candidates=10)
    assert report["top1"] == 1.0 and report["same_melody_distance"] == pytest.approx(0.0, abs=1e-5)
    noise = torch.nn.functional.normalize(torch.randn(90, 1, 16), dim=-1)
    report = retrieval_report(noise, mask, [str(m) for m in melody_of], candidates=10, seed=1)
    assert report["top1"] < 0.5 and 0.7 < report["invariance_ratio"] < 1.3


# ----------------------------------------------------------------------------------------------- training
def test_training_makes_versions_of_a_melody_closer_than_other_melodies(trained, pairs_dir):
    config, run, result, model, untrained = trained
    assert result.step == 60 and (run / "checkpoints").exists()
    assert result.last_logs["triplet/loss"] < 0.25
    pairs = read_pairs(pairs_dir, "train")
    caches = {Path(pairs_dir): FeatureCache(pairs_dir, config.model.frontend)}
    indices = list(range(len(pairs.clips)))
    melody_of = [c.melody_id for c in pairs.clips]
    reports = []
    for net in (untrained, model):
        emb, mask = embed_cached_clips(net, pairs, caches, indices)
        reports.append(retrieval_report(emb, mask, melody_of, candidates=100, twins=pairs.twins))
    before, after = reports
    # timbre (and tempo, octave, accompaniment) changes move an embedding less than a change of melody
    assert after["invariance_ratio"] < 0.75 and after["invariance_ratio"] < before["invariance_ratio"] - 0.1
    assert after["top1"] >= 0.7 and after["top1"] > before["top1"]
    assert after["twin_accuracy"] >= 0.6


def test_the_evaluation_hook_ranks_held_out_melodies(trained, pairs_dir):
    config, _, _, model, _ = trained
    metrics = MelodyRecipe(config, [pairs_dir]).evaluate({"melody": model}, step=60)
    assert set(metrics) >= {"top1", "top5", "invariance_ratio"}
    assert metrics["top5"] == 1.0  # only 3 valid melodies


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_train_fit_export_eval_and_embed(pairs_dir, tmp_path, capsys):
    config = tiny_training(20)
    config_path = save_yaml(config, tmp_path / "melody.yaml")
    run, model_dir = tmp_path / "run", tmp_path / "model"

    def call(*argv: str) -> dict:
        capsys.readouterr()
        assert melody_main(list(argv)) == 0
        return json.loads(capsys.readouterr().out)

    trained = call("train", "--corpus", str(pairs_dir), "--run-dir", str(run), "--config", str(config_path),
                   "--threads", "1", "--no-progress", "--json")
    assert trained["step"] == 20 and trained["reason"] == "finished"
    fit = call("fit-quantizer", str(run), "--threads", "1", "--json")
    assert fit["fit"]["num_quantizers"] == 3 and fit["fit"]["codebook_size"] == 8 and "held_out" in fit
    exported = call("export", str(run), "-o", str(model_dir), "--json")
    assert exported["levels"] == 3 and exported["window_seconds"] == 1.0 and len(exported["fingerprint"]) == 16
    report = call("eval", "--model", str(model_dir), "--pairs", str(pairs_dir), "--json")
    assert report["melodies"] == 3 and report["candidates"] == 3 and "note" in report
    assert 0.0 <= report["top1"] <= 1.0 and "chroma_baseline" in report and "invariance_ratio" in report
    clip = next(pairs_dir.glob("audio/g15-a-v0.flac"))
    embedded = call("embed", str(clip), "--model", str(model_dir), "--json")
    assert embedded["windows"] == 3 and len(embedded["tokens"]) == 3 and len(embedded["tokens"][0]) == 3
    assert len(embedded["embeddings"]) == 3 and len(embedded["embeddings"][0]) == 16
    out = tmp_path / "emb.npy"
    call("embed", str(clip), "--model", str(model_dir), "-o", str(out), "--json")
    assert np.load(out, allow_pickle=False).shape == (3, 16)

    # training on makes the fitted quantiser stale: export --no-fit refuses it, export refits
    longer = save_yaml(tiny_training(22), tmp_path / "longer.yaml")
    call("train", "--corpus", str(pairs_dir), "--run-dir", str(run), "--config", str(longer), "--threads", "1",
         "--no-progress", "--json")
    capsys.readouterr()
    assert melody_main(["export", str(run), "-o", str(tmp_path / "stale"), "--no-fit"]) == 1
    assert "fitted on step 20, its latest checkpoint is step 22" in capsys.readouterr().err
    call("export", str(run), "-o", str(tmp_path / "refit"), "--json")
    assert json.loads((run / "quantizer.json").read_text())["checkpoint_step"] == 22


def test_cli_errors_name_the_cause(pairs_dir, tmp_path, capsys):
    bad = tmp_path / "hum.wav"
    bad.write_bytes(b"not audio at all")
    assert melody_main(["embed", str(bad), "--model", str(tmp_path / "nowhere")]) == 1
    assert "no melody model" in capsys.readouterr().err
    assert melody_main(["eval", "--model", str(tmp_path), "--pairs", str(pairs_dir)]) == 1
    assert "not a melody model folder" in capsys.readouterr().err
    assert melody_main(["fit-quantizer", str(tmp_path)]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err
    assert melody_main(["pairs", "--out", str(tmp_path / "p"), "--melodies", "0"]) == 1
    assert "--melodies" in capsys.readouterr().err
