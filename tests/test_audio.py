from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from musiclm.audio import (
    audio_info,
    crop_or_pad,
    load_audio,
    loudness_normalize,
    peak_normalize,
    resample,
    save_audio,
)
from musiclm.errors import AudioError


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_load_round_trip(tmp_path, sine, suffix):
    wav = sine(440.0, 0.5)
    path = save_audio(tmp_path / f"a{suffix}", wav, 24_000)
    back, sr = load_audio(path)
    assert sr == 24_000 and back.dtype == np.float32 and back.shape == wav.shape
    tol = 1e-6 if suffix == ".wav" else 1e-5  # FLAC is 24-bit PCM
    assert np.abs(back - wav).max() < tol


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, sine):
    save_audio(tmp_path / "x.wav", sine())
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


def test_load_resamples_and_downmixes(tmp_path, sine):
    left, right = sine(440.0, 1.0, 44_100), sine(440.0, 1.0, 44_100, amp=0.1)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44_100)
    wav, sr = load_audio(tmp_path / "stereo.wav", 24_000)
    assert sr == 24_000 and wav.ndim == 1 and abs(len(wav) - 24_000) <= 1
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 24_000 / len(wav) - 440.0) < 2.0
    assert abs(np.abs(wav).max() - 0.3) < 0.02  # mean of 0.5 and 0.1 amplitudes
    stereo, _ = load_audio(tmp_path / "stereo.wav", None, mono=False)
    assert stereo.shape == (2, 44_100)


def test_load_ogg_and_mp3(tmp_path, sine):
    wav = sine(330.0, 1.0)
    sf.write(tmp_path / "a.ogg", wav, 24_000, format="OGG", subtype="VORBIS")
    back, _ = load_audio(tmp_path / "a.ogg")
    assert abs(len(back) - len(wav)) < 100 and np.abs(back).max() > 0.3
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(tmp_path / "a.ogg"), str(tmp_path / "a.mp3")],
                       check=True)
        mp3, _ = load_audio(tmp_path / "a.mp3")
        assert np.abs(mp3).max() > 0.3


def test_missing_file_error_names_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    with pytest.raises(AudioError, match=r"bad\.wav: unsupported or corrupt"):
        load_audio(bad)


def test_unsupported_format(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match=r"notes\.txt: unsupported or corrupt"):
        load_audio(text)


def test_zero_length(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 24_000)
    with pytest.raises(AudioError, match=r"empty\.wav: zero-length"):
        load_audio(tmp_path / "empty.wav")


def test_all_silent(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(2400, dtype=np.float32), 24_000)
    with pytest.raises(AudioError, match=r"silence\.wav: audio is all silent"):
        load_audio(tmp_path / "silence.wav")
    wav, _ = load_audio(tmp_path / "silence.wav", allow_silent=True)
    assert wav.shape == (2400,)


def test_nan_and_inf(tmp_path, sine):
    wav = sine()
    wav[100] = np.nan
    sf.write(tmp_path / "nan.wav", wav, 24_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: audio contains NaN"):
        load_audio(tmp_path / "nan.wav")
    wav[100] = np.inf
    sf.write(tmp_path / "inf.wav", wav, 24_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(tmp_path / "inf.wav")


def test_save_rejects_unknown_suffix_and_nan(tmp_path, sine):
    with pytest.raises(AudioError, match="can only write"):
        save_audio(tmp_path / "x.mp3", sine())
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "x.wav", np.array([0.0, np.nan], dtype=np.float32))


def test_resample_preserves_frequency(sine):
    out = resample(sine(1000.0, 1.0, 48_000), 48_000, 24_000)
    assert len(out) == 24_000
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) - 1000) <= 1
    with pytest.raises(AudioError):
        resample(out, 0, 24_000)


def test_peak_and_loudness_normalize(sine):
    wav = sine(amp=0.1, seconds=2.0)
    assert abs(20 * np.log10(np.abs(peak_normalize(wav, -3.0)).max()) + 3.0) < 1e-4
    quiet = loudness_normalize(wav, 24_000, target_lufs=-20.0)
    import pyloudnorm

    assert abs(pyloudnorm.Meter(24_000).integrated_loudness(quiet.astype(np.float64)) + 20.0) < 0.1
    loud = loudness_normalize(wav, 24_000, target_lufs=0.0, max_peak_db=-1.0)
    assert np.abs(loud).max() <= 10 ** (-1 / 20) + 1e-6  # the peak limit wins over the loudness target
    assert np.array_equal(peak_normalize(np.zeros(10, np.float32)), np.zeros(10, np.float32))


def test_crop_or_pad():
    wav = np.arange(10, dtype=np.float32)
    assert crop_or_pad(wav, 4, 3).tolist() == [3, 4, 5, 6]
    padded = crop_or_pad(wav, 6, 8)
    assert padded.tolist() == [8, 9, 0, 0, 0, 0]
    assert crop_or_pad(np.ones((2, 5), np.float32), 7).shape == (2, 7)


def test_audio_info(tmp_path, sine):
    save_audio(tmp_path / "a.flac", sine(seconds=0.25))
    info = audio_info(tmp_path / "a.flac")
    assert info["sample_rate"] == 24_000 and info["channels"] == 1 and info["frames"] == 6000
