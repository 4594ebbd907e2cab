"""Tempo, mode, melody (chroma) and MuLan-cosine adherence on synthetic audio with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from musiclm.eval import EvalError
from musiclm.eval.adherence import (
    chroma_similarity,
    measure_tempo,
    mode_adherence,
    mulan_cosines,
    mulan_similarity,
    tempo_adherence,
    tempo_adherence_summary,
)

SR = 24_000


def click_track(bpm: float, seconds: float = 10.0) -> np.ndarray:
    """Short 1 kHz clicks on every beat."""
    wav = np.zeros(int(seconds * SR), dtype=np.float32)
    t = np.arange(int(0.03 * SR)) / SR
    click = (np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 150)).astype(np.float32)
    beat = 0
    while (start := int(round(beat * 60.0 / bpm * SR))) < wav.size:
        end = min(wav.size, start + click.size)
        wav[start:end] += click[: end - start]
        beat += 1
    return wav


def tone(midi: int, seconds: float, amp: float = 0.3, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    freq = 440.0 * 2 ** ((midi - 69) / 12)
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 2.0)
    return (amp * env * sum(0.5**k * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(harmonics))).astype(
        np.float32)


def melody(notes: list[int], **kwargs) -> np.ndarray:
    return np.concatenate([tone(n, 0.4, **kwargs) for n in notes])


def chords(progression: list[list[int]]) -> np.ndarray:
    return np.concatenate([sum(tone(n, 2.0, amp=0.2) for n in chord) for chord in progression])


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_measure_tempo_on_click_tracks(bpm):
    assert measure_tempo(click_track(bpm), SR) == pytest.approx(bpm, rel=0.03)


def test_measure_tempo_of_silence_is_zero():
    assert measure_tempo(np.zeros(SR * 2, dtype=np.float32), SR) == 0.0


def test_tempo_adherence_categories():
    assert tempo_adherence(120, 125)["category"] == "match"
    assert tempo_adherence(120, 125)["within_tolerance"] is True
    half = tempo_adherence(120, 61)
    assert half["category"] == "half" and half["octave_error"] and not half["within_tolerance"]
    double = tempo_adherence(90, 178)
    assert double["category"] == "double" and double["octave_error"]
    assert tempo_adherence(120, 140)["category"] == "wrong"
    assert tempo_adherence(120, 0.0)["category"] == "wrong"
    assert tempo_adherence(100, 107.9)["category"] == "match" and tempo_adherence(100, 108.1)["category"] == "wrong"
    assert tempo_adherence(100, 110, tolerance=0.12)["relative_error"] == pytest.approx(0.10)
    with pytest.raises(EvalError):
        tempo_adherence(0, 120)


def test_tempo_summary():
    results = [tempo_adherence(120, m) for m in (121, 119, 60, 240, 150)]
    summary = tempo_adherence_summary(results)
    assert summary["accuracy"] == pytest.approx(0.4)
    assert summary["octave_error_rate"] == pytest.approx(0.4)
    assert summary["accuracy_with_octaves"] == pytest.approx(0.8)


def test_mode_adherence_major_and_minor():
    major = mode_adherence(chords([[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]]), SR, "major", "C")
    assert major["estimated_mode"] == "major" and major["match"] is True and major["key_agreement"] == "exact"
    minor = mode_adherence(chords([[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]), SR, "dorian")
    assert minor["requested_family"] == "minor" and minor["match"] is True
    wrong = mode_adherence(chords([[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]]), SR, "major")
    assert wrong["match"] is False
    assert mode_adherence(chords([[60, 64, 67]]), SR, "blues")["match"] is None


def test_chroma_similarity_same_melody_louder_and_different_melody():
    tune = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 64]
    other = [66, 61, 70, 63, 68, 59, 73, 58, 66, 61, 70, 63, 68, 59, 73, 58]
    reference = melody(tune)
    louder = melody(tune, amp=0.9, harmonics=6)  # re-rendered: louder and brighter
    assert chroma_similarity(reference, louder, SR) == pytest.approx(1.0, abs=0.02)
    assert chroma_similarity(reference, melody(other), SR) < 0.2
    # A 16 kHz rendering is resampled to the melody's rate first.
    from musiclm.audio import resample

    assert chroma_similarity(reference, resample(louder, SR, 16_000), SR, generated_sr=16_000) > 0.95
    # Silence where the melody plays counts as disagreement.
    assert chroma_similarity(reference, np.zeros_like(reference), SR) == 0.0
    with pytest.raises(EvalError, match="silent"):
        chroma_similarity(np.zeros(SR, dtype=np.float32), reference, SR)


def test_mulan_similarity():
    text = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    audio = np.array([[2.0, 0.0], [1.0, 0.0], [4.0, 3.0]])
    np.testing.assert_allclose(mulan_cosines(text, audio), [1.0, 0.0, 24.0 / 25.0])
    assert mulan_similarity(text, audio) == pytest.approx((1.0 + 0.0 + 0.96) / 3)
    with pytest.raises(EvalError, match="shape"):
        mulan_similarity(text, audio[:2])
    with pytest.raises(EvalError, match="zeros"):
        mulan_similarity(np.zeros((1, 2)), np.ones((1, 2)))
