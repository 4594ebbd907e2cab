"""Audio I/O: the only module that reads or writes audio files.

Everything inside musiclm is float32 mono at :data:`musiclm.SAMPLE_RATE` (24 kHz) unless a caller asks
otherwise. Errors name the file and the cause.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from musiclm import SAMPLE_RATE
from musiclm.errors import AudioError
from musiclm.fileio import atomic_path

READABLE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
WRITABLE_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}
SILENCE_PEAK = 1e-5
"""Peak amplitude (about -100 dBFS) at or below which a signal counts as all-silent."""


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = SAMPLE_RATE,
    *,
    mono: bool = True,
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 and resample it with soxr.

    Returns ``(wav, sample_rate)`` where ``wav`` is ``[samples]`` when ``mono`` (channels averaged)
    else ``[channels, samples]``. ``sample_rate=None`` keeps the file's rate.

    Raises :class:`AudioError` naming the file for: a missing file, an unsupported or corrupt format,
    zero-length audio, NaN/inf samples and (unless ``allow_silent``) all-silent audio.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise AudioError(f"{path}: unsupported or corrupt audio ({exc.error_string})") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: unsupported or corrupt audio ({exc})") from exc
    wav = np.ascontiguousarray(data.T)  # [channels, samples]
    try:
        validate_audio(wav, allow_silent=allow_silent)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from None
    if mono:
        wav = wav.mean(axis=0)
    if sample_rate is not None and sample_rate != file_rate:
        wav = resample(wav, file_rate, sample_rate)
        file_rate = sample_rate
    return wav.astype(np.float32, copy=False), int(file_rate)


def validate_audio(wav: np.ndarray, *, allow_silent: bool = False) -> None:
    """Raise :class:`AudioError` if ``wav`` is empty, non-finite or (unless allowed) all-silent."""
    if wav.size == 0 or wav.shape[-1] == 0:
        raise AudioError("zero-length audio")
    if not np.isfinite(wav).all():
        raise AudioError("audio contains NaN or infinite samples")
    if not allow_silent and float(np.abs(wav).max()) <= SILENCE_PEAK:
        raise AudioError("audio is all silent")


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``[samples]`` or ``[channels, samples]`` float audio with soxr (high quality)."""
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return wav.astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(wav.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def peak_normalize(wav: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so that the absolute peak sits at ``peak_db`` dBFS; all-zero input is returned unchanged."""
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 0.0:
        return wav
    return (wav * (10.0 ** (peak_db / 20.0) / peak)).astype(np.float32)


def loudness_normalize(
    wav: np.ndarray, sample_rate: int, target_lufs: float = -14.0, max_peak_db: float = -1.0
) -> np.ndarray:
    """Normalise integrated loudness (ITU-R BS.1770 via pyloudnorm) to ``target_lufs``.

    The gain is limited so the peak never exceeds ``max_peak_db``. Clips shorter than the 400 ms
    gating block fall back to peak normalisation.
    """
    import pyloudnorm

    mono = wav if wav.ndim == 1 else wav.mean(axis=0)
    if mono.shape[-1] < int(0.4 * sample_rate) + 1:
        return peak_normalize(wav, max_peak_db)
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(mono.astype(np.float64))
    if not np.isfinite(loudness):
        return wav
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    peak = float(np.abs(wav).max()) * gain
    max_peak = 10.0 ** (max_peak_db / 20.0)
    if peak > max_peak:
        gain *= max_peak / peak
    return (wav * gain).astype(np.float32)


def crop_or_pad(wav: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Return exactly ``length`` samples starting at ``offset``, zero-padding the end when short."""
    if length < 0 or offset < 0:
        raise ValueError("length and offset must be non-negative")
    piece = wav[..., offset : offset + length]
    missing = length - piece.shape[-1]
    if missing > 0:
        pad = [(0, 0)] * (piece.ndim - 1) + [(0, missing)]
        piece = np.pad(piece, pad)
    return np.ascontiguousarray(piece, dtype=np.float32)


def save_audio(path: str | os.PathLike[str], wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write ``[samples]`` or ``[channels, samples]`` audio as WAV (float32) or FLAC (24-bit), atomically.

    The file is written to a temporary name in the same folder and renamed into place, so a reader never
    sees a half-written file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_FORMATS:
        raise AudioError(f"{path}: can only write {', '.join(WRITABLE_FORMATS)} files")
    validate_audio(np.asarray(wav), allow_silent=True)
    fmt, subtype = WRITABLE_FORMATS[suffix]
    data = np.asarray(wav, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    return path


def audio_info(path: str | os.PathLike[str]) -> dict[str, object]:
    """Header facts of an audio file (rate, channels, frames, seconds, format) without decoding it."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: unsupported or corrupt audio ({exc})") from exc
    return {
        "path": str(path),
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "frames": int(info.frames),
        "seconds": float(info.duration),
        "format": info.format,
        "subtype": info.subtype,
    }
