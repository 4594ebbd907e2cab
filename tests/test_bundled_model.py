"""The bundled default model (slow): a prompt becomes non-silent 24 kHz audio of the requested length."""

from __future__ import annotations

import pytest
import torch

from musiclm.bundled import PRETRAINED
from musiclm.pipeline import COMPONENTS, MusicLM

pytestmark = pytest.mark.slow

BUNDLED = all((PRETRAINED / sub).is_dir() for sub in COMPONENTS.values())


@pytest.mark.skipif(not BUNDLED, reason="no bundled model in musiclm/pretrained/ yet (see docs/MODEL_CARD.md)")
def test_bundled_model_makes_music_of_the_requested_length():
    torch.set_num_threads(1)
    model = MusicLM.from_pretrained()
    audio, rate = model.generate(["an upbeat funk track with slap bass and brass"], duration=3.0, seed=0)
    assert rate == 24_000
    assert audio.shape == (1, 72_000)
    assert bool(torch.isfinite(audio).all())
    rms = float(audio.pow(2).mean().sqrt())
    assert rms > 1e-3  # not silent
    assert float(audio.abs().max()) <= 1.0 + 1e-3


@pytest.mark.skipif(not BUNDLED, reason="no bundled model in musiclm/pretrained/ yet (see docs/MODEL_CARD.md)")
def test_bundled_model_takes_a_melody():
    import numpy as np

    torch.set_num_threads(1)
    model = MusicLM.from_pretrained()
    assert model.supports_melody and model.contour_stages == ["semantic", "coarse"]  # and melody tokens
    sr = 16_000
    t = np.arange(int(sr * 0.4)) / sr
    notes = [np.sin(2 * np.pi * f * t) * np.hanning(len(t)) for f in (262, 294, 330, 349, 392)]
    hum = (0.3 * np.concatenate(notes)).astype(np.float32)  # 2 s, looped by the model
    audio, rate = model.generate_with_melody(["a calm piano piece"], hum, sr, duration=3.0, seed=0)
    assert rate == 24_000 and audio.shape == (1, 72_000)
    assert bool(torch.isfinite(audio).all()) and float(audio.pow(2).mean().sqrt()) > 1e-3


def test_bundled_files_fit_the_size_limits():
    """Weights ship in the package: fp16 safetensors, at most 16 MB a file and 64 MB in all."""
    files = [p for p in PRETRAINED.rglob("*") if p.is_file()]
    sizes = {str(p.relative_to(PRETRAINED)): p.stat().st_size for p in files}
    assert all(size <= 16_000_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 64_000_000, sum(sizes.values())
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]  # nothing unpickled
