"""Melody conditioning in the pipeline on a tiny random model: conditions, looping, loading, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclm.audio import save_audio
from musiclm.cli import main
from musiclm.errors import AudioError
from musiclm.pipeline import GenerationError, MusicLM

pytestmark = pytest.mark.usefixtures("one_thread")

MELODY_SR = 16_000


@pytest.fixture(scope="module")
def melody_model_dir(melody_musiclm, tmp_path_factory):
    return melody_musiclm.save(tmp_path_factory.mktemp("melody-musiclm"))


def tune(seconds: float, sr: int = MELODY_SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    note = int(sr * 0.25)
    t = np.arange(note) / sr
    notes = [np.sin(2 * np.pi * 440 * 2 ** (rng.integers(-9, 10) / 12) * t) * np.hanning(note)
             for _ in range(int(np.ceil(seconds / 0.25)))]
    return (0.3 * np.concatenate(notes)[: int(sr * seconds)]).astype(np.float32)


def record_semantic_conditions(model: MusicLM, monkeypatch) -> list[tuple[int, torch.Tensor]]:
    """Patch the semantic stage so every window's (start, condition) is recorded."""
    stage = model.stages["semantic"]
    seen: list[tuple[int, torch.Tensor]] = []
    original = stage.generate

    def spy(frames, condition, batch, **kwargs):
        def recording(start, first_new, end):
            cond, uncond = condition(start, first_new, end)
            seen.append((start, cond.clone()))
            return cond, uncond

        return original(frames, recording, batch, **kwargs)

    monkeypatch.setattr(stage, "generate", spy)
    return seen


def test_each_semantic_window_sees_the_melody_under_it(melody_musiclm, monkeypatch):
    model = melody_musiclm
    seen = record_semantic_conditions(model, monkeypatch)
    melody = tune(3.0)
    audio, rate = model.generate_with_melody(["a calm piano piece", "loud drums"], melody, MELODY_SR, duration=7.0,
                                             num_samples=2, seed=0)
    assert rate == 24_000 and audio.shape == (4, 7 * 24_000) and bool(torch.isfinite(audio).all())
    spaces = model.stages["semantic"].config.tokens
    layout = model.stages["semantic"].layout
    expected = model.melody_tokens(melody, MELODY_SR, 7.0)[0]  # [windows, levels]
    offsets = torch.tensor([layout.vocab.offset(f"melody{q}") for q in range(spaces.melody_levels)])
    starts = sorted({start for start, _ in seen})
    assert len(starts) >= 2  # 7 s in 4 s windows with a 2 s stride: several windows
    first_melody = spaces.mulan_levels
    for start, cond in seen:
        assert cond.shape[0] == 4
        ids = cond[:, first_melody:first_melody + spaces.melody_slots * spaces.melody_levels]
        values = ids.view(4, spaces.melody_slots, spaces.melody_levels) - offsets
        first = int(round(start / spaces.semantic_rate / spaces.melody_hop_seconds))
        first = min(first, expected.shape[0] - spaces.melody_slots)
        assert torch.equal(values, expected[first:first + spaces.melody_slots].expand(4, -1, -1))


def test_text_only_generation_gives_the_null_melody(melody_musiclm, monkeypatch):
    model = melody_musiclm
    seen = record_semantic_conditions(model, monkeypatch)
    model.generate(["a calm piano piece"], duration=2.0, seed=0)
    layout = model.stages["semantic"].layout
    lo, hi = layout.vocab.range("melody_null")
    spaces = model.stages["semantic"].config.tokens
    ids = seen[0][1][0, spaces.mulan_levels:spaces.mulan_levels + spaces.melody_slots * spaces.melody_levels]
    assert bool(((ids >= lo) & (ids < hi)).all())


