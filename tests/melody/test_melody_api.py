"""MelodyModel: window embeddings, looping of short melodies, tokens, save/load, fingerprint and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.errors import AudioError
from musiclm.melody.api import CONFIG_FILE, WEIGHTS_FILE, MelodyModel
from musiclm.melody.config import EncoderConfig, FrontendConfig, MelodyConfig
from musiclm.melody.model import MelodyEmbedder
from musiclm.mulan.quantizer import QuantizerError, fit_quantizer
from musiclm.train.checkpoint import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


def tiny_config() -> MelodyConfig:
    """Windows of 1 s every 0.6 s, 16-d embeddings, a 1-layer encoder."""
    return MelodyConfig(embed_dim=16, window_seconds=1.0, hop_seconds=0.6, min_seconds=0.25,
                        frontend=FrontendConfig(n_fft=2048, min_midi=48, octaves=4),
                        encoder=EncoderConfig(dim=32, layers=1, heads=2, ffn=64, patch_frames=5, dropout=0.0))


def melody_wav(seed: int, seconds: float, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * 0.25)) / sr
    notes = [np.sin(2 * np.pi * 440 * 2 ** (rng.integers(-9, 10) / 12) * t) * np.hanning(len(t))
             for _ in range(int(np.ceil(seconds / 0.25)))]
    return (0.3 * np.concatenate(notes)[: int(sr * seconds)]).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> MelodyModel:
    torch.manual_seed(0)
    embedder = MelodyEmbedder(tiny_config())
    bare = MelodyModel(embedder)
    fit_set = torch.cat([bare.embed(melody_wav(s, 3.0))[0] for s in range(24)])
    quantizer, _ = fit_quantizer(fit_set, num_quantizers=3, codebook_size=8, min_points_per_code=1, iters=10)
    return MelodyModel(embedder, quantizer)


def test_facts(model):
    assert (model.sample_rate, model.embed_dim, model.window_seconds, model.hop_seconds) == (SR, 16, 1.0, 0.6)
    assert (model.num_quantizers, model.codebook_size) == (3, 8)
    assert [model.num_windows(s) for s in (0.3, 1.0, 1.5, 2.6, 10.0)] == [1, 1, 2, 4, 16]


def test_embed_gives_one_unit_vector_per_window(model):
    emb = model.embed(melody_wav(0, 2.6))
    assert emb.shape == (1, model.num_windows(2.6), 16) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(1, emb.shape[1]), atol=1e-5)
    batch = model.embed(np.stack([melody_wav(0, 2.6), melody_wav(1, 2.6)]))
    assert batch.shape == (2, emb.shape[1], 16)
    assert torch.allclose(batch[0], emb[0], atol=1e-5)
    listed = model.embed([torch.from_numpy(melody_wav(0, 2.6)), melody_wav(1, 2.5)])
    assert listed.shape == batch.shape and torch.allclose(listed[0], emb[0], atol=1e-5)


def test_a_window_does_not_depend_on_what_follows_it_beyond_its_span(model):
    long = melody_wav(3, 4.0)
    first = model.embed(long)[0, 0]
    assert torch.allclose(model.embed(long[: int(SR * 1.5)])[0, 0], first, atol=2e-3)


def test_a_melody_shorter_than_a_window_is_looped(model):
    short = melody_wav(4, 0.4)
    looped = np.tile(short, 3)[:SR]
    assert model.embed(short).shape == (1, 1, 16)
    assert torch.allclose(model.embed(short), model.embed(looped), atol=1e-5)


def test_other_sample_rates_are_resampled(model):
    at_24k = model.embed(melody_wav(5, 2.0))
    at_16k = model.embed(melody_wav(5, 2.0, sr=16_000), sample_rate=16_000)
    assert at_16k.shape == at_24k.shape
    assert torch.nn.functional.cosine_similarity(at_16k, at_24k, dim=-1).min() > 0.95


def test_tokens_are_the_quantised_window_embeddings(model):
    wav = np.stack([melody_wav(6, 2.0), melody_wav(7, 2.0)])
    tokens = model.tokens(wav)
    assert tokens.shape == (2, model.num_windows(2.0), 3) and tokens.dtype == torch.int64
    assert tokens.min() >= 0 and tokens.max() < 8
    assert torch.equal(tokens, model.tokens_from_embeddings(model.embed(wav)))
    decoded = model.detokenize(tokens)
    assert decoded.shape == (2, tokens.shape[1], 16)
    assert torch.nn.functional.cosine_similarity(decoded, model.embed(wav), dim=-1).mean() > 0.5


def test_save_and_load_give_identical_embeddings_and_tokens(model, tmp_path):
    folder = model.save(tmp_path / "melody")
    assert (folder / CONFIG_FILE).exists() and (folder / WEIGHTS_FILE).exists()
    loaded = MelodyModel.from_pretrained(folder)
    wav = melody_wav(8, 3.3)
    assert torch.equal(loaded.embed(wav), model.embed(wav))
    assert torch.equal(loaded.tokens(wav), model.tokens(wav))
    assert loaded.fingerprint() == model.fingerprint()
    assert (loaded.num_quantizers, loaded.codebook_size) == (3, 8)


def test_fingerprint_changes_with_the_weights(model):
    other = MelodyModel(MelodyEmbedder(tiny_config()), model.quantizer)
    assert other.fingerprint() != model.fingerprint()
    assert MelodyModel(model.model).fingerprint() != model.fingerprint()


def test_tokens_need_a_fitted_quantizer(model):
    bare = MelodyModel(model.model)
    with pytest.raises(QuantizerError, match="fit-quantizer"):
        bare.tokens(melody_wav(0, 1.0))
    assert bare.embed(melody_wav(0, 1.0)).shape == (1, 1, 16)


@pytest.mark.parametrize(("wav", "message"), [
    (np.zeros(SR, dtype=np.float32), "silent"),
    (np.full(SR, np.nan, dtype=np.float32), "NaN"),
    (np.zeros(0, dtype=np.float32), "zero-length"),
    (np.zeros((1, 2, SR), dtype=np.float32), "expected"),
    (melody_wav(0, 0.1), "too short"),
])
def test_bad_melodies_raise_clear_audio_errors(model, wav, message):
    with pytest.raises(AudioError, match=message):
        model.embed(wav)


def test_melodies_of_different_window_counts_are_refused_together(model):
    with pytest.raises(AudioError, match="different numbers of windows"):
        model.embed([melody_wav(0, 1.0), melody_wav(1, 3.0)])


def test_bad_melody_files_name_the_file(model, tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match=r"missing.wav"):
        model.embed_file(missing)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match=r"corrupt.wav"):
        model.embed_file(corrupt)
    silent = save_audio(tmp_path / "silent.flac", np.zeros(SR, dtype=np.float32), SR)
    with pytest.raises(AudioError, match=r"silent.flac.*silent"):
        model.embed_file(silent)
    short = save_audio(tmp_path / "short.wav", melody_wav(0, 0.1), SR)
    with pytest.raises(AudioError, match=r"short.wav.*too short"):
        model.embed_file(short)
    good = save_audio(tmp_path / "good.wav", melody_wav(0, 2.0), SR)
    assert torch.allclose(model.embed_file(good), model.embed(melody_wav(0, 2.0)), atol=1e-3)


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not a melody model folder"):
        MelodyModel.from_pretrained(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("embed_dim: 16\n")
    (tmp_path / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        MelodyModel.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config_are_refused(model, tmp_path):
    folder = model.save(tmp_path / "m")
    (folder / CONFIG_FILE).write_text((folder / CONFIG_FILE).read_text().replace("dim: 32", "dim: 64"))
    with pytest.raises(CheckpointError, match="does not fit"):
        MelodyModel.from_pretrained(folder)
