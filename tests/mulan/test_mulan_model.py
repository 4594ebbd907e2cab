"""MuLan towers, model and loss: shapes, normalisation, determinism, long-audio windows, text edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from mulan_testing import SR, tiny_model_config

from musiclm.errors import AudioError, MusicLMError
from musiclm.mulan.audio_tower import window_starts
from musiclm.mulan.config import TextTowerConfig
from musiclm.mulan.losses import contrastive_loss
from musiclm.mulan.model import MuLanModel
from musiclm.mulan.text_tower import TextError, TextTower

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> MuLanModel:
    torch.manual_seed(0)
    return MuLanModel(tiny_model_config()).eval()


def tone(seconds: float, freq: float = 440.0, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amp * torch.sin(2 * torch.pi * freq * t)


def test_shapes_and_unit_norm(model):
    wav = torch.stack([tone(1.5, 220.0), tone(1.5, 880.0)])
    audio, text, scale = model(wav, ["a calm piano piece", "loud techno"])
    assert audio.shape == text.shape == (2, 16)
    assert torch.allclose(audio.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)
    assert scale.item() == pytest.approx(1 / 0.07, rel=1e-4)


def test_eval_mode_is_deterministic(model):
    wav = tone(2.0).unsqueeze(0)
    assert torch.equal(model.encode_audio(wav), model.encode_audio(wav))
    assert torch.equal(model.encode_text(["jazz trio"]), model.encode_text(["jazz trio"]))


def test_window_starts_cover_the_signal():
    assert window_starts(100, 250, 25) == [0]
    assert window_starts(250, 250, 25) == [0]
    assert window_starts(300, 250, 25) == [0, 25, 50]
    assert window_starts(310, 250, 25) == [0, 25, 50, 60]  # one more, flush with the end


def test_long_audio_is_the_mean_of_its_windows(model):
    signal = torch.cat([tone(2.0, 220.0), tone(1.0, 660.0)])  # 3 s: windows of 2 s every 0.5 s
    windows = model.audio_windows(signal)
    assert windows.shape[0] == 3
    per_window = torch.nn.functional.normalize(model.audio.encode_mel(windows), dim=-1)
    expected = torch.nn.functional.normalize(per_window.mean(0), dim=0)
    got = model.embed_audio_long([signal])[0]
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_silent_windows_are_left_out_and_silence_is_an_error(model):
    signal = torch.cat([tone(2.0), torch.zeros(2 * SR)])
    assert model.audio_windows(signal).shape[0] == 4  # of 5 windows, the last one is all silent
    with pytest.raises(AudioError, match="silent"):
        model.embed_audio_long([torch.zeros(3 * SR)])
    with pytest.raises(AudioError, match="NaN"):
        model.embed_audio_long([torch.full((SR,), float("nan"))])


def test_short_audio_is_looped_to_min_seconds(model):
    emb = model.embed_audio_long([tone(0.2)])
    assert emb.shape == (1, 16) and torch.isfinite(emb).all()


def test_transformer_tower_shapes():
    torch.manual_seed(0)
    model = MuLanModel(tiny_model_config("transformer")).eval()
    out = model.encode_audio(torch.stack([tone(1.5), tone(1.0 + 0.5)]))
    assert out.shape == (2, 16)
    assert model.embed_audio_long([tone(3.0), tone(0.7)]).shape == (2, 16)


def test_empty_text_is_an_error(model):
    for bad in ([""], ["   \n"], ["fine", ""]):
        with pytest.raises(TextError, match="empty"):
            model.encode_text(bad)
    assert issubclass(TextError, MusicLMError)
    with pytest.raises(TextError):
        model.encode_text("not a list")


def test_overlong_text_is_truncated_with_a_warning(model):
    long_text = "a calm piano piece with soft strings " * 60
    with pytest.warns(UserWarning, match="truncated"):
        emb = model.encode_text([long_text])
    # everything after the limit is ignored: a longer tail gives the same embedding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokens = model.text.tokenize([long_text])
        assert tokens["input_ids"].shape[1] == model.config.text.max_tokens
        assert torch.allclose(emb, model.encode_text([long_text + " and more words"]), atol=1e-6)


def test_non_english_text_gets_a_finite_embedding(model):
    emb = model.encode_text(["une pièce calme au piano", "穏やかなピアノ曲", "música tranquila"])
    assert torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_text_batching_equals_one_by_one_and_cache(model):
    texts = ["a calm piano piece", "aggressive rock with distorted guitar and drums, fast", "techno"]
    model.text.clear_cache()
    batch = model.encode_text(texts)
    assert model.text.cache_len == 3
    single = torch.cat([model.encode_text([t]) for t in texts])
    assert torch.allclose(batch, single, atol=1e-5)
    model.text.clear_cache()
    uncached = torch.cat([model.encode_text([t]) for t in texts])
    assert torch.allclose(batch, uncached, atol=1e-5)


def test_frozen_backbone_is_not_in_the_state_dict(model):
    keys = list(model.state_dict())
    assert not any(k.startswith("text.backbone.") for k in keys)
    assert any(k.startswith("text.projection.") for k in keys)
    tuned = TextTower(TextTowerConfig(finetune_layers=1, hidden=8), 4)
    tuned_keys = [k for k in tuned.state_dict() if k.startswith("backbone.")]
    assert tuned_keys and all(k.startswith("backbone.encoder.layer.5.") for k in tuned_keys)
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert {k for k in tuned_keys if k in dict(tuned.named_parameters())} <= trainable
    # a state dict without the frozen part loads strictly, and round-trips the tuned layer
    state = {k: v.clone() + 1.0 if k.startswith("backbone.") else v for k, v in tuned.state_dict().items()}
    tuned.load_state_dict(state)
    assert torch.equal(tuned.state_dict()[tuned_keys[0]], state[tuned_keys[0]])


def test_contrastive_loss_prefers_aligned_pairs():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    aligned, logs = contrastive_loss(x, x, torch.tensor(10.0), gather=False)
    shuffled, _ = contrastive_loss(x, x.roll(1, 0), torch.tensor(10.0), gather=False)
    assert aligned < shuffled
    assert logs["a2t_acc"] == 1.0 and logs["t2a_acc"] == 1.0


def test_contrastive_loss_treats_same_group_as_positives():
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]), dim=1)
    text = x[[1, 0, 2]]  # rows 0 and 1 swapped: wrong pairs, same piece
    strict, _ = contrastive_loss(x, text, torch.tensor(20.0), gather=False)
    grouped, logs = contrastive_loss(x, text, torch.tensor(20.0), groups=torch.tensor([5, 5, 9]), gather=False)
    assert grouped < strict
    assert logs["a2t_acc"] == 1.0
    assert logs["positives_per_row"] == pytest.approx(5 / 3)


def test_loss_gradients_flow_to_both_towers(model):
    model.train()
    try:
        audio, text, scale = model(torch.stack([tone(1.5, 220.0), tone(1.5, 990.0)]), ["piano", "drums"])
        loss, _ = contrastive_loss(audio, text, scale, gather=False)
        loss.backward()
        assert model.audio.encoder.head[-1].weight.grad is not None
        assert model.text.projection[-1].weight.grad is not None
        assert model.logit_scale.grad is not None
        assert all(p.grad is None for p in model.text.backbone.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_audio_embedding_ignores_gain(model):
    rng = np.random.default_rng(0)
    wav = torch.from_numpy(rng.standard_normal(2 * SR).astype(np.float32) * 0.1) + tone(2.0)
    loud, quiet = model.embed_audio_long([wav, wav * 0.25])
    assert torch.allclose(loud, quiet, atol=1e-3)
