"""SoundStream model and quantiser: lengths, causality (streaming), code range, quantiser init and dead codes."""

from __future__ import annotations

import pytest
import torch
from codec_helpers import one_torch_thread, tiny_codec_config  # noqa: F401 (autouse fixture)

from musiclm.codec.config import BITRATES_KBPS, CodecConfig, paper_codec, small_codec
from musiclm.codec.model import SoundStream, count_parameters, remove_weight_norm
from musiclm.codec.quantizer import ResidualQuantizer, kmeans, nearest, perplexity
from musiclm.errors import ConfigError


def _ready_model(seed: int = 0, **overrides: object) -> SoundStream:
    """A random tiny codec whose quantiser is initialised (random codebooks), in eval mode."""
    torch.manual_seed(seed)
    return SoundStream(tiny_codec_config(kmeans_init=False, **overrides)).eval()


def test_presets_have_the_musiclm_token_layout():
    for config in (small_codec(), paper_codec()):
        assert config.hop_length == 480 and config.frame_rate == 50.0
        assert (config.num_quantizers, config.codebook_size, config.coarse_levels) == (12, 1024, 4)
        assert [config.levels_for_bitrate(k) for k in BITRATES_KBPS] == [3, 6, 12]
        assert config.bitrate_for_levels(12) == 6.0
    with pytest.raises(ConfigError, match="not served"):
        small_codec().levels_for_bitrate(2.0)
    small, paper = SoundStream(small_codec()), SoundStream(paper_codec())
    assert 0.5e6 < count_parameters(small) < 5e6 < count_parameters(paper)


