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
