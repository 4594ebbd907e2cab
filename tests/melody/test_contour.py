"""The pitch contour: dominant pitch class per semantic frame, silence, batching, looping, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musiclm.errors import AudioError
from musiclm.melody.contour import CONTOUR_VALUES, SILENT, PitchContour, loop_contour

SR = 24_000


def tone(midi: int, seconds: float, sr: int = SR, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (level * np.sin(2 * np.pi * 440.0 * 2 ** ((midi - 69) / 12) * t)).astype(np.float32)


def test_a_scale_gives_its_pitch_classes_frame_by_frame():
    notes = [60, 62, 64, 65, 67, 69, 71, 72]  # C major, 0.4 s each: 10 frames of 40 ms
    wav = np.concatenate([tone(m, 0.4) for m in notes])
    contour = PitchContour()(wav, SR)
    assert contour.shape == (1, 80) and contour.dtype == np.int8
    for i, midi in enumerate(notes):
        middle = contour[0, i * 10 + 3: i * 10 + 7]  # away from the note changes (0.17 s window)
        assert np.all(middle == midi % 12), (midi, middle)


def test_quiet_frames_are_silent_and_the_gate_is_relative():
    wav = np.concatenate([tone(64, 1.0), np.zeros(SR, np.float32), tone(67, 1.0)])
    for gain in (1.0, 0.01):
        contour = PitchContour()(wav * gain, SR)[0]
        assert np.all(contour[30:45] == SILENT)
        assert np.all(contour[5:20] == 4) and np.all(contour[55:70] == 7)


def test_batches_give_each_row_its_own_contour_and_frames_count_started_frames():
    rows = np.stack([tone(60, 1.01), tone(66, 1.01)])
    contour = PitchContour()(torch.from_numpy(rows), SR)
    assert contour.shape == (2, 26)  # 1.01 s = 25.25 frames of 40 ms
    assert np.all(contour[0, 3:22] == 0) and np.all(contour[1, 3:22] == 6)
    assert PitchContour().frames(SR * 10, SR) == 250
    assert contour.max() < CONTOUR_VALUES


def test_bad_audio_and_rates_are_clear_errors():
    with pytest.raises(AudioError, match="NaN"):
        PitchContour()(np.array([0.1, np.nan] * 2000, np.float32), SR)
    with pytest.raises(AudioError, match="divisible"):
        PitchContour()(tone(60, 1.0, sr=11_111), 11_111)
    with pytest.raises(ValueError):
        PitchContour(frame_rate=0)


def test_fingerprint_names_the_settings():
    assert PitchContour().fingerprint() == PitchContour().fingerprint()
    assert PitchContour().fingerprint() != PitchContour(silence_db=-30.0).fingerprint()
    assert PitchContour().identity()["values"] == CONTOUR_VALUES


def test_loop_contour_repeats_from_the_start():
    looped = loop_contour(np.array([[1, 2, 3]]), 7)
    assert looped.tolist() == [[1, 2, 3, 1, 2, 3, 1]]
    with pytest.raises(AudioError):
        loop_contour(np.zeros((1, 0)), 3)
