from __future__ import annotations

import numpy as np
import pytest

from musiclm.analysis import (
    estimate_key,
    estimate_tempo,
    key_agreement,
    key_from_chroma,
    pitch_class,
    tempo_agreement,
)

SR = 22_050


def clicks(bpm: float, seconds: float = 12.0) -> np.ndarray:
    wav = np.zeros(int(seconds * SR), dtype=np.float32)
    click = np.hanning(200).astype(np.float32) * np.sin(np.arange(200) * 0.5)
    for t in np.arange(0.0, seconds - 0.1, 60.0 / bpm):
        i = int(t * SR)
        wav[i : i + 200] += click
    return wav


@pytest.mark.parametrize("bpm", [80.0, 100.0, 128.0, 150.0])
def test_tempo_of_click_tracks(bpm):
    estimated = estimate_tempo(clicks(bpm), SR)
    assert tempo_agreement(estimated, bpm) in ("exact", "octave"), estimated


def test_tempo_agreement_classes():
    assert tempo_agreement(121.0, 120.0) == "exact"
    assert tempo_agreement(60.5, 120.0) == "octave"
    assert tempo_agreement(90.0, 120.0) == "wrong"


def chord_tones(pcs: list[int], seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wav = np.zeros_like(t)
    for pc in pcs:
        for octave in (3, 4):
            freq = 440.0 * 2 ** ((pc + 12 * (octave + 1) - 69) / 12)
            wav += np.sin(2 * np.pi * freq * t)
    return (0.1 * wav).astype(np.float32)


def test_key_of_scale_tones():
    # A-minor tonic triad held with the scale's colour notes
    wav = np.concatenate([chord_tones([9, 0, 4]), chord_tones([2, 5, 9]), chord_tones([4, 8, 11]),
                          chord_tones([9, 0, 4])])
    estimate = estimate_key(wav, SR)
    assert estimate.name == "A minor"
    assert key_agreement(estimate, "A", "minor") == "exact"
    assert key_agreement(estimate, "C", "major") == "relative"
    assert key_agreement(estimate, "A", "dorian") == "exact"


def test_key_from_chroma_major_profile():
    chroma = np.zeros(12)
    chroma[[7, 11, 2]] = 1.0  # G major triad
    chroma[[0, 4, 9, 6]] = 0.4
    assert key_from_chroma(chroma).name == "G major"


def test_pitch_class_names():
    assert pitch_class("Bb") == 10 and pitch_class("f#") == 6 and pitch_class("C") == 0
    with pytest.raises(ValueError):
        pitch_class("H")
