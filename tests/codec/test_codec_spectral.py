"""The spectral codec architecture: lengths, finite reach (chunking), learning, save/load and fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codec_helpers import one_torch_thread, synth_clip, tiny_codec_config  # noqa: F401 (autouse fixture)

from musiclm.codec.api import Codec
from musiclm.codec.config import CodecConfig, spectral_codec
from musiclm.codec.losses import MultiResolutionMelLoss
from musiclm.codec.model import SoundStream, count_parameters
from musiclm.codec.spectral import reach_frames
from musiclm.errors import ConfigError

HOP = 480


def _spectral_config(**overrides: object) -> CodecConfig:
    fields: dict[str, object] = {"architecture": "spectral", "spectral_fft": 512, "spectral_dim": 16,
                                 "spectral_ffn": 32, "spectral_blocks": 2, "spectral_kernel": 3,
                                 "kmeans_init": False}
    fields.update(overrides)
    return tiny_codec_config(**fields)


def _model(seed: int = 0, **overrides: object) -> SoundStream:
    torch.manual_seed(seed)
    return SoundStream(_spectral_config(**overrides)).eval()


def test_preset_fits_the_bundle_and_the_token_layout():
    config = spectral_codec()
    assert (config.hop_length, config.num_quantizers, config.codebook_size) == (480, 12, 1024)
    params = count_parameters(SoundStream(config))
    assert 2e6 < params < 6e6  # fp16 weights of at most 12 MB beside 1.5 MB of codebooks
    assert SoundStream(config).lookahead_frames() == reach_frames(config) > 0


@pytest.mark.parametrize("samples", [1, 479, 480, 7777])
def test_forward_keeps_length_and_codes_in_range(samples):
    model = _model()
    wav = torch.randn(2, samples) * 0.1
    out = model(wav)
    frames = -(-samples // HOP)
    assert out.audio.shape == (2, samples) and torch.isfinite(out.audio).all()
    assert out.codes.shape == (2, 12, frames)
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 1024
    assert torch.equal(model.encode(wav), out.codes)
    assert model.decode(out.codes[:, :3]).shape == (2, frames * HOP)


def test_changes_beyond_the_reach_leave_codes_and_audio_alone():
    """The reach bounds the dependence both ways; a change inside it does show (so the check can fail)."""
    model = _model(seed=1)
    reach = model.receptive_field_frames()
    frames = 2 * reach + 12
    a = torch.randn(1, frames * HOP) * 0.1
    b = a.clone()
    middle = frames // 2
    b[:, middle * HOP : (middle + 1) * HOP] += torch.randn(1, HOP) * 0.1
    codes_a, codes_b = model.encode(a), model.encode(b)
    far = [f for f in range(frames) if abs(f - middle) >= reach]
    assert torch.equal(codes_a[..., far], codes_b[..., far])
    assert not torch.equal(codes_a[..., middle], codes_b[..., middle])
    changed = codes_a.clone()
    changed[:, :, middle] = (changed[:, :, middle] + 1) % 1024
    audio_a, audio_b = model.decode(codes_a), model.decode(changed)
    for f in far:
        assert torch.allclose(audio_a[..., f * HOP : (f + 1) * HOP], audio_b[..., f * HOP : (f + 1) * HOP],
                              atol=1e-6)
    assert not torch.allclose(audio_a[..., middle * HOP : (middle + 1) * HOP],
                              audio_b[..., middle * HOP : (middle + 1) * HOP])


def test_chunked_processing_equals_whole_signal():
    codec = Codec(_model(seed=2))
    wav = (0.1 * np.random.default_rng(3).standard_normal((1, 24_000 * 4))).astype(np.float32)
    whole = codec.encode(wav)
    assert torch.equal(whole, codec.encode(wav, chunk_seconds=0.5))
    assert torch.allclose(codec.decode(whole), codec.decode(whole, chunk_seconds=0.5), atol=1e-5)


def test_a_few_steps_fit_one_clip():
    """Magnitude and phase outputs are trainable end to end through the inverse STFT."""
    torch.manual_seed(0)
    model = SoundStream(_spectral_config(quantizer_dropout=0.0)).train()
    clip = torch.from_numpy(synth_clip(np.random.default_rng(0), 0.5)).unsqueeze(0)
    mel = MultiResolutionMelLoss(24_000, (256, 512), (32, 48))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        out = model(clip)
        distance = mel(out.audio, clip)
        optimiser.zero_grad()
        (distance + out.commitment).backward()
        optimiser.step()
        losses.append(distance.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_save_and_load_give_identical_codes_and_audio(tmp_path):
    codec = Codec(_model(seed=4))
    loaded = Codec.from_pretrained(codec.save(tmp_path / "codec"))
    assert loaded.config.architecture == "spectral"
    wav = (0.1 * np.random.default_rng(5).standard_normal((2, 9_000))).astype(np.float32)
    assert torch.equal(codec.encode(wav), loaded.encode(wav))
    assert torch.allclose(codec.decode(codec.encode(wav)), loaded.decode(loaded.encode(wav)), atol=1e-3)


def test_fingerprints_ignore_spectral_fields_of_a_seanet_codec_only():
    torch.manual_seed(0)
    seanet = Codec(SoundStream(tiny_codec_config(kmeans_init=False)))
    torch.manual_seed(0)
    seanet_other = Codec(SoundStream(tiny_codec_config(kmeans_init=False, spectral_dim=99)))
    assert seanet.token_fingerprint() == seanet_other.token_fingerprint()
    assert seanet.fingerprint() == seanet_other.fingerprint()
    spectral = Codec(_model(seed=0))
    assert Codec(_model(seed=0)).token_fingerprint() == spectral.token_fingerprint()
    assert Codec(_model(seed=0, spectral_kernel=5)).token_fingerprint() != spectral.token_fingerprint()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("architecture", "wavenet", "architecture must be one of"),
    ("spectral_kernel", 4, "positive odd"),
    ("spectral_subframes", 7, "divide the hop"),
    ("spectral_fft", 256, "at least twice the STFT hop"),
])
def test_bad_spectral_settings_are_clear_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        _spectral_config(**{field: value}).validate()
