"""The ``Codec`` inference API: any input shape/rate/length, bit rates, chunking, save/load, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from codec_helpers import one_torch_thread, tiny_codec_config  # noqa: F401 (autouse fixture)
from safetensors import safe_open

from musiclm.codec.api import CONFIG_FILE, WEIGHTS_FILE, Codec
from musiclm.codec.model import SoundStream
from musiclm.errors import AudioError, ConfigError, MusicLMError


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(0)
    return Codec(SoundStream(tiny_codec_config(kmeans_init=False)))


def _noise(*shape: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("samples", [1, 481, 24_001])
def test_roundtrip_keeps_length_for_any_input_length(codec, samples):
    out = codec.roundtrip(_noise(samples))
    assert out.shape == (samples,) and out.dtype == np.float32 and np.isfinite(out).all()


def test_encode_returns_int64_codes_in_range(codec):
    codes = codec.encode(_noise(2, 10_000))
    assert codes.shape == (2, 12, 21) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    torch_codes = codec.encode(torch.from_numpy(_noise(2, 10_000)))
    assert torch.equal(codes, torch_codes)


def test_bitrate_selects_levels_and_bits(codec):
    wav = _noise(24_000)
    bits = {}
    for kbps, levels in ((1.5, 3), (3.0, 6), (6.0, 12)):
        codes = codec.encode(wav, bitrate=kbps)
        assert codes.shape == (1, levels, 50)
        bits[kbps] = codes[0].numel() * np.log2(codec.codebook_size)  # bits for one second
        assert bits[kbps] == pytest.approx(kbps * 1000)
        decoded = codec.decode(codes)
        assert decoded.shape == (1, 24_000) and torch.isfinite(decoded).all()
    assert bits[1.5] < bits[3.0] < bits[6.0]
    low, high = codec.encode(wav, bitrate=1.5), codec.encode(wav, bitrate=6.0)
    assert torch.equal(low, high[:, :3])  # fewer levels = a prefix of the residual stack
    with pytest.raises(ConfigError):
        codec.encode(wav, bitrate=2.0)
    assert codec.encode(wav, levels=4).shape[1] == 4


def test_other_rates_and_channels_are_resampled_and_downmixed(codec):
    stereo_8k = _noise(1, 2, 8000 * 2 + 3)  # [batch, channels, samples] at 8 kHz
    codes = codec.encode(stereo_8k, sample_rate=8000)
    assert codes.shape[-1] == -(-codec.resampled_length(16_003, 8000) // 480)
    out = codec.roundtrip(stereo_8k, sample_rate=8000)
    assert out.shape == (1, 16_003)
    assert codec.roundtrip(_noise(4410), sample_rate=44_100).shape == (4410,)


def test_silence_is_valid_input(codec):
    out = codec.roundtrip(np.zeros(5000, dtype=np.float32))
    assert out.shape == (5000,) and np.isfinite(out).all()


@pytest.mark.parametrize("bad", [np.array([0.1, np.nan, 0.2], dtype=np.float32), np.full(100, np.inf, np.float32),
                                 np.zeros(0, dtype=np.float32), np.zeros((2, 0), dtype=np.float32)])
def test_non_finite_or_empty_audio_is_a_clear_error(codec, bad):
    with pytest.raises(AudioError):
        codec.encode(bad)
    with pytest.raises(AudioError):
        codec.encode(torch.from_numpy(bad))


def test_bad_codes_are_clear_errors(codec):
    with pytest.raises(MusicLMError, match="within"):
        codec.decode(torch.full((1, 12, 3), 1024))
    with pytest.raises(MusicLMError, match="integers"):
        codec.decode(torch.zeros(1, 12, 3))
    with pytest.raises(MusicLMError, match="levels"):
        codec.decode(torch.zeros(1, 13, 3, dtype=torch.long))
    assert codec.decode(np.zeros((12, 3), dtype=np.int64), length=1000).shape == (1, 1000)


def test_chunked_processing_equals_whole_signal(codec):
    wav = _noise(1, 24_000 * 3, seed=3)
    whole = codec.encode(wav)
    chunked = codec.encode(wav, chunk_seconds=0.5)
    assert torch.equal(whole, chunked)
    audio_whole = codec.decode(whole)
    audio_chunked = codec.decode(whole, chunk_seconds=0.5)
    assert torch.allclose(audio_whole, audio_chunked, atol=1e-5)


def test_save_and_load_give_identical_codes(codec, tmp_path):
    folder = codec.save(tmp_path / "codec")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as handle:
        dtypes = {handle.get_tensor(k).dtype for k in handle.keys()}  # noqa: SIM118
        keys = list(handle.keys())
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert not any(k.endswith(("embed_avg", "cluster_size", "init_reservoir")) for k in keys)
    assert yaml.safe_load((folder / CONFIG_FILE).read_text())["num_quantizers"] == 12
    loaded = Codec.from_pretrained(folder)
    wav = _noise(2, 12_345, seed=5)
    assert torch.equal(codec.encode(wav), loaded.encode(wav))
    assert torch.equal(codec.decode(codec.encode(wav)), loaded.decode(loaded.encode(wav)))
    again = Codec.from_pretrained(loaded.save(tmp_path / "again"))
    assert torch.equal(again.encode(wav), codec.encode(wav))


def test_loading_rejects_missing_or_mismatched_folders(codec, tmp_path):
    with pytest.raises(MusicLMError, match="not a codec model folder"):
        Codec.from_pretrained(tmp_path)
    folder = codec.save(tmp_path / "codec")
    config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    config["latent_dim"] = 16
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(MusicLMError, match="does not fit"):
        Codec.from_pretrained(folder)


def test_wrapping_a_training_model_leaves_it_intact():
    """Codec() folds weight normalisation into its own copy; the training model keeps its parametrisation
    (and can be wrapped again, as evaluation and export do)."""
    torch.manual_seed(0)
    model = SoundStream(tiny_codec_config(kmeans_init=False))
    first, second = Codec(model), Codec(model)
    audio = torch.from_numpy(_noise(1, 4800))
    assert torch.equal(first.encode(audio), second.encode(audio))
    assert torch.nn.utils.parametrize.is_parametrized(model.decoder.net[0].conv, "weight")
    model.eval()
    with torch.no_grad():
        out = model(audio).audio
    torch.testing.assert_close(out, torch.from_numpy(first.roundtrip(audio.numpy())), atol=2e-3, rtol=0)
