"""The melody model: pitch front end, windowing, encoder, configs and the semi-hard triplet loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.config import preset
from musiclm.errors import ConfigError
from musiclm.melody.config import EncoderConfig, FrontendConfig, MelodyConfig, MelodyTrainingConfig
from musiclm.melody.losses import pair_masks, semi_hard_triplet_loss
from musiclm.melody.model import MelodyEmbedder, PitchSpectrogram, pitch_centres, pitch_filterbank, window_count

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amp * torch.sin(2 * torch.pi * freq * t)


def midi_hz(pitch: float) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def tiny_config(**encoder) -> MelodyConfig:
    return MelodyConfig(embed_dim=16, window_seconds=1.0, hop_seconds=0.6, min_seconds=0.5,
                        frontend=FrontendConfig(n_fft=2048, min_midi=48, octaves=4),
                        encoder=EncoderConfig(dim=32, layers=1, heads=2, ffn=64, patch_frames=5, dropout=0.0,
                                              **encoder))


# --------------------------------------------------------------------------------------------- front end
def test_filterbank_rows_are_normalised_and_cover_every_pitch():
    config = FrontendConfig()
    bank = pitch_filterbank(config)
    assert bank.shape == (72, config.n_fft // 2 + 1)
    assert np.allclose(bank.sum(axis=1), 1.0, atol=1e-5)
    assert (bank > 0).sum(axis=1).min() >= 1
    assert pitch_centres(config)[69 - 36] == pytest.approx(440.0)


@pytest.mark.parametrize("pitch", [57, 69, 76, 88])
def test_a_tone_peaks_in_its_own_pitch_bin(pitch):
    front = PitchSpectrogram(FrontendConfig())
    db = front(tone(midi_hz(pitch)))[0]
    assert db.shape == (72, SR // 480 + 1)
    assert int(db[:, 10:-10].mean(1).argmax()) == pitch - 36


def test_two_bins_per_semitone_resolve_a_quarter_tone():
    front = PitchSpectrogram(FrontendConfig(bins_per_semitone=2, n_fft=8192))
    db = front(tone(midi_hz(69.5)))[0]
    assert int(db[:, 10:-10].mean(1).argmax()) == 2 * (69 - 36) + 1


def test_chroma_rows_fold_octaves_into_pitch_classes():
    model = MelodyEmbedder(tiny_config())
    a3, a5 = model.features(tone(midi_hz(57)))[0], model.features(tone(midi_hz(81)))[0]
    for db in (a3, a5):
        x = model.encoder.prepare(db[None, :, :50])[0]
        assert x.shape[0] == 48 + 12 and x.min() >= -1.0 - 1e-6 and x.max() <= 1.0 + 1e-6
        assert int(x[48:, 10:40].mean(1).argmax()) == 9  # pitch class A (the lowest bin is a C)


# ------------------------------------------------------------------------------------------- windowing
@pytest.mark.parametrize(("seconds", "count"), [(1.0, 1), (4.0, 1), (4.9, 1), (5.0, 2), (7.0, 2), (8.0, 3),
                                                (10.0, 3), (30.0, 10)])
def test_window_count_keeps_windows_at_least_half_real(seconds, count):
    assert window_count(int(seconds * SR), MelodyConfig()) == count


def test_windows_are_cut_every_hop_and_padded_with_silence():
    config = tiny_config()
    model = MelodyEmbedder(config)
    db = torch.arange(48 * 100, dtype=torch.float32).view(48, 100)
    windows = model.windows(db, 4)  # needs 3 * 30 + 50 = 140 frames
    assert windows.shape == (4, 48, 50)
    assert torch.equal(windows[1], db[:, 30:80])
    assert torch.equal(windows[3][:, :10], db[:, 90:100])
    assert (windows[3][:, 10:] == config.frontend.floor_db).all()


# --------------------------------------------------------------------------------------------- encoder
def test_embeddings_are_unit_vectors_and_ignore_gain():
    model = MelodyEmbedder(tiny_config()).eval()
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32)) * 0.1
    wav = wav + tone(midi_hz(72), 3.0)
    emb = model.embed_signal(wav)
    assert emb.shape == (window_count(3 * SR, model.config), 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(len(emb)), atol=1e-5)
    assert torch.allclose(model.embed_signal(wav * 0.05), emb, atol=1e-4)


def test_embeddings_depend_on_pitch():
    model = MelodyEmbedder(tiny_config()).eval()
    a = model.embed_signal(tone(midi_hz(64), 1.0))
    b = model.embed_signal(tone(midi_hz(71), 1.0))
    assert not torch.allclose(a, b, atol=1e-3)


def test_encoder_rejects_wrong_window_shapes():
    model = MelodyEmbedder(tiny_config())
    with pytest.raises(ValueError, match="expected"):
        model.embed_features(torch.zeros(2, 48, 49))


def test_odd_head_count_needs_an_explicit_head_dim():
    with pytest.raises(ConfigError, match="head_dim"):
        EncoderConfig(dim=512, heads=6).validate()
    paper = preset("melody", "paper").model
    model = MelodyEmbedder(tiny_config(head_dim=8))
    assert model.encoder.blocks[0].attn.qkv.out_features == 3 * 2 * 8
    assert paper.encoder.heads == 6 and paper.encoder.dim == 512 and paper.encoder.layers == 12
    assert paper.encoder.ffn == 1024 and paper.embed_dim == 192 and paper.window_seconds == 4.0
    assert paper.hop_seconds == 3.0 and (paper.quantizer.num_quantizers, paper.quantizer.codebook_size) == (24, 512)


@pytest.mark.parametrize("change", [{"window_seconds": 1.01}, {"hop_seconds": 0.0}, {"min_seconds": 2.0},
                                    {"embed_dim": 1}])
def test_bad_model_configs_are_refused(change):
    config = tiny_config()
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(ConfigError):
        config.validate()


def test_presets_are_complete_training_configs():
    small = preset("melody", "small")
    assert isinstance(small, MelodyTrainingConfig)
    small.validate()
    small.model.validate()
    assert small.model.embed_dim == 192 and small.model.window_frames % small.model.encoder.patch_frames == 0


# ------------------------------------------------------------------------------------------------ loss
def unit(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_loss_is_zero_when_every_negative_is_beyond_the_margin():
    emb = unit((1, 0), (0.99, 0.1), (-1, 0), (-0.99, -0.1))
    loss, logs = semi_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), margin=0.2, gather=False)
    assert float(loss) == 0.0 and logs["active"] == 0.0 and logs["nn_acc"] == 1.0


def test_semi_hard_negative_is_the_closest_one_beyond_the_positive():
    angle = lambda deg: (np.cos(np.radians(deg)), np.sin(np.radians(deg)))  # noqa: E731
    # anchor at 0 deg, positive at 40 deg; negatives at 20 deg (harder than the positive), 50 and 60 deg
    emb = unit(angle(0), angle(40), angle(20), angle(50), angle(60))
    labels = torch.tensor([0, 0, 1, 2, 3])
    d = lambda a, b: 2 - 2 * np.cos(np.radians(b - a))  # noqa: E731
    loss, logs = semi_hard_triplet_loss(emb, labels, margin=0.5, gather=False)
    # anchor 0 deg, positive 40 deg: the semi-hard negative is the one at 50 deg (the closest beyond 40 deg).
    # anchor 40 deg, positive 0 deg: no negative is farther than 40 deg (they are 20, 10 and 20 deg away), so the
    # gentlest (farthest) negative is used, 20 deg away.
    expected = (max(0, d(0, 40) - d(0, 50) + 0.5) + max(0, d(40, 0) - d(40, 20) + 0.5)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert logs["active"] == 1.0


def test_same_melody_from_two_items_is_neither_positive_nor_negative():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    items = torch.tensor([0, 0, 1, 1, 1, 1])
    positive, negative = pair_masks(labels, items)
    assert positive[0, 1] and not positive[0, 2] and not negative[0, 2]
    assert negative[0, 4] and positive[4, 5] and not positive[0, 0]
    emb = unit((1, 0), (0.9, 0.2), (-1, 0), (-0.95, 0.1), (0, 1), (0.1, 1))
    loss, _ = semi_hard_triplet_loss(emb, labels, items=items, gather=False)
    loss_items, _ = semi_hard_triplet_loss(emb, labels, gather=False)
    assert float(loss) != pytest.approx(float(loss_items))


def test_loss_without_triplets_is_zero_with_a_gradient_path():
    emb = unit((1, 0), (0, 1)).requires_grad_(True)
    loss, logs = semi_hard_triplet_loss(emb, torch.tensor([0, 1]), gather=False)
    loss.backward()
    assert float(loss.detach()) == 0.0 and logs["active"] == 0.0


def test_training_the_encoder_on_the_loss_separates_melodies():
    torch.manual_seed(0)
    model = MelodyEmbedder(tiny_config())
    rng = np.random.default_rng(0)
    tunes = [rng.integers(55, 80, size=4) for _ in range(6)]

    def render(tune: np.ndarray, harmonics: int) -> torch.Tensor:
        t = np.arange(SR // 4) / SR
        notes = [sum(0.6**k * np.sin(2 * np.pi * midi_hz(p) * (k + 1) * t) for k in range(harmonics)) for p in tune]
        return torch.from_numpy(np.concatenate(notes).astype(np.float32)) * 0.2

    wavs = torch.stack([render(tune, h) for tune in tunes for h in (1, 4)])
    labels = torch.arange(len(tunes)).repeat_interleave(2)
    feats = model.features(wavs)[:, :, :50]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, logs = semi_hard_triplet_loss(model(feats), labels, margin=0.3, gather=False)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first and logs["nn_acc"] >= 0.8
