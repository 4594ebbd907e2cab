"""The evaluation tagger: labels and vocabularies, shapes, save/load identity, training on a tiny corpus, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.config import load_yaml, save_yaml
from musiclm.data.manifest import ClipRecord, read_manifest, write_manifest
from musiclm.data.piece import ClipLabels, Part
from musiclm.eval.divergence import kld_per_head
from musiclm.eval.embeddings import AudioEmbedder, TaggerEmbedder
from musiclm.eval.tagger import (
    CONFIG_FILE,
    HEADS,
    Tagger,
    TaggerConfig,
    TaggerModel,
    TaggerVocab,
    build_vocab,
    clip_tags,
    encode_tags,
    tagger_loss,
)
from musiclm.eval.tagger_recipe import (
    TaggerClips,
    TaggerTrainingConfig,
    evaluate_tagger,
    head_metrics,
    run_config,
    train_tagger,
)
from musiclm.train.checkpoint import CheckpointError
from musiclm.train.config import OptimizerConfig, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000
SECONDS = 2.0


def style_audio(style: str, rng: np.random.Generator) -> np.ndarray:
    """Two seconds of one of three audibly different styles."""
    t = np.arange(int(SECONDS * SR)) / SR
    if style == "piano":
        f0 = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        out = sum(0.5**k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(4)) * np.exp(-(t % 0.5) * 6)
    elif style == "techno":
        out = np.sin(2 * np.pi * 55 * t) * np.exp(-(t % 0.47) * 30) + rng.standard_normal(t.size) * 0.2 * (
            ((t + 0.23) % 0.47) < 0.03)
    else:  # ambient
        f0 = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        out = sum(np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 6)) for r in (1.0, 1.003, 1.5, 2.01))
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


STYLES = {
    "piano": dict(parts=[Part("acoustic grand piano", 0, False, "lead")], bpm=72.0, mode="major",
                  mood=["calm", "peaceful"]),
    "techno": dict(parts=[Part("synth bass", 38, False, "bass"), Part("drum kit", 0, True, "drums")], bpm=128.0,
                   mode="minor", mood=["energetic", "driving"]),
    "ambient": dict(parts=[Part("warm pad", 89, False, "pad"), Part("choir", 52, False, "pad")], bpm=55.0,
                    mode="dorian", mood=["dreamy", "calm", "peaceful"]),
}


def write_corpus(folder: Path, per_style: int = 6, seed: int = 0) -> Path:
    """Per style: clip 0 test, clip 1 valid, the rest train; plus one unlabelled train clip."""
    rng = np.random.default_rng(seed)
    records = []
    for style, facts in STYLES.items():
        for i in range(per_style):
            labels = ClipLabels(genre=style, key="C", meter="4/4", energy="low", dynamics="soft", texture="sparse",
                                **facts)
            split = "test" if i == 0 else "valid" if i == 1 else "train"
            path = f"audio/{style}-{i}.wav"
            save_audio(folder / path, style_audio(style, rng), SR)
            records.append(ClipRecord(id=f"{style}-{i}", path=path, seconds=SECONDS, sample_rate=SR, split=split,
                                      source="composer", piece_id=f"{style}-{i}", labels=labels.to_dict()))
    save_audio(folder / "audio/unlabelled.wav", style_audio("piano", rng), SR)
    records.append(ClipRecord(id="unlabelled", path="audio/unlabelled.wav", seconds=SECONDS, sample_rate=SR,
                              split="train", source="recording"))
    write_manifest(folder, records)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("tagger-corpus"))


def tiny_model_config(vocab: TaggerVocab) -> TaggerConfig:
    return TaggerConfig(n_fft=512, hop_length=480, n_mels=32, channels=(4, 8), embed_dim=16, dropout=0.0,
                        clip_seconds=SECONDS, vocab=vocab)


def tiny_training_config(steps: int = 4) -> TaggerTrainingConfig:
    base = tiny_model_config(TaggerVocab())
    return TaggerTrainingConfig(
        model=base, crop_seconds=1.5, eval_clips=3,
        train=TrainConfig(max_steps=steps, batch_size=6, device="cpu", checkpoint_every=1000, eval_every=2,
                          sample_every=1000, log_every=1000, checkpoint_minutes=None, progress=False,
                          optimizer=OptimizerConfig(lr=3e-3, warmup_steps=1, weight_decay=0.0)))


@pytest.fixture(scope="module")
def vocab(corpus) -> TaggerVocab:
    return build_vocab(r.labels for r in read_manifest(corpus, "train"))


# ------------------------------------------------------------------------------------------------ labels
def test_clip_tags_and_vocabulary(vocab):
    techno = ClipLabels(genre="techno", key="A", meter="4/4", energy="high", dynamics="loud", texture="dense",
                        **STYLES["techno"]).to_dict()
    tags = clip_tags(techno)
    assert tags == {"genre": ["techno"], "instruments": ["bass", "drums"], "mood": ["driving", "energetic"],
                    "tempo": ["upbeat"], "mode": ["minor"]}
    assert clip_tags({"genre": "x", "mode": "blues", "bpm": "fast"})["mode"] == []  # no major/minor family
    assert clip_tags(None) == {h: [] for h in HEADS}
    assert vocab.genre == ["ambient", "piano", "techno"]
    assert vocab.instruments == ["bass", "drums", "piano", "synth_pad", "voice"]
    assert vocab.tempo == ["very_slow", "slow", "upbeat"]  # band order, not alphabetical
    assert vocab.mode == ["major", "minor"]  # dorian counts as minor


def test_encode_tags(vocab):
    tags = {"genre": ["piano"], "instruments": ["piano", "drums"], "mood": ["calm", "peaceful"], "tempo": [],
            "mode": ["major"]}
    targets = encode_tags(tags, vocab)
    assert targets["genre"].tolist() == [0.0, 1.0, 0.0]
    assert targets["instruments"].sum() == 2 and targets["instruments"][vocab.instruments.index("drums")] == 1
    mood = targets["mood"]
    assert mood.sum() == pytest.approx(1.0) and mood[vocab.mood.index("calm")] == pytest.approx(0.5)
    assert targets["tempo_mask"] == 0 and targets["genre_mask"] == 1
    # Decoding the targets gives the tags back.
    for head in ("genre", "mode"):
        assert vocab.head(head)[int(targets[head].argmax())] == tags[head][0]


def test_vocabulary_round_trip_through_yaml(vocab, tmp_path):
    config = tiny_model_config(vocab)
    save_yaml(config, tmp_path / "config.yaml")
    assert load_yaml(TaggerConfig, tmp_path / "config.yaml") == config


# -------------------------------------------------------------------------------------------------- model
def test_shapes_and_probabilities(vocab):
    torch.manual_seed(0)
    model = TaggerModel(tiny_model_config(vocab)).eval()
    logits = model(torch.randn(3, int(SECONDS * SR)) * 0.1)
    assert {h: tuple(x.shape) for h, x in logits.items()} == {h: (3, n) for h, n in vocab.sizes().items()}
    tagger = Tagger(model)
    rng = np.random.default_rng(1)
    wavs = [style_audio("piano", rng), style_audio("techno", rng)[:5000], np.tile(style_audio("ambient", rng), 3)]
    probs = tagger.predict(wavs)
    for head, p in probs.items():
        assert p.shape == (3, len(vocab.head(head)))
        if head != "instruments":
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert ((probs["instruments"] > 0) & (probs["instruments"] < 1)).all()
    assert tagger.embed(wavs).shape == (3, 16)
    assert tagger.head_kinds["instruments"] == "multilabel" and tagger.head_kinds["genre"] == "multiclass"
    # A 16 kHz copy is resampled to the model's rate first.
    from musiclm.audio import resample

    np.testing.assert_allclose(tagger.predict([resample(wavs[0], SR, 16_000)], sr=16_000)["genre"],
                               probs["genre"][:1], atol=0.05)
    assert isinstance(TaggerEmbedder(tagger), AudioEmbedder)
    assert TaggerEmbedder(tagger).embed(wavs, SR).shape == (3, 16)
    kl = kld_per_head(probs, probs, tagger.head_kinds)
    assert kl["mean"] == pytest.approx(0.0, abs=1e-6)


def test_save_load_identity(vocab, tmp_path):
    torch.manual_seed(1)
    tagger = Tagger(TaggerModel(tiny_model_config(vocab)))
    folder = tagger.save(tmp_path / "tagger")
    loaded = Tagger.from_pretrained(folder)
    assert loaded.vocab == vocab
    wavs = [style_audio(s, np.random.default_rng(2)) for s in STYLES]
    for head, p in tagger.predict(wavs).items():
        np.testing.assert_array_equal(p, loaded.predict(wavs)[head])
    np.testing.assert_array_equal(tagger.embed(wavs), loaded.embed(wavs))
    (folder / CONFIG_FILE).write_text((folder / CONFIG_FILE).read_text().replace("embed_dim: 16", "embed_dim: 8"))
    with pytest.raises(CheckpointError, match="does not fit"):
        Tagger.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="not a tagger"):
        Tagger.from_pretrained(tmp_path)


def test_head_metrics(vocab):
    tags = [{"genre": ["piano"], "mood": ["calm", "peaceful"], "instruments": ["piano"]},
            {"genre": ["techno"], "mood": ["energetic"], "instruments": ["bass", "drums"]},
            {"genre": ["techno"], "mood": [], "instruments": ["drums"]}]
    probs = {"genre": np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]]),
             "mood": np.eye(len(vocab.mood))[[vocab.mood.index("peaceful"), vocab.mood.index("calm"), 0]],
             "instruments": np.array([[0, 0, 0.9, 0, 0], [0.8, 0.7, 0.1, 0, 0], [0.2, 0.6, 0, 0, 0]])}
    scores = head_metrics(probs, tags, vocab)
    assert scores["genre"]["accuracy"] == pytest.approx(2 / 3)
    assert scores["genre"]["majority_baseline"] == pytest.approx(2 / 3)
    assert scores["mood"]["accuracy"] == pytest.approx(0.5) and scores["mood"]["clips"] == 2
    assert scores["instruments"]["mAP"] == pytest.approx(1.0)
    assert scores["instruments"]["micro_f1"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- training
def test_a_few_steps_reduce_the_loss(corpus, vocab):
    config = tiny_training_config()
    config.model = tiny_model_config(vocab)
    dataset = TaggerClips([corpus], config)
    assert len(dataset) == 12  # the unlabelled clip is left out
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    torch.manual_seed(0)
    model = TaggerModel(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, logs = tagger_loss(model(batch["wav"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert set(logs) == set(HEADS)
    assert losses[-1] < 0.6 * losses[0]


def test_training_run_export_and_eval(corpus, tmp_path):
    run = tmp_path / "run"
    result = train_tagger(tiny_training_config(steps=4), [corpus], run)
    assert result.step == 4 and result.checkpoint is not None
    config = run_config(run)
    assert config.model.vocab.genre == ["ambient", "piano", "techno"]
    tagger = Tagger.from_run(run)
    report = evaluate_tagger(tagger, corpus, split="test")
    assert report["clips"] == 3
    assert set(report["heads"]) == set(HEADS)
    assert 0.0 <= report["heads"]["genre"]["accuracy"] <= 1.0 and report["heads"]["genre"]["clips"] == 3
    # Resuming keeps going from the checkpoint.
    assert train_tagger(tiny_training_config(steps=6), [corpus], run).step == 6


def test_cli(corpus, tmp_path, capsys):
    from musiclm.eval import tagger_cli

    parser = argparse.ArgumentParser()
    tagger_cli.register(parser.add_subparsers(dest="command"))
    config_file = save_yaml(tiny_training_config(steps=3), tmp_path / "tiny.yaml")
    run, model = tmp_path / "run", tmp_path / "model"

    def call(*argv: str) -> dict:
        args = parser.parse_args(list(argv))
        args.handler(args)
        return json.loads(capsys.readouterr().out)

    trained = call("tagger", "train", "--corpus", str(corpus), "--run-dir", str(run), "--config", str(config_file),
                   "--threads", "1", "--json")
    assert trained["step"] == 3
    exported = call("tagger", "export", str(run), "-o", str(model), "--json")
    assert exported["classes"]["genre"] == 3 and (model / CONFIG_FILE).exists()
    report = call("tagger", "eval", str(model), "--corpus", str(corpus), "--split", "valid", "--json")
    assert report["clips"] == 3 and "accuracy" in report["heads"]["genre"]
    tags = call("tagger", "tag", str(corpus / "audio/piano-0.wav"), "--model", str(model), "--top", "2", "--json")
    assert len(tags["genre"]) == 2 and tags["genre"][0]["tag"] in ("ambient", "piano", "techno")
