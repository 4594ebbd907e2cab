"""A semantic stage that follows a frame-rate pitch contour, in the pipeline on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.melody.contour import PitchContour
from musiclm.pipeline import GenerationError, MusicLM

pytestmark = pytest.mark.usefixtures("one_thread")

MELODY_SR = 16_000


def scale(seconds: float, sr: int = MELODY_SR) -> np.ndarray:
    """A rising line of 0.5 s notes, C4 upwards."""
    note = int(sr * 0.5)
    t = np.arange(note) / sr
    notes = [0.3 * np.sin(2 * np.pi * 261.63 * 2 ** (k / 12) * t) for k in range(int(np.ceil(seconds / 0.5)))]
    return np.concatenate(notes)[: int(sr * seconds)].astype(np.float32)


def spy_contours(model: MusicLM, monkeypatch, stage_name: str = "semantic") -> list:
    stage = model.stages[stage_name]
    seen: list = []
    original = stage.generate

    def spy(frames, condition, batch, **kwargs):
        seen.append(kwargs.get("contour"))
        return original(frames, condition, batch, **kwargs)

    monkeypatch.setattr(stage, "generate", spy)
    return seen


def test_the_stages_get_the_melodys_contour_looped_to_the_duration(contour_musiclm, monkeypatch):
    model = contour_musiclm
    assert model.supports_melody and not model.uses_melody_tokens
    assert model.contour_stages == ["semantic", "coarse"]
    seen = spy_contours(model, monkeypatch)
    coarse_seen = spy_contours(model, monkeypatch, "coarse")
    melody = scale(1.5)
    model.generate_with_melody(["a calm piano piece", "a jazz trio"], melody, MELODY_SR, duration=4.0, seed=0)
    contour = seen[0]
    from musiclm.audio import resample

    own = PitchContour()(resample(melody, MELODY_SR, model.sample_rate), model.sample_rate)[0]
    assert contour.shape == (2, 100)
    assert contour[0, :len(own)].tolist() == own.tolist()
    assert contour[1, len(own):2 * len(own)].tolist() == own.tolist()  # looped
    assert torch.equal(coarse_seen[0], contour.repeat_interleave(2, dim=1))  # one value per acoustic frame
    model.generate(["a calm piano piece"], duration=2.0, seed=0)
    assert seen[1] is None and coarse_seen[1] is None  # text only: no contour


def test_the_contour_changes_the_semantic_tokens_deterministically(contour_musiclm, monkeypatch):
    model = contour_musiclm
    stage = model.stages["semantic"]
    tokens: list[torch.Tensor] = []
    original = stage.generate

    def keep(frames, condition, batch, **kwargs):
        out = original(frames, condition, batch, **kwargs)
        tokens.append(out)
        return out

    monkeypatch.setattr(stage, "generate", keep)
    with_melody, _ = model.generate_with_melody(["a calm piano piece"], scale(2.0), MELODY_SR, duration=2.0, seed=3)
    again, _ = model.generate_with_melody(["a calm piano piece"], scale(2.0), MELODY_SR, duration=2.0, seed=3)
    model.generate(["a calm piano piece"], duration=2.0, seed=3)
    assert torch.equal(with_melody, again) and torch.equal(tokens[0], tokens[1])
    assert not torch.equal(tokens[0], tokens[2])


def test_a_folder_round_trip_keeps_the_contour_stage(contour_musiclm, tmp_path):
    folder = contour_musiclm.save(tmp_path / "model")
    loaded = MusicLM.from_pretrained(folder)
    assert loaded.supports_melody and loaded.stages["semantic"].config.tokens.contour_values == 13
    a, _ = loaded.generate_with_melody(["a calm piano piece"], scale(2.0), MELODY_SR, duration=2.0, seed=1)
    b, _ = contour_musiclm.generate_with_melody(["a calm piano piece"], scale(2.0), MELODY_SR, duration=2.0, seed=1)
    assert torch.allclose(a, b, atol=1e-4)


def test_mismatched_contour_settings_and_models_without_melody_are_refused(contour_musiclm, tiny_musiclm):
    from dataclasses import replace

    stage = contour_musiclm.stages["semantic"]
    original = stage.config
    stage.config = replace(original, contour_fingerprint="0" * 16)
    try:
        with pytest.raises(GenerationError, match="other settings"):
            contour_musiclm.generate_with_melody(["x"], scale(2.0), MELODY_SR, duration=2.0)
    finally:
        stage.config = original
    with pytest.raises(GenerationError, match="no melody conditioning"):
        tiny_musiclm.generate_story([(0.0, "x")], 2.0, melody_audio=scale(2.0), melody_sample_rate=MELODY_SR)