@pytest.mark.parametrize("samples", [1, 479, 480, 481, 7777])
def test_forward_keeps_length_and_codes_in_range(samples):
    model = _ready_model()
    wav = torch.randn(2, samples) * 0.1
    out = model(wav)
    assert out.audio.shape == (2, samples)
    frames = -(-samples // 480)
    assert out.codes.shape == (2, 12, frames) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 1024
    codes = model.encode(wav)
    assert torch.equal(codes, out.codes)  # the matmul nearest-code path agrees with the library's
    assert model.decode(codes).shape == (2, frames * 480)


def test_fewer_levels_decode():
    model = _ready_model()
    codes = model.encode(torch.randn(1, 4800) * 0.1, levels=3)
    assert codes.shape == (1, 3, 10)
    assert torch.isfinite(model.decode(codes)).all()


def test_encoder_and_decoder_are_causal():
    """Changing the audio after a frame boundary changes neither earlier codes nor earlier output."""
    model = _ready_model(seed=3)
    hop, boundary = 480, 6
    a = torch.randn(1, 12 * hop) * 0.1
    b = a.clone()
    b[:, boundary * hop :] = torch.randn(1, 6 * hop)
    latent_a = model.encoder(a.unsqueeze(1))
    latent_b = model.encoder(b.unsqueeze(1))
    assert torch.equal(latent_a[..., :boundary], latent_b[..., :boundary])
    assert not torch.allclose(latent_a[..., boundary:], latent_b[..., boundary:])
    codes_a, codes_b = model.encode(a), model.encode(b)
    assert torch.equal(codes_a[..., :boundary], codes_b[..., :boundary])
    out_a, out_b = model.decode(codes_a), model.decode(codes_b)
    assert torch.equal(out_a[..., : boundary * hop], out_b[..., : boundary * hop])
    assert not torch.allclose(out_a[..., boundary * hop :], out_b[..., boundary * hop :])


def test_receptive_field_bounds_the_dependence_on_the_past():
    model = _ready_model(seed=4)
    context = model.receptive_field_frames()
    hop = 480
    a = torch.randn(1, (context + 4) * hop) * 0.1
    b = a.clone()
    b[:, :hop] = torch.randn(1, hop)  # change only the first frame
    latent_a, latent_b = model.encoder(a.unsqueeze(1)), model.encoder(b.unsqueeze(1))
    assert torch.allclose(latent_a[..., context:], latent_b[..., context:], atol=1e-6)
    codes = model.encode(a)
    other = codes.clone()
    other[..., 0] = (other[..., 0] + 1) % 1024
    out_a, out_b = model.decode(codes), model.decode(other)
    assert torch.allclose(out_a[..., context * hop :], out_b[..., context * hop :], atol=1e-6)


def test_weight_norm_folding_keeps_outputs():
    model = _ready_model(seed=5)
    wav = torch.randn(1, 2400) * 0.1
    before = model.decode(model.encode(wav))
    remove_weight_norm(model)
    assert not any("parametrizations" in k for k in model.state_dict())
    assert torch.allclose(model.decode(model.encode(wav)), before, atol=1e-5)


def test_quantizer_initialises_from_a_reservoir_and_uses_every_level():
    torch.manual_seed(0)
    config = tiny_codec_config(init_vectors=512, codebook_size=64, quantizer_dropout=0.0)
    quantizer = ResidualQuantizer(config).train()
    latent = torch.randn(4, 8, 50)
    out = quantizer(latent)
    assert not bool(quantizer.initialized) and (out.codes == -1).all()
    assert torch.equal(out.quantized, latent)  # unquantised while collecting
    for _ in range(2):
        out = quantizer(torch.randn(4, 8, 50))
    assert bool(quantizer.initialized)
    assert (perplexity(out.codes, 64) > 8).all()  # no level starts collapsed
    quantizer.eval()
    with pytest.raises(ValueError):
        quantizer(latent, levels=13)


def test_quantizer_can_wait_before_collecting_and_normalises_the_latent():
    torch.manual_seed(0)
    config = tiny_codec_config(init_vectors=200, codebook_size=64, quantizer_dropout=0.0, quantizer_warmup_batches=2)
    quantizer = ResidualQuantizer(config).train()
    offset = 50.0  # a large constant offset, as an encoder's latent has
    for _ in range(2):
        quantizer(torch.randn(4, 8, 50) + offset)
    assert int(quantizer.init_count) == 0 and not bool(quantizer.initialized)
    quantizer(torch.randn(4, 8, 50) + offset)
    assert bool(quantizer.initialized)
    assert float(quantizer.latent_mean.mean()) == pytest.approx(offset, abs=0.5)
    assert float(quantizer.latent_scale) == pytest.approx(1.0, abs=0.2)
    for _ in range(4):  # the offset jumps by 3 spreads: the running statistics follow within a few steps
        drifted = quantizer(torch.randn(4, 8, 50) + offset + 3.0)
    assert float(quantizer.latent_mean.mean()) == pytest.approx(offset + 3.0, abs=0.5)
    assert (perplexity(drifted.codes, 64) > 8).all()  # no level collapsed


def test_dead_codes_are_reseeded_from_the_batch():
    torch.manual_seed(1)
    config = tiny_codec_config(kmeans_init=False, codebook_size=64, quantizer_dropout=0.0, dead_code_window=1.0)
    quantizer = ResidualQuantizer(config).train()
    far = 1000.0
    quantizer.layers[0]._codebook.embed.data[0, :32] = far  # half of level 1 can never be chosen
    replaced = 0
    for _ in range(3):  # 200 vectors per step, 64 codes -> dead after 1 step
        quantizer(torch.randn(4, 8, 50))
        replaced += quantizer.replaced_codes
    assert replaced >= 32
    assert float(quantizer.layers[0].codebook.abs().max()) < far / 10


def test_quantizer_dropout_uses_the_served_bitrates():
    torch.manual_seed(2)
    quantizer = ResidualQuantizer(tiny_codec_config(kmeans_init=False, quantizer_dropout=1.0)).train()
    assert {quantizer.training_levels() for _ in range(60)} == {3, 6, 9}
    quantizer.config.quantizer_dropout = 0.0
    assert quantizer.training_levels() == 12


def test_kmeans_and_nearest():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    data = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    means = kmeans(data, 3, iters=10)
    assert torch.cdist(centres, means).min(dim=1).values.max() < 0.5
    assert torch.equal(nearest(centres, means), torch.cdist(centres, means).argmin(dim=1))


def test_perplexity_measures_code_usage():
    uniform = torch.arange(1024).view(1, 1, 1024)
    assert perplexity(uniform, 1024).item() == pytest.approx(1024, rel=1e-3)
    collapsed = torch.zeros(1, 2, 100, dtype=torch.long)
    assert perplexity(collapsed, 1024).tolist() == [1.0, 1.0]


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        CodecConfig(strides=()).validate()
    with pytest.raises(ConfigError):
        CodecConfig(quantizer_dropout=2.0).validate()
    with pytest.raises(ConfigError):
        CodecConfig(coarse_levels=13).validate()


def test_reconstruct_unquantized_skips_the_quantizer():
    model = _ready_model(seed=6)
    wav = torch.randn(2, 2000) * 0.1  # not a whole number of frames: the output keeps the input length
    out = model.reconstruct_unquantized(wav)
    assert out.shape == wav.shape
    expected = model.decoder(model.encoder(model._pad(wav).unsqueeze(1))).squeeze(1)[..., :2000]
    assert torch.allclose(out, expected, atol=1e-6)
    quantized = model.decode(model.encode(wav, levels=1))[..., :2000]
    scale = float(out.abs().max())
    assert scale > 0
    assert float((out - quantized).abs().max()) > 1e-2 * scale  # one level of codes loses what the latent keeps
