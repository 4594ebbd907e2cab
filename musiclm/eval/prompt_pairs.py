"""Does the output follow the prompt? Pairs of prompts that differ in one attribute, measured on the audio.

For each pair (fast vs slow, drums vs piano, major vs minor, energetic vs calm) a model generates both prompts
for several seeds; a signal measure that knows nothing of the model (the pace as note onsets per second, the
share of percussive energy from harmonic/percussive separation, a major-minor key-profile score from the
chromagram, loudness in LUFS) is taken on every clip. A pair *passes* when the "high" prompt's clips measure
higher on average and a one-sided Mann-Whitney U test over the seeds gives p < ``alpha``.

Each pair also names the corpus clips that carry its attribute (by their labels, :func:`reference_clips`), so
a measure can be checked on real music first
(:func:`~musiclm.eval.generation_checks.run_reference_pairs`): a measure that cannot tell the corpus's own
fast clips from its slow ones cannot judge a model trained on them. Beat-tracked tempo separates them only
weakly and not on every draw of clips (its octave errors blur the contrast), so the tempo pair decides on the
onset rate and reports the beat-tracked BPM beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Generate = Callable[[list[str], int], np.ndarray]
"""``(prompts, seed) -> audio [len(prompts), samples]`` at the evaluation's sample rate."""


def tempo_bpm(wav: np.ndarray, sr: int) -> float:
    """Tempo by beat tracking (BPM)."""
    from musiclm.eval.adherence import measure_tempo

    return float(measure_tempo(np.asarray(wav, dtype=np.float32), sr))


ONSET_MIN_FLUX_DB = 1.0
"""An onset must raise the log-mel spectrum by this many dB on average over the bands (librosa's onset strength)
above the local mean. A held chord stays below 0.5 and note attacks in real music reach 4 to 14; peak picking on
a normalised envelope would instead count the flicker of a held chord (or of codec noise) as onsets."""


def onset_rate(wav: np.ndarray, sr: int) -> float:
    """The pace: note onsets per second (spectral-flux peaks of at least :data:`ONSET_MIN_FLUX_DB`)."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) == 0 or float(np.abs(wav).max()) <= 1e-5:
        return 0.0
    envelope = librosa.onset.onset_strength(y=wav, sr=sr, hop_length=256)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=256, normalize=False,
                                        delta=ONSET_MIN_FLUX_DB)
    return float(len(onsets) / (len(wav) / sr))


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


Measure = Callable[[np.ndarray, int], float]
LabelTest = Callable[[Mapping[str, Any]], bool]
"""Whether a corpus clip's labels carry one side of a contrast."""


@dataclass(frozen=True)
class AttributePair:
    """Two prompts that differ in one attribute, the measure that should separate them, measures reported
    beside it (``also``: name -> measure, not part of the verdict) and, for :func:`reference_clips`, which
    labelled corpus clips carry each side."""

    name: str
    measure_name: str
    high: str  # expected to measure higher
    low: str
    measure: Measure
    also: tuple[tuple[str, Measure], ...] = ()
    reference_high: LabelTest | None = None
    reference_low: LabelTest | None = None


def _tempo_band_upper(name: str) -> float:
    from musiclm.data.vocabulary import TEMPO_BANDS

    return next(band.upper for band in TEMPO_BANDS if band.name == name)


def _is_fast(labels: Mapping[str, Any]) -> bool:  # the captioner's "fast" and "very fast" bands
    return float(labels.get("bpm", 0.0)) >= _tempo_band_upper("upbeat")


def _is_slow(labels: Mapping[str, Any]) -> bool:  # its "slow" and "very slow" bands
    bpm = float(labels.get("bpm", 0.0))
    return 0.0 < bpm < _tempo_band_upper("slow")


def _has_piano_no_drums(labels: Mapping[str, Any]) -> bool:  # GM programs 0-7 are the pianos
    return labels.get("has_drums") is False and any(0 <= int(p) <= 7 for p in labels.get("programs", ()))


