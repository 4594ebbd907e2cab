"""Are the tokens semantic? Purity and mutual information of 25 Hz tokens with the ground truth of rendered clips.

Every frame ``i`` (the 40 ms from ``i / 25`` s, labelled at its centre) of a held-out clip with an annotations
sidecar gets up to four labels:

- ``melody_pc``: pitch class of the melody note sounding (frames without one are left out);
- ``chord_root``: root pitch class of the chord;
- ``beat_pos``: position within the beat in 4 bins (between two annotated beats);
- ``lead_family``: General MIDI family of the lead instrument (frames where the melody sounds): timbre.

For each label: **purity** (the share of frames whose label is their token's most common label) and **NMI**
(normalised mutual information, arithmetic mean of the entropies, as scikit-learn), plus the share of the
label's entropy the tokens explain (``pnmi`` = I(token; label) / H(label), HuBERT's "phone-normalised MI").
Good semantic tokens score high on the first three and low on ``lead_family``. Token sources compared at
the same token rate: the semantic tokenizer, k-means on raw log-mel frames (baseline a), the codec's first
RVQ level (baseline b, when a codec is given), k-means on chroma (a reference: what a hand-made pitch-class
feature reaches frame by frame) and uniformly random tokens (the estimators' floor: with K tokens and N
frames, mutual information is over-estimated by about (K - 1)(L - 1) / 2N nats for L label values).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musiclm import SAMPLE_RATE
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ClipRecord, ManifestError, read_manifest
from musiclm.errors import MusicLMError
from musiclm.semantic.model import truncate
from musiclm.semantic.targets import FrameFeatures, fit_codebook, fit_kmeans, subsample_rows
from musiclm.semantic.tokenizer import SemanticTokenizer, round_to_fp16

log = logging.getLogger("musiclm.semantic")

TOKEN_RATE = 25
LABELS = ("melody_pc", "chord_root", "beat_pos", "lead_family")
MUSICAL_LABELS = ("melody_pc", "chord_root", "beat_pos")
BEAT_BINS = 4
GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
               "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")

Tokenize = Callable[[np.ndarray], np.ndarray]
"""A token source: ``[T]`` float32 audio at 24 kHz -> ``[ceil(T / 960)]`` integer tokens."""


# ------------------------------------------------------------------------------------------- labels
def frame_times(frames: int, rate: int = TOKEN_RATE) -> np.ndarray:
    """Centre time (seconds) of each frame."""
    return (np.arange(frames) + 0.5) / rate


def span_values(spans: Sequence[Sequence[Any]], times: np.ndarray, column: int = 2) -> np.ndarray:
    """Value (``span[column]``, an int) of the span ``[start, end)`` covering each time; -1 where none does."""
    out = np.full(len(times), -1, dtype=np.int64)
    for span in spans:
        start, end, value = float(span[0]), float(span[1]), span[column]
        out[(times >= start) & (times < end)] = int(value)
    return out


def beat_positions(beats: Sequence[float], times: np.ndarray, bins: int = BEAT_BINS) -> np.ndarray:
    """Bin (0..bins-1) of each time within its beat; -1 before the first or after the last annotated beat."""
    out = np.full(len(times), -1, dtype=np.int64)
    beats = np.asarray(sorted(beats), dtype=np.float64)
    if beats.size < 2:
        return out
    index = np.searchsorted(beats, times, side="right") - 1
    inside = (index >= 0) & (index < beats.size - 1)
    k = index[inside]
    phase = (times[inside] - beats[k]) / np.maximum(beats[k + 1] - beats[k], 1e-6)
    out[inside] = np.clip((phase * bins).astype(np.int64), 0, bins - 1)
    return out


def lead_family(labels: dict[str, Any]) -> int:
    """GM family (program // 8) of the first pitched ``lead`` part; -1 without one."""
    for part in labels.get("parts", []):
        if part.get("role") == "lead" and not part.get("is_drum", False):
            return int(part["program"]) // 8
    return -1


def frame_labels(annotations: dict[str, Any], labels: dict[str, Any], frames: int) -> dict[str, np.ndarray]:
    """The four per-frame label arrays (-1 = unknown) of a clip with ``frames`` tokens."""
    times = frame_times(frames)
    melody = span_values(annotations.get("melody", []), times)
    pitch_class = np.where(melody >= 0, melody % 12, -1)
    family = np.where(melody >= 0, lead_family(labels), -1)
    return {
        "melody_pc": pitch_class,
        "chord_root": span_values(annotations.get("chords", []), times),
        "beat_pos": beat_positions(annotations.get("beats", []), times),
        "lead_family": family,
    }


# ------------------------------------------------------------------------------------------ metrics
def _contingency(tokens: np.ndarray, labels: np.ndarray) -> np.ndarray:
    keep = labels >= 0
    tokens, labels = np.asarray(tokens)[keep], np.asarray(labels)[keep]
    if tokens.size == 0:
        return np.zeros((0, 0))
    _, t = np.unique(tokens, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    table = np.zeros((t.max() + 1, y.max() + 1))
    np.add.at(table, (t, y), 1.0)
    return table


def purity(tokens: np.ndarray, labels: np.ndarray) -> float:
    """Share of (labelled) frames whose label is the most common label of their token."""
    table = _contingency(tokens, labels)
    return float(table.max(axis=1).sum() / table.sum()) if table.size else float("nan")


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(tokens: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(I(token; label), H(token), H(label)) in nats over the labelled frames."""
    table = _contingency(tokens, labels)
    if not table.size:
        return float("nan"), float("nan"), float("nan")
    h_t, h_y = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    return max(0.0, h_t + h_y - _entropy(table.ravel())), h_t, h_y


def nmi(tokens: np.ndarray, labels: np.ndarray) -> float:
    """Normalised mutual information 2 I / (H(token) + H(label)); 1 for a relabelling, about 0 if independent."""
    mi, h_t, h_y = mutual_information(tokens, labels)
    if not np.isfinite(mi):
        return float("nan")
    return 1.0 if h_t + h_y == 0 else float(2.0 * mi / (h_t + h_y))


def pnmi(tokens: np.ndarray, labels: np.ndarray) -> float:
    """I(token; label) / H(label): the share of the label's uncertainty the tokens remove."""
    mi, _, h_y = mutual_information(tokens, labels)
    return float("nan") if not np.isfinite(mi) else (1.0 if h_y == 0 else float(mi / h_y))


def score(tokens: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Purity, NMI and PNMI of ``tokens`` with each label array (all frame-aligned, -1 = unknown)."""
    out = {}
    for name, values in labels.items():
        if len(values) != len(tokens):
            raise MusicLMError(f"{name}: {len(values)} labels for {len(tokens)} tokens")
        out[name] = {"purity": purity(tokens, values), "nmi": nmi(tokens, values), "pnmi": pnmi(tokens, values),
                     "frames": int((values >= 0).sum())}
    return out


# --------------------------------------------------------------------------------------------- clips
@dataclass
class EvalClip:
    """A held-out clip: its audio at 24 kHz and per-frame labels at 25 Hz."""

    id: str
    wav: np.ndarray
    labels: dict[str, np.ndarray]


def annotated_records(corpus: str | os.PathLike[str], splits: Iterable[str]) -> list[ClipRecord]:
    return [r for r in read_manifest(corpus) if r.split in tuple(splits) and r.annotations]


def load_eval_clips(corpora: Sequence[str | os.PathLike[str]], splits: Sequence[str] = ("valid", "test"),
                    max_clips: int | None = None) -> list[EvalClip]:
    """The annotated clips of ``splits`` (evenly thinned to ``max_clips``) with their frame labels."""
    clips: list[EvalClip] = []
    for corpus in corpora:
        records = annotated_records(corpus, splits)
        if not records:
            continue
        data = ClipDataset(str(corpus), None, None, SAMPLE_RATE)
        position = {record.id: i for i, (_, record) in enumerate(data.items)}
        for record in records:
            wav = data[position[record.id]]["wav"].numpy()
            annotations = json.loads((Path(corpus) / str(record.annotations)).read_text())
            frames = -(-len(wav) // (SAMPLE_RATE // TOKEN_RATE))
            clips.append(EvalClip(record.id, wav, frame_labels(annotations, record.labels, frames)))
    if not clips:
        raise ManifestError(f"no annotated clips in splits {list(splits)} of {', '.join(map(str, corpora))} "
                            f"(rendered corpora from `musiclm data synth` have them)")
    if max_clips is not None and len(clips) > max_clips:
        keep = np.linspace(0, len(clips) - 1, max_clips).round().astype(int)
        clips = [clips[i] for i in sorted(set(keep.tolist()))]
    return clips


def training_audio(corpora: Sequence[str | os.PathLike[str]], limit: int) -> list[np.ndarray]:
    """Up to ``limit`` whole training clips (evenly spread) as 24 kHz arrays."""
    data = ClipDataset([str(c) for c in corpora], "train", None, SAMPLE_RATE)
    step = max(1, len(data) // limit)
    return [data[i]["wav"].numpy() for i in list(range(0, len(data), step))[:limit]]


# ------------------------------------------------------------------------------------ token sources
class FeatureKMeans:
    """k-means tokens of one hand-made frame feature (:class:`~musiclm.semantic.targets.FrameFeatures`)."""

    def __init__(self, feature: str, clips: Sequence[np.ndarray], clusters: int, max_frames: int = 200_000,
                 seed: int = 0):
        self.feature = feature
        self.features = FrameFeatures()
        rows = np.concatenate([self._frames(wav) for wav in clips])
        self.codebook = fit_codebook(feature, subsample_rows(rows, max_frames, seed), clusters, seed)

    @torch.no_grad()
    def _frames(self, wav: np.ndarray) -> np.ndarray:
        return self.features(torch.from_numpy(wav)[None], [self.feature])[self.feature][0].numpy()

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return self.codebook.assign(torch.from_numpy(self._frames(wav))).numpy()


class LogMelKMeans(FeatureKMeans):
    """Baseline (a): k-means on the mean log-mel (128 bands) of each 40 ms frame."""

    def __init__(self, clips: Sequence[np.ndarray], clusters: int, max_frames: int = 200_000, seed: int = 0):
        super().__init__("logmel", clips, clusters, max_frames, seed)


def codec_level0(codec: Any) -> Tokenize:
    """Baseline (b): the codec's first RVQ level at 50 Hz, every other frame (25 Hz)."""

    def tokenize(wav: np.ndarray) -> np.ndarray:
        codes = codec.encode(wav, sample_rate=SAMPLE_RATE, levels=1)
        return codes[0, 0, ::2].cpu().numpy()

    return tokenize


def random_tokens(clusters: int, seed: int = 0) -> Tokenize:
    """Uniformly random tokens (a floor: what the estimators give for no information)."""
    rng = np.random.default_rng(seed)

    def tokenize(wav: np.ndarray) -> np.ndarray:
        return rng.integers(0, clusters, size=-(-len(wav) // (SAMPLE_RATE // TOKEN_RATE)))

    return tokenize


def semantic_source(tokenizer: Any) -> Tokenize:
    def tokenize(wav: np.ndarray) -> np.ndarray:
        return tokenizer.tokenize(wav, SAMPLE_RATE)[0].cpu().numpy()

    return tokenize


# ------------------------------------------------------------------------------------------ evaluate
def evaluate_sources(clips: Sequence[EvalClip], sources: dict[str, Tokenize]) -> dict[str, dict[str, Any]]:
    """Scores of every token source over all clips (frames pooled), plus each source's vocabulary use."""
    results: dict[str, dict[str, Any]] = {}
    for name, tokenize in sources.items():
        tokens, labels = [], {k: [] for k in LABELS}
        for clip in clips:
            row = np.asarray(tokenize(clip.wav)).astype(np.int64)
            frames = len(clip.labels[LABELS[0]])
            if len(row) != frames:
                raise MusicLMError(f"{name}: {len(row)} tokens for clip {clip.id}, expected {frames} (25 Hz)")
            tokens.append(row)
            for key in LABELS:
                labels[key].append(clip.labels[key])
        flat = np.concatenate(tokens)
        metrics: dict[str, Any] = score(flat, {k: np.concatenate(v) for k, v in labels.items()})
        metrics["distinct_tokens"] = int(np.unique(flat).size)
        metrics["musical_nmi"] = float(np.mean([metrics[k]["nmi"] for k in MUSICAL_LABELS]))
        results[name] = metrics
    return results


def best_source(results: dict[str, dict[str, Any]], candidates: Iterable[str]) -> str:
    """The candidate with the highest mean NMI over melody, chord root and beat position."""
    return max(candidates, key=lambda name: results[name]["musical_nmi"])


def markdown_table(results: dict[str, dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """One row per token source: purity / NMI for each label (timbre last: lower is better there)."""
    header = "| tokens | K used | " + " | ".join(f"{k} purity / NMI" for k in LABELS) + " | mean musical NMI |"
    lines = [header, "|" + "---|" * (len(LABELS) + 3)]
    for name, m in results.items():
        cells = [f"{m[k]['purity']:.3f} / {m[k]['nmi']:.3f}" for k in LABELS]
        lines.append(f"| {name} | {m['distinct_tokens']} | " + " | ".join(cells) + f" | {m['musical_nmi']:.3f} |")
    if results:
        first = next(iter(results.values()))
        counts = ", ".join(f"{k} {first[k]['frames']}" for k in LABELS)
        lines.append("")
        lines.append(f"Labelled frames: {counts}. Higher is better for melody_pc, chord_root and beat_pos; lower "
                     f"is better for lead_family (timbre).")
    lines += [f"{note}" for note in notes]
    return "\n".join(lines)


def evaluate_tokenizer(tokenizer: Any, corpora: Sequence[str | os.PathLike[str]], codec: Any = None,
                       max_clips: int | None = None, baseline_clips: int = 300, seed: int = 0,
                       references: bool = True) -> dict[str, Any]:
    """The semantic tokenizer against the log-mel k-means baseline (same K), the codec and random tokens
    (and, with ``references``, k-means on chroma: what a hand-made pitch feature reaches)."""
    clips = load_eval_clips(corpora, max_clips=max_clips)
    k = tokenizer.num_clusters
    sources: dict[str, Tokenize] = {f"semantic (layer {tokenizer.layer}, K={k})": semantic_source(tokenizer)}
    train = training_audio(corpora, baseline_clips)
    sources[f"log-mel k-means (K={k})"] = LogMelKMeans(train, k, seed=seed)
    notes = []
    if codec is not None:
        sources[f"codec RVQ level 0 (K={codec.codebook_size})"] = codec_level0(codec)
    else:
        notes.append("Baseline (b) left out: no codec model given (`--codec DIR`).")
    if references:
        sources[f"reference: chroma k-means (K={k})"] = FeatureKMeans("chroma", train, k, seed=seed)
        notes.append("The chroma k-means row is a reference (a hand-made pitch-class feature), not a baseline.")
    sources[f"random (K={k})"] = random_tokens(k, seed)
    results = evaluate_sources(clips, sources)
    return {"clips": len(clips), "results": results, "notes": notes, "table": markdown_table(results, notes)}


@torch.inference_mode()
def evaluate_layers(model: Any, corpora: Sequence[str | os.PathLike[str]], layers: Sequence[int], clusters: int,
                    fit_clips: int = 300, max_frames: int = 200_000, max_clips: int | None = None, seed: int = 0,
                    device: str | torch.device = "cpu", baselines: bool = True) -> dict[str, Any]:
    """Fit ``clusters`` k-means on each of ``layers`` (training clips) and score each on held-out clips.

    Returns the results per source (``layer L`` rows, then the baselines), the best layer and the table.
    """
    if not layers:
        raise MusicLMError("no layers to evaluate")
    top = max(layers)
    encoder = round_to_fp16(truncate(copy.deepcopy(model).cpu().float(), top)).to(device).eval()
    train = training_audio(corpora, fit_clips)
    per_layer: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for wav in train:
        states, _ = encoder.hidden_states(torch.from_numpy(wav).to(device)[None], max_layer=top)
        for layer in layers:
            per_layer[layer].append(states[layer][0].float().cpu().numpy())
    clips = load_eval_clips(corpora, max_clips=max_clips)
    sources: dict[str, Tokenize] = {}
    tokenizers = {}
    for layer in layers:
        data = subsample_rows(np.concatenate(per_layer[layer]), max_frames, seed)
        centroids = torch.from_numpy(fit_kmeans(data, clusters, seed))
        tokenizers[layer] = SemanticTokenizer(encoder, centroids, layer, device=device)
        sources[f"layer {layer}"] = semantic_source(tokenizers[layer])
    if baselines:
        sources[f"log-mel k-means (K={clusters})"] = LogMelKMeans(train, clusters, max_frames, seed)
        sources[f"reference: chroma k-means (K={clusters})"] = FeatureKMeans("chroma", train, clusters, max_frames,
                                                                              seed)
        sources[f"random (K={clusters})"] = random_tokens(clusters, seed)
    results = evaluate_sources(clips, sources)
    best = best_source(results, [f"layer {layer}" for layer in layers])
    return {"clips": len(clips), "results": results, "best_layer": int(best.split()[-1]),
            "table": markdown_table(results), "tokenizers": tokenizers}

