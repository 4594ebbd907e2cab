"""Iteration-0/1 targets: 25 Hz hand-made features, k-means codebooks, save/load, teacher features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from semantic_testkit import SR, tiny_model_config

from musiclm.semantic.config import TargetConfig
from musiclm.semantic.model import SemanticModel, truncate
from musiclm.semantic.targets import (
    Codebook,
    FrameFeatures,
    TargetError,
    TargetSet,
    fit_codebook,
    fit_targets,
    nearest_centroid,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (0.3 * torch.sin(2 * torch.pi * freq * t)).float()


def test_frame_features_shapes_and_meaning():
    feats = FrameFeatures()(tone(440.0, 1.0 + 5 / SR)[None], ["chroma", "onset", "mfcc", "logmel"])
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "chroma": (1, 26, 12), "onset": (1, 26, 16), "mfcc": (1, 26, 20), "logmel": (1, 26, 128)}
    chroma = feats["chroma"][0, 5:20]
    assert bool((chroma.argmax(-1) == 9).all())  # A
    silent = FrameFeatures()(torch.zeros(1, SR), ["chroma"])["chroma"]
    assert float(silent.abs().max()) < 1e-3  # silence has no pitch class
    click = torch.zeros(1, SR)
    click[0, SR // 2 : SR // 2 + 200] = 0.5
    onset = FrameFeatures()(click, ["onset"])["onset"][0].sum(-1)
    # The click at 0.5 s starts frame 12 (0.48-0.52 s); 85 ms analysis windows see it from the end of frame 11.
    assert int(onset.argmax()) in (11, 12) and float(onset[:10].abs().max()) == 0.0
    with pytest.raises(TargetError, match="unknown"):
        FrameFeatures()(click, ["nonsense"])


def test_nearest_centroid_and_codebook_standardisation():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.tensor([[[1.0, 1.0], [9.0, -1.0], [0.5, 8.0]]])
    assert nearest_centroid(x, centroids).tolist() == [[0, 1, 2]]
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(50, 1, (300, 3))]).astype(np.float32)
    codebook = fit_codebook("x", data, 2, seed=0, batch_size=128)
    codes = codebook.assign(torch.from_numpy(data))
    assert len(set(codes[:300].tolist())) == 1 and len(set(codes[300:].tolist())) == 1
    assert codes[0] != codes[-1]
    with pytest.raises(TargetError, match="at least"):
        fit_codebook("x", data[:3], 8, seed=0)


def test_fit_targets_save_load_and_assign(tmp_path):
    clips = [tone(f, 1.5) for f in (220.0, 277.2, 329.6, 392.0, 440.0)]
    config = TargetConfig(features=("chroma", "mfcc"), clusters=(6, 4), fit_frames=1000, kmeans_batch=128)
    targets = fit_targets(config, clips)
    assert targets.names == ["chroma", "mfcc"] and targets.sizes == (6, 4)
    codes = targets.assign(torch.stack(clips[:2]))
    assert [tuple(c.shape) for c in codes] == [(2, 38), (2, 38)]
    assert codes[0][0, 10] != codes[0][1, 10]  # A3 and C#4 differ in pitch class
    loaded = TargetSet.load(targets.save(tmp_path / "t"))
    for a, b in zip(loaded.assign(torch.stack(clips[:2])), codes):
        assert torch.equal(a, b)
    with pytest.raises(TargetError, match="no fitted targets"):
        TargetSet.load(tmp_path / "missing")


def test_teacher_targets_cluster_a_model_layer(tmp_path):
    torch.manual_seed(0)
    teacher = truncate(SemanticModel(tiny_model_config()), 1)
    config = TargetConfig(iteration=1, features=("teacher",), clusters=(5,), teacher_layer=1, fit_frames=500,
                          kmeans_batch=64)
    clips = [tone(f, 1.0) + 0.01 * torch.randn(SR) for f in (200.0, 300.0, 450.0)]
    with pytest.raises(TargetError, match="teacher model"):
        fit_targets(config, clips)
    targets = fit_targets(config, clips, teacher, "somewhere")
    codes = targets.assign(torch.stack(clips))[0]
    assert codes.shape == (3, 25) and int(codes.max()) < 5
    folder = targets.save(tmp_path / "t")
    with pytest.raises(TargetError, match="need the teacher"):
        TargetSet.load(folder)
    seen = []

    def load_teacher(source: str, layer: int) -> SemanticModel:
        seen.append((source, layer))
        return teacher

    reloaded = TargetSet.load(folder, load_teacher)
    assert seen == [("somewhere", 1)]
    assert torch.equal(reloaded.assign(torch.stack(clips))[0], codes)


def test_codebook_needs_teacher_model():
    with pytest.raises(TargetError, match="teacher"):
        TargetSet([Codebook("teacher", torch.zeros(2), torch.ones(2), torch.zeros(3, 2))])