def test_a_short_melody_loops(melody_musiclm, monkeypatch):
    model = melody_musiclm
    passed = {}
    original = model.melody.tokens

    def capture(wav, rate):
        passed["wav"] = wav.clone()
        return original(wav, rate)

    monkeypatch.setattr(model.melody, "tokens", capture)
    melody = tune(1.5, sr=model.melody.sample_rate)
    tokens = model.melody_tokens(melody, model.melody.sample_rate, 6.0)
    wav = passed["wav"][0].numpy()
    n = len(melody)
    assert len(wav) == 6 * model.melody.sample_rate
    assert np.allclose(wav[:n], melody) and np.allclose(wav[n:2 * n], melody) and np.allclose(wav[3 * n:4 * n],
                                                                                              melody)
    assert tokens.shape[:2] == (1, model.melody.num_windows(6.0))


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros(MELODY_SR * 2, np.float32), "silent"),
    (lambda: np.full(MELODY_SR * 2, np.nan, np.float32), "NaN"),
    (lambda: tune(0.3), "at least"),
    (lambda: np.zeros((2, 3, 4), np.float32), "must be"),
])
def test_bad_melodies_get_clear_errors(melody_musiclm, make, message):
    with pytest.raises(AudioError, match=message):
        melody_musiclm.generate_with_melody(["a calm piano piece"], make(), MELODY_SR, duration=2.0)


def test_wrong_number_of_melodies_and_models_without_melody(melody_musiclm, tiny_musiclm):
    two = np.stack([tune(2.0, seed=1), tune(2.0, seed=2)])
    with pytest.raises(GenerationError, match="2 melodies for 3 prompts"):
        melody_musiclm.generate_with_melody(["a", "b", "c"], two, MELODY_SR, duration=2.0)
    assert not tiny_musiclm.supports_melody
    with pytest.raises(GenerationError, match="no melody conditioning"):
        tiny_musiclm.generate_with_melody(["a calm piano piece"], tune(2.0), MELODY_SR, duration=2.0)


def test_model_folder_round_trip_keeps_melody(melody_musiclm, melody_model_dir):
    loaded = MusicLM.from_pretrained(melody_model_dir)
    assert loaded.supports_melody
    assert loaded.melody.fingerprint() == melody_musiclm.melody.fingerprint()
    a, _ = loaded.generate_with_melody(["a calm piano piece"], tune(2.0), MELODY_SR, duration=2.0, seed=5)
    b, _ = melody_musiclm.generate_with_melody(["a calm piano piece"], tune(2.0), MELODY_SR, duration=2.0, seed=5)
    assert torch.allclose(a, b, atol=1e-4)


def test_a_foreign_melody_model_is_refused(melody_musiclm):
    from musiclm.random_model import _random_melody

    other = _random_melody("tiny", torch.Generator().manual_seed(99))
    m = melody_musiclm
    with pytest.raises(GenerationError, match="not the one the semantic stage was trained with"):
        MusicLM(m.mulan, m.codec, m.stages["semantic"], m.stages["coarse"], m.stages["fine"],
                m.semantic_tokenizer, melody=other)


def test_cli_melody(melody_model_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    hum = save_audio(tmp_path / "hum.wav", tune(2.0), MELODY_SR)
    out = tmp_path / "arranged.wav"
    assert main(["generate", "a calm piano piece", "--melody", str(hum), "-d", "2", "-o", str(out),
                 "--model", str(melody_model_dir), "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["melody"] == str(hum) and sf.info(str(out)).frames == 48_000
    # bad inputs: unreadable file, a model without melody, melody with a story
    (tmp_path / "broken.wav").write_bytes(b"RIFF not a wave")
    assert main(["generate", "x", "--melody", str(tmp_path / "broken.wav"), "--model", str(melody_model_dir),
                 "--no-progress"]) != 0
    assert "--melody" in capsys.readouterr().err
    assert main(["generate", "x", "--melody", str(hum), "--model", str(tiny_model_dir), "--no-progress"]) != 0
    assert "no melody conditioning" in capsys.readouterr().err
    assert main(["generate", "--story", "0:a;1:b", "--melody", str(hum), "--model", str(melody_model_dir)]) != 0
    assert "not with --story" in capsys.readouterr().err
