"""Does the output follow the prompt? Pairs of prompts that differ in one attribute, measured on the audio.

For each pair (fast vs slow, drums vs piano, major vs minor, energetic vs calm) a model generates both prompts
for several seeds; a signal measure that knows nothing of the model (tempo from beat tracking, the share of
percussive energy from harmonic/percussive separation, a major-minor key-profile score from the chromagram,
loudness in LUFS) is taken on every clip. A pair *passes* when the "high" prompt's clips measure higher on
average and a one-sided Mann-Whitney U test over the seeds gives p < ``alpha``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Generate = Callable[[list[str], int], np.ndarray]
"""``(prompts, seed) -> audio [len(prompts), samples]`` at the evaluation's sample rate."""


def tempo_bpm(wav: np.ndarray, sr: int) -> float:
    """Tempo by beat tracking (BPM)."""
    from musiclm.eval.adherence import measure_tempo

    return float(measure_tempo(np.asarray(wav, dtype=np.float32), sr))


def percussive_share(wav: np.ndarray, sr: int) -> float:
    """Share of the spectral energy in the percussive part of a harmonic/percussive separation (0..1)."""
    import librosa

    spec = np.abs(librosa.stft(np.asarray(wav, dtype=np.float32), n_fft=2048, hop_length=512))
    harmonic, percussive = librosa.decompose.hpss(spec)
    total = float((harmonic ** 2).sum() + (percussive ** 2).sum())
    return float((percussive ** 2).sum() / total) if total > 0 else 0.0


def major_minor_score(wav: np.ndarray, sr: int) -> float:
    """Best major-key minus best minor-key profile correlation of the constant-Q chromagram."""
    import librosa

    from musiclm.analysis import mode_score

    return mode_score(librosa.feature.chroma_cqt(y=np.asarray(wav, dtype=np.float32), sr=sr, hop_length=2048))


def loudness_lufs(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770, LUFS); -70 for silence."""
    import pyloudnorm

    wav = np.asarray(wav, dtype=np.float64)
    value = pyloudnorm.Meter(sr).integrated_loudness(wav) if len(wav) > 0.5 * sr else -70.0
    return float(max(value, -70.0)) if np.isfinite(value) else -70.0


@dataclass(frozen=True)
class AttributePair:
    """Two prompts that differ in one attribute and the measure that should separate them."""

    name: str
    measure_name: str
    high: str  # expected to measure higher
    low: str
    measure: Callable[[np.ndarray, int], float]


PAIRS: tuple[AttributePair, ...] = (
    AttributePair("tempo", "tempo (BPM)", "a fast pop song with piano, bass and drums",
                  "a slow pop song with piano, bass and drums", tempo_bpm),
    AttributePair("instrument", "percussive energy share", "a solo drum kit groove", "a solo piano piece",
                  percussive_share),
    AttributePair("mode", "major-minor key score", "a folk song in a major key played on acoustic guitar",
                  "a folk song in a minor key played on acoustic guitar", major_minor_score),
    AttributePair("energy", "loudness (LUFS)", "an energetic rock song", "a calm rock song", loudness_lufs),
)
"""The four contrasts of the generation issue: fast/slow, drums/piano, major/minor, energetic/calm."""


@dataclass
class PairResult:
    name: str
    measure_name: str
    high_prompt: str
    low_prompt: str
    high_values: list[float]
    low_values: list[float]
    p_value: float
    passed: bool

    @property
    def high_mean(self) -> float:
        return float(np.mean(self.high_values))

    @property
    def low_mean(self) -> float:
        return float(np.mean(self.low_values))

    def to_dict(self) -> dict:
        return {"name": self.name, "measure": self.measure_name, "high_prompt": self.high_prompt,
                "low_prompt": self.low_prompt, "high_mean": self.high_mean, "low_mean": self.low_mean,
                "high_std": float(np.std(self.high_values)), "low_std": float(np.std(self.low_values)),
                "high_values": self.high_values, "low_values": self.low_values, "p_value": self.p_value,
                "passed": self.passed}


def compare(high: Sequence[float], low: Sequence[float], alpha: float = 0.05) -> tuple[float, bool]:
    """One-sided Mann-Whitney U p-value that ``high`` > ``low``, and whether it passes at ``alpha``."""
    from scipy.stats import mannwhitneyu

    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    if np.allclose(high, high[0]) and np.allclose(low, low[0]) and np.isclose(high[0], low[0]):
        return 1.0, False
    p = float(mannwhitneyu(high, low, alternative="greater").pvalue)
    return p, bool(high.mean() > low.mean() and p < alpha)


def evaluate_pairs(generate: Generate, sample_rate: int, seeds: Sequence[int] = tuple(range(8)),
                   pairs: Sequence[AttributePair] = PAIRS, alpha: float = 0.05,
                   progress: Callable[[int, int], None] | None = None) -> list[PairResult]:
    """Generate every pair's two prompts for every seed (one batch per seed) and test each contrast."""
    prompts = [p for pair in pairs for p in (pair.high, pair.low)]
    values: dict[str, list[float]] = {p: [] for p in prompts}
    for i, seed in enumerate(seeds):
        audio = np.asarray(generate(prompts, int(seed)))
        if audio.shape[0] != len(prompts):
            raise ValueError(f"generate returned {audio.shape[0]} clips for {len(prompts)} prompts")
        for index, pair in enumerate(pairs):
            values[pair.high].append(pair.measure(audio[2 * index], sample_rate))
            values[pair.low].append(pair.measure(audio[2 * index + 1], sample_rate))
        if progress is not None:
            progress(i + 1, len(seeds))
    results = []
    for pair in pairs:
        p, passed = compare(values[pair.high], values[pair.low], alpha)
        results.append(PairResult(pair.name, pair.measure_name, pair.high, pair.low, values[pair.high],
                                  values[pair.low], p, passed))
    return results


def format_table(results: Sequence[PairResult]) -> str:
    """A Markdown table of pair results."""
    lines = ["| pair | measure | high prompt: mean ± sd | low prompt: mean ± sd | p (one-sided) | passes |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.measure_name} | {r.high_mean:.3g} ± {np.std(r.high_values):.2g} | "
                     f"{r.low_mean:.3g} ± {np.std(r.low_values):.2g} | {r.p_value:.3g} | "
                     f"{'yes' if r.passed else 'no'} |")
    passed = sum(r.passed for r in results)
    lines.append(f"\n{passed} of {len(results)} pairs pass.")
    return "\n".join(lines)
