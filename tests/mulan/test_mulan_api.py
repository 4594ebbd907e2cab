"""The MuLan API: embeddings, tokens, save/load identity, batching, input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mulan_testing import SR, style_audio, tiny_model_config

from musiclm.errors import AudioError
from musiclm.mulan.api import CONFIG_FILE, WEIGHTS_FILE, MuLan
from musiclm.mulan.model import MuLanModel
from musiclm.mulan.quantizer import QuantizerError, fit_quantizer
from musiclm.mulan.text_tower import TextError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a calm piano piece", "loud techno with a driving kick drum", "dreamy ambient pads",
         "aggressive rock with distorted guitar", "une pièce calme au piano"]


def clips(n: int = 4, seconds: float = 2.5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    styles = ["classical_piano", "techno", "ambient", "rock"]
    return [style_audio(styles[i % 4], rng, seconds) for i in range(n)]


@pytest.fixture(scope="module")
def mulan() -> MuLan:
    torch.manual_seed(0)
    model = MuLanModel(tiny_model_config()).eval()
    base = MuLan(model)
    audio = base.embed_audio(clips(8, 2.0))
    text = base.embed_text(TEXTS)
    quantizer, _ = fit_quantizer(torch.cat([audio, text, -audio]), 12, 8, min_points_per_code=1, iters=10)
    return base.with_quantizer(quantizer)


def test_embedding_shapes_and_norms(mulan):
    text = mulan.embed_text(TEXTS)
    audio = mulan.embed_audio(clips())
    assert text.shape == (5, 16) and audio.shape == (4, 16)
    assert text.dtype == audio.dtype == torch.float32
    assert torch.allclose(text.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(audio.norm(dim=1), torch.ones(4), atol=1e-5)
    assert mulan.embed_text("one string").shape == (1, 16)
    assert mulan.embed_text([]).shape == (0, 16)


def test_tokens_shape(mulan):
    tokens = mulan.text_tokens(TEXTS)
    assert tokens.shape == (5, 12) and tokens.dtype == torch.int64
    assert int(tokens.max()) < mulan.codebook_size
    assert mulan.audio_tokens(clips(2)).shape == (2, 12)
    assert mulan.detokenize(tokens).shape == (5, 16)


def test_save_load_gives_identical_embeddings_and_tokens(mulan, tmp_path):
    folder = mulan.save(tmp_path / "model")
    assert (folder / CONFIG_FILE).exists() and (folder / WEIGHTS_FILE).exists()
    loaded = MuLan.from_pretrained(folder)
    assert torch.equal(loaded.text_tokens(TEXTS), mulan.text_tokens(TEXTS))
    assert torch.equal(loaded.audio_tokens(clips()), mulan.audio_tokens(clips()))
    assert torch.equal(loaded.embed_text(TEXTS), mulan.embed_text(TEXTS))
    assert torch.equal(loaded.embed_audio(clips()), mulan.embed_audio(clips()))
    assert loaded.fingerprint() == mulan.fingerprint()
    assert loaded.codebook_size == mulan.codebook_size and loaded.config.quantizer.codebook_size == 8
    # the frozen text backbone is not copied into the model folder: the file holds only small tensors
    assert (folder / WEIGHTS_FILE).stat().st_size < 1_000_000


def test_batching_equals_one_by_one(mulan):
    wavs = clips(4)
    batch = mulan.embed_audio(np.stack(wavs))
    single = torch.cat([mulan.embed_audio(w) for w in wavs])
    assert torch.allclose(batch, single, atol=1e-5)
    text_batch = mulan.embed_text(TEXTS, batch_size=2)
    assert torch.allclose(text_batch, torch.cat([mulan.embed_text([t]) for t in TEXTS]), atol=1e-5)
    # variable lengths in one call
    mixed = mulan.embed_audio([wavs[0], wavs[1][: SR], np.concatenate([wavs[2], wavs[3]])])
    assert torch.allclose(mixed[0], single[0], atol=1e-5)
    assert mixed.shape == (3, 16)


def test_determinism_across_instances(mulan, tmp_path):
    folder = mulan.save(tmp_path / "m")
    a, b = MuLan.from_pretrained(folder), MuLan.from_pretrained(folder)
    assert torch.equal(a.embed_audio(clips(2)), b.embed_audio(clips(2)))


def test_other_sample_rates_are_resampled(mulan):
    wav = clips(1)[0]
    import soxr

    at_16k = soxr.resample(wav, SR, 16_000)
    same = torch.nn.functional.cosine_similarity(mulan.embed_audio(wav), mulan.embed_audio(at_16k, 16_000))
    assert float(same) > 0.98


def test_bad_inputs_are_clear_errors(mulan):
    with pytest.raises(TextError, match="empty"):
        mulan.embed_text(["ok", " "])
    with pytest.raises(AudioError, match="silent"):
        mulan.embed_audio(np.zeros(SR * 3, dtype=np.float32))
    with pytest.raises(AudioError, match="zero-length"):
        mulan.embed_audio(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="one of 2 signals"):
        mulan.embed_audio([clips(1)[0], np.zeros(SR, dtype=np.float32)])
    with pytest.raises(AudioError):
        mulan.embed_audio(np.zeros((2, 2, 10), dtype=np.float32))
    with pytest.raises(QuantizerError):
        MuLan(mulan.model).tokens(mulan.embed_text(["x y"]))


def test_missing_model_folder_is_an_error(tmp_path):
    from musiclm.errors import MusicLMError

    with pytest.raises(MusicLMError, match="not a MuLan model folder"):
        MuLan.from_pretrained(tmp_path)
