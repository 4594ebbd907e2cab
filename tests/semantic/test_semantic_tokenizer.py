"""SemanticTokenizer: exactly 25 tokens/s, determinism, batching, windows, save/load, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from semantic_testkit import SR, tiny_tokenizer

from musiclm.errors import AudioError, MusicLMError
from musiclm.semantic.tokenizer import PAD_TOKEN, SemanticTokenizer, token_count

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer() -> SemanticTokenizer:
    return tiny_tokenizer()


def noise(samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(samples) * 0.1).astype(np.float32)


@pytest.mark.parametrize("samples", [1, 500, 959, 960, 961, 1919, 24_000, 24_001, 36_123])
def test_24khz_gives_ceil_samples_over_960_tokens(tokenizer, samples):
    tokens = tokenizer.tokenize(noise(samples))
    assert tokens.shape == (1, -(-samples // 960)) == (1, tokenizer.num_tokens(samples))
    assert tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < tokenizer.num_clusters


@pytest.mark.parametrize(("rate", "samples"), [(16_000, 16_000), (16_000, 16_001), (44_100, 44_100 * 2 + 3),
                                                (22_050, 1), (48_000, 47_999), (8_000, 321)])
def test_any_rate_gives_ceil_25_per_second(tokenizer, rate, samples):
    tokens = tokenizer.tokenize(noise(samples), sample_rate=rate)
    assert tokens.shape[1] == token_count(samples, rate) == -(-samples * 25 // rate)
    assert bool((tokens >= 0).all())


def test_deterministic_and_tensor_or_numpy(tokenizer):
    wav = noise(50_000, 3)
    first = tokenizer.tokenize(wav)
    assert torch.equal(first, tokenizer.tokenize(wav))
    assert torch.equal(first, tokenizer.tokenize(torch.from_numpy(wav)))
    assert torch.equal(first, tiny_tokenizer().tokenize(wav))  # same seed, same tokenizer
    pcm = np.clip(wav * 32768, -32768, 32767).astype(np.int16)
    assert (tokenizer.tokenize(pcm) == first).float().mean() > 0.95  # int16 PCM is scaled to full scale 1
    assert len(set(first[0].tolist())) > 1


def test_padded_batch_equals_one_by_one(tokenizer):
    signals = [noise(n, i) for i, n in enumerate([30_000, 961, 50_000, 24_000])]
    alone = [tokenizer.tokenize(s)[0] for s in signals]
    listed = tokenizer.tokenize(signals)
    longest = max(len(s) for s in signals)
    padded = np.zeros((len(signals), longest), dtype=np.float32)
    for row, s in enumerate(signals):
        padded[row, : len(s)] = s
        padded[row, len(s):] = 0.5  # whatever sits beyond a length is ignored
    with_lengths = tokenizer.tokenize(padded, lengths=[len(s) for s in signals])
    for row, tokens in enumerate(alone):
        for batch in (listed, with_lengths):
            assert torch.equal(batch[row, : len(tokens)], tokens)
            assert bool((batch[row, len(tokens):] == PAD_TOKEN).all())
    many = tokenizer.tokenize_many(signals, batch_size=3)
    assert all(torch.equal(a, b) for a, b in zip(many, alone))


def test_long_inputs_are_windowed_consistently(tokenizer):
    short_window = SemanticTokenizer(tokenizer.model, tokenizer.centroids.cpu(), tokenizer.layer, chunk_seconds=1.0,
                                     context_seconds=0.5)
    wav = noise(int(3.7 * SR), 5)
    tokens = short_window.tokenize(wav)
    assert tokens.shape[1] == -(-len(wav) // 960)
    whole = tokenizer.tokenize(wav)
    assert (tokens == whole).float().mean() > 0.6  # context keeps windowed tokens close to whole-input tokens
    batch = short_window.tokenize([wav, wav[: SR // 2], wav[: int(1.3 * SR)]])
    assert torch.equal(batch[0], tokens[0])
    assert torch.equal(batch[1, :13], short_window.tokenize(wav[: SR // 2])[0])
    assert torch.equal(batch[2, :33], short_window.tokenize(wav[: int(1.3 * SR)])[0])


def test_save_load_identity(tokenizer, tmp_path):
    folder = tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "semantic.safetensors"]
    loaded = SemanticTokenizer.from_pretrained(folder)
    assert loaded.layer == tokenizer.layer and loaded.num_clusters == tokenizer.num_clusters
    for name, value in tokenizer.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
    assert torch.equal(loaded.centroids, tokenizer.centroids)
    wav = noise(40_000, 9)
    assert torch.equal(loaded.tokenize(wav), tokenizer.tokenize(wav))
    from safetensors import safe_open

    with safe_open(str(folder / "semantic.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118


def test_bad_inputs_raise_clear_errors(tokenizer, tmp_path):
    with pytest.raises(AudioError, match="zero-length"):
        tokenizer.tokenize(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="zero-length"):
        tokenizer.tokenize([noise(1000), np.zeros(0, dtype=np.float32)])
    bad = noise(5000)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.tokenize(bad)
    bad[100] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        tokenizer.tokenize(torch.from_numpy(bad))
    with pytest.raises(AudioError, match="shaped"):
        tokenizer.tokenize(np.zeros((1, 2, 100), dtype=np.float32))
    with pytest.raises(AudioError, match="empty list"):
        tokenizer.tokenize([])
    with pytest.raises(MusicLMError, match="lengths"):
        tokenizer.tokenize(np.zeros((2, 100), dtype=np.float32), lengths=[100])
    with pytest.raises(MusicLMError, match="not a semantic tokenizer folder"):
        SemanticTokenizer.from_pretrained(tmp_path)


def test_silence_is_valid_music_with_ordinary_tokens(tokenizer):
    """Documented behaviour: silent input is not an error; it gets deterministic, in-range tokens."""
    tokens = tokenizer.tokenize(np.zeros(24_000, dtype=np.float32))
    assert tokens.shape == (1, 25)
    assert int(tokens.min()) >= 0 and len(set(tokens[0, 2:-2].tolist())) == 1  # steady state inside


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(tokenizer):
    wav = noise(48_000, 4)
    cpu = tokenizer.tokenize(wav)
    gpu = SemanticTokenizer(tokenizer.model, tokenizer.centroids.cpu(), tokenizer.layer, device="cuda")
    assert (gpu.tokenize(wav).cpu() == cpu).float().mean() > 0.98
