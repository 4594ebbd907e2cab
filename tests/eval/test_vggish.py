"""VGGish: front end and output shapes, weights round trip and errors, and the FAD embedders built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from musiclm.eval import EvalError
from musiclm.eval.embeddings import AudioEmbedder, VGGishEmbedder, audio_fad
from musiclm.eval.vggish import (
    EMBEDDING_SIZE,
    VGGish,
    VGGishFrontEnd,
    VGGishOptions,
    VGGishWeightsError,
    load_vggish,
    mel_matrix,
    random_vggish,
    save_vggish,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return random_vggish(seed=0)


def noise(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(round(seconds * sr))) * 0.1).astype(np.float32)


def test_mel_matrix():
    weights = mel_matrix()
    assert weights.shape == (257, 64)
    assert (weights[0] == 0).all() and (weights >= 0).all() and weights.max() <= 1.0
    peaks = weights.argmax(axis=0)
    assert (np.diff(peaks) >= 0).all() and (weights.sum(axis=0) > 0).all()
    freqs = np.linspace(0, 8000, 257)
    used = freqs[weights.sum(axis=1) > 0]
    assert used.min() > 125 and used.max() < 7500


def test_front_end_framing():
    front = VGGishFrontEnd()
    assert front.log_mel(torch.from_numpy(noise(1.0))).shape == (98, 64)  # 1 + (16000 - 400) // 160
    assert front(torch.from_numpy(noise(1.0))).shape == (1, 1, 96, 64)
    assert front(torch.from_numpy(noise(3.2))).shape == (3, 1, 96, 64)
    assert front(torch.from_numpy(noise(0.3))).shape == (1, 1, 96, 64)  # padded to one example


def test_embedding_shapes(model):
    assert model.embed(noise(1.0), 16_000).shape == (1, EMBEDDING_SIZE)
    assert model.embed(noise(3.2), 16_000).shape == (3, EMBEDDING_SIZE)
    assert model.embed(noise(3.2, sr=24_000), 24_000).shape == (3, EMBEDDING_SIZE)  # resampled to 16 kHz
    assert model(torch.zeros(2, 1, 96, 64)).shape == (2, EMBEDDING_SIZE)


def test_save_load_round_trip(model, tmp_path):
    path = save_vggish(model, tmp_path / "vggish.safetensors")
    loaded = load_vggish(path)
    wav = noise(2.0, seed=3)
    assert torch.equal(model.embed(wav, 16_000), loaded.embed(wav, 16_000))
    assert not loaded.has_pca


def test_weights_errors(model, tmp_path):
    with pytest.raises(VGGishWeightsError, match="no such"):
        load_vggish(tmp_path / "missing.safetensors")
    tensors = model.weights()
    broken = {k: v for k, v in tensors.items() if k != "fc2.bias"}
    broken["conv1.weight"] = torch.zeros(64, 1, 5, 5)
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(VGGishWeightsError) as info:
        VGGish().load_weights(broken, "broken.safetensors")
    message = str(info.value)
    assert "fc2.bias" in message and "conv1.weight" in message and "extra.weight" in message
    save_file({"conv1.weight": torch.zeros(64, 1, 3, 3)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(VGGishWeightsError, match=r"partial\.safetensors.*missing keys"):
        load_vggish(tmp_path / "partial.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(VGGishWeightsError, match="unreadable"):
        load_vggish(tmp_path / "junk.safetensors")
    with pytest.raises(VGGishWeightsError, match="partner"):
        model.load_weights({**tensors, "pca.means": torch.zeros(EMBEDDING_SIZE)})


def test_pca_postprocessing(model):
    tensors = dict(model.weights())
    tensors["pca.eigen_vectors"] = 2.0 * torch.eye(EMBEDDING_SIZE)
    tensors["pca.means"] = torch.ones(EMBEDDING_SIZE)
    whitened = VGGish(VGGishOptions(postprocess=True))
    whitened.load_weights(tensors)
    assert whitened.has_pca and "pca.means" in whitened.weights()
    wav = noise(1.0, seed=4)
    torch.testing.assert_close(whitened.embed(wav, 16_000), 2.0 * (model.embed(wav, 16_000) - 1.0))
    with pytest.raises(VGGishWeightsError, match="pca"):
        VGGish(VGGishOptions(postprocess=True))(torch.zeros(1, 1, 96, 64))


def test_embedder_pooling_and_fad(model):
    frames = VGGishEmbedder(model)
    clips = VGGishEmbedder(model, pooling="mean")
    assert isinstance(frames, AudioEmbedder)
    wavs = [noise(2.0, seed=s) for s in range(3)] + [noise(3.2, seed=9)]
    assert frames.embed(wavs, 16_000).shape == (2 + 2 + 2 + 3, EMBEDDING_SIZE)
    assert clips.embed(wavs, 16_000).shape == (4, EMBEDDING_SIZE)
    same = audio_fad(frames, wavs, wavs, 16_000)
    assert same == pytest.approx(0.0, abs=1e-3)
    tones = [(0.3 * np.sin(2 * np.pi * f * np.arange(32_000) / 16_000)).astype(np.float32)
             for f in (220.0, 330.0, 440.0, 550.0)]
    assert audio_fad(frames, tones, wavs, 16_000) > 1.0
    with pytest.raises(EvalError, match="list"):
        frames.embed(noise(1.0), 16_000)
    with pytest.raises(EvalError, match="pooling"):
        VGGishEmbedder(model, pooling="max")  # type: ignore[arg-type]
