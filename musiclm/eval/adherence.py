"""Does generated music follow its prompt? Tempo, mode, melody (chroma) and MuLan cycle consistency (MCC).

- :func:`measure_tempo`: librosa's tempo estimate (:func:`musiclm.analysis.estimate_tempo`) refined by beat
  tracking: the beat period is the least-squares slope of beat time against beat index, which is far finer than
  the tempogram's lag grid (a 150 BPM click track reads 150.0, not 148).
- :func:`tempo_adherence`: within a relative tolerance (default 8 %) of the requested tempo, with half/double
  tempo (octave errors) reported separately.
- :func:`mode_adherence`: major/minor from chroma key templates (:func:`musiclm.analysis.estimate_key`).
- :func:`chroma_similarity`: MusicGen's melody metric: the cosine similarity of frame-wise one-hot (argmax)
  chromagrams of the melody and the generated audio at one frame rate, averaged over frames.
- :func:`mulan_similarity`: MCC, the mean cosine between MuLan text and audio embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import librosa
import numpy as np
import torch

from musiclm.analysis import estimate_key, estimate_tempo, key_agreement, mode_family
from musiclm.audio import resample
from musiclm.eval import EvalError

DEFAULT_TEMPO_TOLERANCE = 0.08
"""Relative tolerance of :func:`tempo_adherence` (±8 %)."""


def _mono(wav: np.ndarray | torch.Tensor, name: str = "wav") -> np.ndarray:
    array = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise EvalError(f"{name}: expected mono audio [samples], got shape {array.shape}")
    if array.size == 0:
        raise EvalError(f"{name}: zero-length audio")
    if not np.isfinite(array).all():
        raise EvalError(f"{name}: audio contains NaN or infinite samples")
    return array


# ----------------------------------------------------------------------------------------------- tempo
def measure_tempo(wav: np.ndarray | torch.Tensor, sr: int, hop_length: int = 256, min_beats: int = 4) -> float:
    """Global tempo in BPM: librosa's estimate, refined by a straight-line fit to the tracked beat times.

    Returns 0.0 for audio with no detectable onsets (silence). Like every beat tracker it may report half or
    double the notated tempo; :func:`tempo_adherence` reports those octave errors separately.
    """
    signal = _mono(wav)
    if float(np.abs(signal).max()) <= 1e-5:
        return 0.0
    coarse = estimate_tempo(signal, sr)
    if coarse <= 0:
        return 0.0
    onset = librosa.onset.onset_strength(y=signal, sr=sr, hop_length=hop_length)
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop_length, start_bpm=coarse,
                                       units="time")
    beats = np.asarray(beats, dtype=np.float64)
    if beats.size < min_beats:
        return float(coarse)
    period = float(np.polyfit(np.arange(beats.size), beats, 1)[0])
    if period <= 0:
        return float(coarse)
    refined = 60.0 / period
    # The fit refines the estimate; it must not move to another metrical level.
    return refined if abs(refined / coarse - 1.0) < 0.15 else float(coarse)


def tempo_adherence(requested_bpm: float, measured_bpm: float,
                    tolerance: float = DEFAULT_TEMPO_TOLERANCE) -> dict[str, Any]:
    """How a measured tempo relates to the requested one.

    ``category`` is ``"match"`` (within ``tolerance``), ``"half"`` or ``"double"`` (an octave error: the
    measurement is within ``tolerance`` of half or twice the request) or ``"wrong"``; ``within_tolerance`` is
    True only for ``"match"``. ``relative_error`` is ``measured / requested - 1``.
    """
    if requested_bpm <= 0:
        raise EvalError(f"requested tempo must be positive, got {requested_bpm}")
    if not 0 < tolerance < 1 / 3:
        raise EvalError(f"tolerance must be within (0, 1/3), got {tolerance}")
    measured = float(measured_bpm)
    ratio = measured / float(requested_bpm) if measured > 0 else 0.0
    category = "wrong"
    if abs(ratio - 1.0) <= tolerance:
        category = "match"
    elif abs(ratio / 0.5 - 1.0) <= tolerance:
        category = "half"
    elif abs(ratio / 2.0 - 1.0) <= tolerance:
        category = "double"
    return {"requested_bpm": float(requested_bpm), "measured_bpm": measured, "relative_error": ratio - 1.0,
            "category": category, "within_tolerance": category == "match",
            "octave_error": category in ("half", "double")}


def tempo_adherence_summary(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Rates over many :func:`tempo_adherence` results: ``accuracy`` (matches), ``octave_error_rate``,
    ``accuracy_with_octaves`` (either) and the median absolute relative error of the matches."""
    if not results:
        raise EvalError("no tempo results to summarise")
    n = len(results)
    matches = [r for r in results if r["category"] == "match"]
    octave = sum(1 for r in results if r["octave_error"])
    return {"count": float(n), "accuracy": len(matches) / n, "octave_error_rate": octave / n,
            "accuracy_with_octaves": (len(matches) + octave) / n,
            "median_abs_error_of_matches": float(np.median([abs(r["relative_error"]) for r in matches]))
            if matches else float("nan")}


