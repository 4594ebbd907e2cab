"""Evaluation metrics on cases with known answers, frame labels from annotations, and the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from semantic_testkit import make_corpus, tiny_tokenizer

from musiclm.semantic.evaluate import (
    LABELS,
    EvalClip,
    LogMelKMeans,
    beat_positions,
    codec_level0,
    evaluate_sources,
    evaluate_tokenizer,
    frame_labels,
    lead_family,
    load_eval_clips,
    markdown_table,
    nmi,
    pnmi,
    purity,
    random_tokens,
    span_values,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tokens_equal_to_the_label_give_nmi_one_and_purity_one():
    labels = np.random.default_rng(0).integers(0, 12, 5000)
    assert nmi(labels, labels) == pytest.approx(1.0)
    assert nmi((labels * 7 + 3) % 12 + 100, labels) == pytest.approx(1.0)  # any relabelling
    assert purity(labels, labels) == 1.0 and pnmi(labels, labels) == pytest.approx(1.0)


def test_random_tokens_give_nmi_near_zero():
    rng = np.random.default_rng(1)
    labels, tokens = rng.integers(0, 12, 20_000), rng.integers(0, 12, 20_000)
    assert nmi(tokens, labels) < 0.01 and pnmi(tokens, labels) < 0.01
    assert purity(tokens, labels) < 0.15
    constant = np.zeros(20_000, dtype=int)
    assert nmi(constant, labels) == pytest.approx(0.0, abs=1e-9)


def test_finer_tokens_keep_purity_and_unknown_labels_are_ignored():
    labels = np.repeat(np.arange(4), 100)
    tokens = np.arange(400) // 50  # each label split into 2 tokens
    assert purity(tokens, labels) == 1.0 and pnmi(tokens, labels) == pytest.approx(1.0)
    assert 0.5 < nmi(tokens, labels) < 1.0
    labels_with_gaps = labels.copy()
    labels_with_gaps[::2] = -1
    assert purity(tokens, labels_with_gaps) == 1.0
    assert np.isnan(purity(tokens, np.full(400, -1)))


def test_frame_labels_from_annotations():
    times = (np.arange(10) + 0.5) / 25  # 0.02, 0.06, ..., 0.38 s
    melody = span_values([[0.0, 0.09, 60], [0.2, 0.29, 67]], times)
    assert melody.tolist() == [60, 60, -1, -1, -1, 67, 67, -1, -1, -1]
    beats = beat_positions([0.0, 0.16, 0.32], times)
    assert beats.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, -1, -1]
    assert beat_positions([0.5], times).tolist() == [-1] * 10
    labels = {"parts": [{"name": "drums", "program": 0, "is_drum": True, "role": "drums"},
                        {"name": "flute", "program": 73, "is_drum": False, "role": "lead"}]}
    assert lead_family(labels) == 9 and lead_family({"parts": []}) == -1
    ann = {"beats": [0.0, 0.2], "melody": [[0.0, 0.2, 61]], "chords": [[0.0, 0.4, 5, "maj"]]}
    frames = frame_labels(ann, labels, 10)
    assert set(frames) == set(LABELS)
    assert frames["melody_pc"].tolist()[:5] == [1] * 5 and frames["melody_pc"][6] == -1
    assert frames["chord_root"].tolist() == [5] * 10
    assert frames["lead_family"].tolist()[:5] == [9] * 5 and frames["lead_family"][6] == -1


def test_evaluate_sources_ranks_an_oracle_above_random():
    rng = np.random.default_rng(0)
    clips = []
    for i in range(6):
        pc = rng.integers(0, 12, 50)
        labels = {"melody_pc": pc, "chord_root": np.full(50, i % 3), "beat_pos": np.arange(50) % 4,
                  "lead_family": np.full(50, i % 2)}
        clips.append(EvalClip(f"c{i}", np.zeros(50 * 960, dtype=np.float32) + i, labels))
    lookup = {clip.wav[0]: clip.labels["melody_pc"] for clip in clips}
    results = evaluate_sources(clips, {"oracle": lambda wav: lookup[wav[0]], "random": random_tokens(12, seed=99)})
    assert results["oracle"]["melody_pc"]["nmi"] == pytest.approx(1.0)
    assert results["random"]["melody_pc"]["nmi"] < 0.1
    assert results["oracle"]["musical_nmi"] > results["random"]["musical_nmi"]
    table = markdown_table(results, ["a note"])
    assert table.splitlines()[0].startswith("| tokens |") and "| oracle | 12 |" in table and "a note" in table
    with pytest.raises(Exception, match="expected 50"):
        evaluate_sources(clips, {"short": lambda wav: np.zeros(3, dtype=int)})


def test_evaluate_tokenizer_on_an_annotated_corpus(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", clips=9, seconds=1.5)
    clips = load_eval_clips([corpus])
    assert len(clips) == 3 and len(clips[0].labels["melody_pc"]) == 38
    baseline = LogMelKMeans([c.wav for c in clips], 4)
    assert baseline(clips[0].wav).shape == (38,)
    report = evaluate_tokenizer(tiny_tokenizer(clusters=8), [corpus], baseline_clips=4)
    assert report["clips"] == 3
    names = list(report["results"])
    assert names[0].startswith("semantic (layer 2, K=8)") and any(n.startswith("log-mel") for n in names)
    assert "Baseline (b) left out" in report["table"]
    for metrics in report["results"].values():
        assert 0.0 <= metrics["melody_pc"]["nmi"] <= 1.0


def test_codec_baseline_takes_level_zero_every_other_frame():
    class FakeCodec:
        codebook_size = 1024

        def encode(self, wav, sample_rate=None, levels=None):
            frames = -(-len(wav) // 480)
            return torch.arange(frames * 2).view(1, 2, frames)[:, :levels]

    tokens = codec_level0(FakeCodec())(np.zeros(24_000 + 1, dtype=np.float32))
    assert tokens.tolist() == list(range(0, 51, 2)) and len(tokens) == 26 == -(-(24_000 + 1) // 960)


def test_codec_baseline_with_a_tiny_random_codec():
    api = pytest.importorskip("musiclm.codec.api")
    from musiclm.codec.config import CodecConfig
    from musiclm.codec.model import SoundStream

    torch.manual_seed(0)
    config = CodecConfig(encoder_channels=4, decoder_channels=4, max_channels=16, latent_dim=8, num_quantizers=2,
                         coarse_levels=1, codebook_size=16, kmeans_init=False)
    codec = api.Codec(SoundStream(config))
    wav = (np.random.default_rng(0).standard_normal(24_000 + 100) * 0.1).astype(np.float32)
    tokens = codec_level0(codec)(wav)
    assert len(tokens) == -(-len(wav) // 960) and int(tokens.max()) < 16
