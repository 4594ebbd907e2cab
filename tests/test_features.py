from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from musiclm.features import Chroma, LogMel, frame_rms, frame_signal, num_frames


def test_log_mel_shape_and_batching(sine):
    mel = LogMel(n_mels=64, hop_length=240)
    wav = torch.from_numpy(np.stack([sine(220.0), sine(880.0)]))
    out = mel(wav)
    assert out.shape == (2, 64, num_frames(24_000, 240))
    single = mel(wav[1])
    assert torch.allclose(out[1:2], single, atol=1e-4)
    # the louder mel band follows the tone's frequency
    assert out[1].mean(-1).argmax() > out[0].mean(-1).argmax()


def test_log_mel_matches_librosa(sine):
    wav = sine(440.0, 0.5)
    ours = LogMel(n_mels=80, n_fft=1024, hop_length=256)(torch.from_numpy(wav))[0].numpy()
    ref = librosa.feature.melspectrogram(y=wav, sr=24_000, n_fft=1024, hop_length=256, n_mels=80, power=2.0)
    assert np.allclose(ours, np.log(ref + 1e-5), atol=1e-3)


def test_chroma_finds_pitch_class(sine):
    chroma = Chroma()(torch.from_numpy(sine(261.63, 1.0)))  # C4
    assert chroma.shape[1] == 12
    assert int(chroma[0].mean(-1).argmax()) == 0
    a = Chroma()(torch.from_numpy(sine(440.0, 1.0)))
    assert int(a[0].mean(-1).argmax()) == 9


def test_frame_signal_covers_all_samples():
    wav = torch.arange(10, dtype=torch.float32)
    frames = frame_signal(wav, 4, 3)
    assert frames.shape == (1, 3, 4)
    assert frames[0, -1].tolist() == [6, 7, 8, 9]
    short = frame_signal(torch.ones(2), 4, 2)
    assert short.shape == (1, 1, 4) and short[0, 0].tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError):
        frame_signal(torch.ones(2), 4, 2, pad_end=False)


def test_frame_rms(sine):
    rms = frame_rms(torch.from_numpy(sine(amp=0.5)))
    assert torch.allclose(rms[0, 1:-1], torch.full_like(rms[0, 1:-1], 0.5 / np.sqrt(2)), atol=1e-2)


def test_rejects_bad_shape():
    with pytest.raises(ValueError, match="expected"):
        LogMel()(torch.zeros(1, 1, 100))
