"""Musical facts measured from audio: tempo (librosa beat tracking) and key/mode (chroma key profiles).

Used to check that corpus labels agree with the rendered audio and, in evaluation, that generated music
follows the tempo and mode a prompt asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NAME_TO_PC = {name: pc for pc, name in enumerate(PITCH_CLASSES)} | {
    "Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0, "E#": 5, "Fb": 4,
}
# Krumhansl–Kessler probe-tone profiles (tonic first).
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_LIKE = ("major", "lydian", "mixolydian")
MINOR_LIKE = ("minor", "dorian", "phrygian", "aeolian", "locrian", "harmonic minor")


def pitch_class(name: str) -> int:
    """Pitch class 0–11 of a note name such as ``"F#"`` or ``"Bb"``."""
    try:
        return _NAME_TO_PC[name.strip()[0].upper() + name.strip()[1:]]
    except (KeyError, IndexError) as exc:
        raise ValueError(f"not a note name: {name!r}") from exc


def mode_family(mode: str) -> str | None:
    """``"major"`` or ``"minor"`` for a mode name, None for modes with no clear family (e.g. blues)."""
    mode = mode.lower()
    if mode in MAJOR_LIKE:
        return "major"
    if mode in MINOR_LIKE:
        return "minor"
    return None


def estimate_tempo(wav: np.ndarray, sample_rate: int, start_bpm: float = 120.0) -> float:
    """Global tempo in BPM from librosa's onset-strength beat tracker."""
    onset = librosa.onset.onset_strength(y=wav, sr=sample_rate)
    tempo = librosa.feature.tempo(onset_envelope=onset, sr=sample_rate, start_bpm=start_bpm)
    return float(np.atleast_1d(tempo)[0])


def tempo_agreement(estimated: float, labelled: float, tolerance: float = 0.05) -> str:
    """How an estimated tempo relates to the labelled one, within a relative ``tolerance``.

    ``"exact"``; ``"octave"`` at half or double; ``"metrical"`` at 2/3, 3/2, 1/3 or 3 (the beat heard as a
    dotted or triplet pulse, common in compound meters); else ``"wrong"``.
    """
    if labelled <= 0 or estimated <= 0:
        return "wrong"
    ratio = estimated / labelled
    for label, factors in (("exact", (1.0,)), ("octave", (0.5, 2.0)),
                           ("metrical", (2.0 / 3.0, 1.5, 1.0 / 3.0, 3.0))):
        if any(abs(ratio / f - 1.0) <= tolerance for f in factors):
            return label
    return "wrong"


@dataclass(frozen=True)
class KeyEstimate:
    tonic: int  # pitch class
    mode: str  # "major" or "minor"
    score: float  # correlation with the best profile

    @property
    def name(self) -> str:
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"


def key_from_chroma(chroma: np.ndarray) -> KeyEstimate:
    """Best of 24 major/minor keys by correlating mean chroma (``[12, frames]`` or ``[12]``) with key profiles."""
    profile = np.asarray(chroma, dtype=np.float64)
    if profile.ndim == 2:
        profile = profile.mean(axis=1)
    best = KeyEstimate(0, "major", -np.inf)
    for mode, template in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            score = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if score > best.score:
                best = KeyEstimate(tonic, mode, score)
    return best


def mode_score(chroma: np.ndarray) -> float:
    """How major (> 0) or minor (< 0) a chromagram sounds: the best major-key profile correlation minus the
    best minor-key one (each over the 12 tonics)."""
    profile = np.asarray(chroma, dtype=np.float64)
    if profile.ndim == 2:
        profile = profile.mean(axis=1)
    best = {}
    for mode, template in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        best[mode] = max(float(np.corrcoef(profile, np.roll(template, tonic))[0, 1]) for tonic in range(12))
    return best["major"] - best["minor"]


def estimate_key(wav: np.ndarray, sample_rate: int) -> KeyEstimate:
    """Key and mode of a clip from its constant-Q chromagram."""
    chroma = librosa.feature.chroma_cqt(y=wav, sr=sample_rate, hop_length=2048)
    return key_from_chroma(chroma)


def key_agreement(estimate: KeyEstimate, key: str, mode: str) -> str:
    """``"exact"`` (tonic and mode family), ``"relative"`` (relative major/minor), ``"fifth"`` (a fifth away,
    same family), else ``"wrong"``; modes outside major/minor families compare their tonic only."""
    tonic = pitch_class(key)
    family = mode_family(mode)
    if family is None:
        return "exact" if estimate.tonic == tonic else "wrong"
    if estimate.tonic == tonic and estimate.mode == family:
        return "exact"
    relative = (tonic + 9) % 12 if family == "major" else (tonic + 3) % 12
    if estimate.tonic == relative and estimate.mode != family:
        return "relative"
    if estimate.mode == family and (estimate.tonic - tonic) % 12 in (5, 7):
        return "fifth"
    return "wrong"