PAIRS: tuple[AttributePair, ...] = (
    AttributePair("tempo", "onset rate (onsets/s)", "a fast pop song with piano, bass and drums",
                  "a slow pop song with piano, bass and drums", onset_rate, also=(("tempo (BPM)", tempo_bpm),),
                  reference_high=_is_fast, reference_low=_is_slow),
    AttributePair("instrument", "percussive energy share", "a solo drum kit groove", "a solo piano piece",
                  percussive_share, reference_high=lambda labels: labels.get("has_drums") is True,
                  reference_low=_has_piano_no_drums),
    AttributePair("mode", "major-minor key score", "a folk song in a major key played on acoustic guitar",
                  "a folk song in a minor key played on acoustic guitar", major_minor_score,
                  reference_high=lambda labels: labels.get("mode") == "major",
                  reference_low=lambda labels: labels.get("mode") == "minor"),
    AttributePair("energy", "loudness (LUFS)", "an energetic rock song", "a calm rock song", loudness_lufs,
                  reference_high=lambda labels: labels.get("energy") == "high",
                  reference_low=lambda labels: labels.get("energy") == "low"),
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
    also: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> high/low values, means, p

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
                "passed": self.passed, "also": self.also}


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
    high: list[list[np.ndarray]] = [[] for _ in pairs]
    low: list[list[np.ndarray]] = [[] for _ in pairs]
    for i, seed in enumerate(seeds):
        audio = np.asarray(generate(prompts, int(seed)))
        if audio.shape[0] != len(prompts):
            raise ValueError(f"generate returned {audio.shape[0]} clips for {len(prompts)} prompts")
        for index in range(len(pairs)):
            high[index].append(audio[2 * index])
            low[index].append(audio[2 * index + 1])
        if progress is not None:
            progress(i + 1, len(seeds))
    return [measure_pair(pair, high[i], low[i], sample_rate, alpha) for i, pair in enumerate(pairs)]


def measure_pair(pair: AttributePair, high: Sequence[np.ndarray], low: Sequence[np.ndarray], sample_rate: int,
                 alpha: float = 0.05) -> PairResult:
    """Measure two groups of clips (the high and the low side of ``pair``) and test the contrast, with the
    pair's ``also`` measures reported beside the verdict."""
    high_values = [pair.measure(wav, sample_rate) for wav in high]
    low_values = [pair.measure(wav, sample_rate) for wav in low]
    p, passed = compare(high_values, low_values, alpha)
    also = {}
    for name, measure in pair.also:
        h, lo = [measure(wav, sample_rate) for wav in high], [measure(wav, sample_rate) for wav in low]
        also[name] = {"high_values": h, "low_values": lo, "high_mean": float(np.mean(h)),
                      "low_mean": float(np.mean(lo)), "p_value": compare(h, lo, alpha)[0]}
    return PairResult(pair.name, pair.measure_name, pair.high, pair.low, high_values, low_values, p, passed, also)


def reference_clips(labels: Sequence[Mapping[str, Any]], pair: AttributePair, clips: int,
                    rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Indices of up to ``clips`` random clips whose labels carry the high side of ``pair`` and as many for the
    low side (clips carrying both are left out). Raises ``ValueError`` when the pair names no labels."""
    if pair.reference_high is None or pair.reference_low is None:
        raise ValueError(f"the {pair.name} pair names no corpus labels for its sides")
    sides = []
    for test, other in ((pair.reference_high, pair.reference_low), (pair.reference_low, pair.reference_high)):
        chosen = [i for i, lab in enumerate(labels) if test(lab) and not other(lab)]
        sides.append([chosen[j] for j in rng.permutation(len(chosen))[:clips]])
    return sides[0], sides[1]


def format_table(results: Sequence[PairResult], sides: tuple[str, str] = ("high prompt", "low prompt")) -> str:
    """A Markdown table of pair results (``sides`` names the two columns of values)."""
    lines = [f"| pair | measure | {sides[0]}: mean ± sd | {sides[1]}: mean ± sd | p (one-sided) | passes |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.measure_name} | {r.high_mean:.3g} ± {np.std(r.high_values):.2g} | "
                     f"{r.low_mean:.3g} ± {np.std(r.low_values):.2g} | {r.p_value:.3g} | "
                     f"{'yes' if r.passed else 'no'} |")
        for name, also in r.also.items():
            lines.append(f"| {r.name} | {name} (reported, not the verdict) | {also['high_mean']:.3g} ± "
                         f"{np.std(also['high_values']):.2g} | {also['low_mean']:.3g} ± "
                         f"{np.std(also['low_values']):.2g} | {also['p_value']:.3g} | - |")
    passed = sum(r.passed for r in results)
    lines.append(f"\n{passed} of {len(results)} pairs pass.")
    return "\n".join(lines)