# ------------------------------------------------------------------------------------------------ mode
def mode_adherence(wav: np.ndarray | torch.Tensor, sr: int, requested_mode: str,
                   requested_key: str | None = None) -> dict[str, Any]:
    """Whether a clip's estimated mode (major/minor, Krumhansl–Kessler templates on its chroma) is the one
    requested. Modes with no major/minor family (e.g. blues) give ``match: None``. With ``requested_key`` the
    key relation (``exact``, ``relative``, ``fifth``, ``wrong``) is reported too."""
    family = mode_family(requested_mode)
    estimate = estimate_key(_mono(wav), sr)
    out: dict[str, Any] = {"requested_mode": requested_mode, "requested_family": family,
                           "estimated_mode": estimate.mode, "estimated_key": estimate.name,
                           "score": estimate.score, "match": None if family is None else estimate.mode == family}
    if requested_key is not None:
        out["key_agreement"] = key_agreement(estimate, requested_key, requested_mode)
    return out


# ---------------------------------------------------------------------------------------------- melody
def chromagram(wav: np.ndarray, sr: int, n_fft: int, hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Chroma ``[12, frames]`` (librosa's STFT chroma filterbank) and the frame energies ``[frames]``."""
    from musiclm.features import chroma_and_rms

    chroma, rms = chroma_and_rms(torch.from_numpy(np.ascontiguousarray(wav)), sr, n_fft, hop_length)
    return chroma[0].numpy(), rms[0].numpy()


def chroma_similarity(melody_wav: np.ndarray | torch.Tensor, generated_wav: np.ndarray | torch.Tensor, sr: int,
                      generated_sr: int | None = None, window_seconds: float = 0.17, hop_seconds: float = 0.04,
                      silence_db: float = -40.0) -> float:
    """MusicGen's melody metric: mean over frames of the cosine between one-hot (argmax) chroma vectors.

    Both signals are brought to ``sr`` and analysed with the same window and hop, so their frames align; the
    longer one is cut to the shorter. A one-hot cosine is 1 where the dominant pitch classes agree and 0
    elsewhere, so the result is the fraction of frames whose strongest pitch class agrees. Frames where the
    melody is silent (``silence_db`` below its loudest frame) carry no melody and are left out; frames where
    the generated audio is silent count as 0. Both thresholds are relative, so the metric ignores gain.
    """
    melody = _mono(melody_wav, "melody_wav")
    generated = _mono(generated_wav, "generated_wav")
    if generated_sr is not None and generated_sr != sr:
        generated = resample(generated, generated_sr, sr)
    n_fft = int(2 ** np.round(np.log2(window_seconds * sr)))
    hop = max(1, int(round(hop_seconds * sr)))
    length = min(melody.size, generated.size)
    if length < n_fft // 2:
        raise EvalError(f"audio too short for chroma analysis ({length / sr:.3f} s)")
    chroma_m, rms_m = chromagram(melody[:length], sr, n_fft, hop)
    chroma_g, rms_g = chromagram(generated[:length], sr, n_fft, hop)
    gate = 10.0 ** (silence_db / 20.0)
    voiced = rms_m > gate * max(float(rms_m.max()), 1e-12)
    if not voiced.any():
        raise EvalError("the melody is silent: no frames to compare")
    audible = rms_g > gate * max(float(rms_g.max()), 1e-12)
    agree = (chroma_m.argmax(axis=0) == chroma_g.argmax(axis=0)) & audible
    return float(agree[voiced].mean())


# ------------------------------------------------------------------------------------------------- MCC
def _rows(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise EvalError(f"{name} must be [N, D], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise EvalError(f"{name} contains NaN or infinite values")
    return array


def mulan_cosines(text_emb: np.ndarray | torch.Tensor, audio_emb: np.ndarray | torch.Tensor) -> np.ndarray:
    """Cosine similarity of each (prompt text, generated audio) embedding pair: ``[N]``."""
    text, audio = _rows(text_emb, "text_emb"), _rows(audio_emb, "audio_emb")
    if text.shape != audio.shape:
        raise EvalError(f"text {text.shape} and audio {audio.shape} embeddings differ in shape")
    norms = np.linalg.norm(text, axis=1) * np.linalg.norm(audio, axis=1)
    if (norms == 0).any():
        raise EvalError("an embedding is all zeros")
    return (text * audio).sum(axis=1) / norms


def mulan_similarity(text_emb: np.ndarray | torch.Tensor, audio_emb: np.ndarray | torch.Tensor) -> float:
    """MuLan cycle consistency (MCC): the mean cosine between the MuLan text embedding of each prompt and the
    MuLan audio embedding of the music generated from it. Higher is better (MusicLM: 0.51)."""
    return float(mulan_cosines(text_emb, audio_emb).mean())
