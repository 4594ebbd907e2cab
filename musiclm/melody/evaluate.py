"""How well the melody model recognises a melody in another version: retrieval and invariance.

- Retrieval (the issue's metric): for each held-out melody, one version is the query and the candidates
  are one *other* version of it plus one version each of ``candidates - 1`` other held-out melodies (100
  melodies in all by default, drawn per query). Candidates are ranked by the similarity of window
  embeddings: the mean, over the windows both clips have, of the cosine between aligned windows (versions
  of a melody are time-aligned up to small tempo drift). ``top1``/``top5``: how often the query's own melody
  ranks first / in the first five (ties count against it); also the mean reciprocal rank, the accuracy by
  query kind (bare melody vs arrangement) and ``twin_accuracy``, how often the query's own version beats its
  hard negative (same rhythm and key, other notes).
- Invariance: the mean cosine distance (``1 - similarity``) between versions of one melody, between
  different melodies and between a melody and its hard negative; ``invariance_ratio`` = same / different
  (lower is better: 1.0 means versions of a melody are as far apart as different melodies).
- Baseline: the same trials ranked by MusicGen's melody measure, the fraction of the query's voiced frames
  whose strongest pitch class (argmax chromagram) agrees with the candidate's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from musiclm.audio import load_audio
from musiclm.eval import EvalError
from musiclm.melody.pairs import read_pairs


def similarity_matrix(a: torch.Tensor, mask_a: torch.Tensor, b: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """``[Na, Nb]``: mean cosine over the windows both clips have (window embeddings are unit vectors)."""
    width = min(a.shape[1], b.shape[1])
    a, b, mask_a, mask_b = a[:, :width], b[:, :width], mask_a[:, :width], mask_b[:, :width]
    both = (mask_a[:, None, :] & mask_b[None, :, :]).float()
    sims = torch.einsum("awd,bwd->abw", a.float(), b.float())
    return (sims * both).sum(-1) / both.sum(-1).clamp_min(1.0)


def retrieval_trials(melody_of: Sequence[str], candidates: int, seed: int = 0,
                     max_queries: int | None = None) -> list[tuple[int, int, list[int]]]:
    """``(query clip, target clip, candidate clips)`` per query melody; the target is candidate 0."""
    by_melody: dict[str, list[int]] = {}
    for i, melody in enumerate(melody_of):
        by_melody.setdefault(melody, []).append(i)
    melodies = sorted(m for m, clips in by_melody.items() if len(clips) >= 2)
    if len(melodies) < 2:
        raise EvalError(f"need at least 2 melodies with two versions each, got {len(melodies)}")
    rng = np.random.default_rng(seed)
    others_count = min(candidates, len(melodies)) - 1
    order = rng.permutation(len(melodies))[: max_queries or len(melodies)]
    trials = []
    for q in order:
        melody = melodies[int(q)]
        query, target = (int(x) for x in rng.choice(by_melody[melody], size=2, replace=False))
        pool = [m for m in melodies if m != melody]
        others = rng.choice(len(pool), size=others_count, replace=False)
        trials.append((query, target, [target] + [int(rng.choice(by_melody[pool[int(o)]])) for o in others]))
    return trials


def rank_trials(similarity: torch.Tensor, trials: list[tuple[int, int, list[int]]]) -> np.ndarray:
    """The rank (0 = first) of each trial's target among its candidates (ties count against the target)."""
    ranks = []
    for query, _, cands in trials:
        sims = similarity[query, cands]
        ranks.append(int((sims[1:] >= sims[0]).sum()))
    return np.asarray(ranks)


def retrieval_report(embeddings: torch.Tensor, mask: torch.Tensor, melody_of: Sequence[str], candidates: int = 100,
                     seed: int = 0, kinds: Sequence[str] | None = None, twins: dict[str, str] | None = None,
                     max_queries: int | None = None) -> dict[str, Any]:
    """Retrieval and invariance figures from window embeddings ``[N, windows, D]`` of labelled clips."""
    sim = similarity_matrix(embeddings, mask, embeddings, mask)
    trials = retrieval_trials(melody_of, candidates, seed, max_queries)
    ranks = rank_trials(sim, trials)
    report: dict[str, Any] = {
        "queries": len(trials), "candidates": len(trials[0][2]),
        "top1": round(float((ranks == 0).mean()), 4), "top5": round(float((ranks < 5).mean()), 4),
        "mrr": round(float((1.0 / (ranks + 1)).mean()), 4),
    }
    if kinds is not None:
        for kind in sorted(set(kinds)):
            chosen = [r for r, (q, _, _) in zip(ranks, trials, strict=True) if kinds[q] == kind]
            if chosen:
                report[f"top1_{kind}_query"] = round(float(np.mean(np.asarray(chosen) == 0)), 4)
    labels = np.asarray(melody_of)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    twin_pair = np.zeros_like(same)
    if twins:
        partner = np.asarray([twins.get(m, "") for m in melody_of])
        twin_pair = labels[None, :] == partner[:, None]
    distance = (1.0 - sim).numpy()
    d_same = distance[same & off_diagonal]
    d_diff = distance[~same & ~twin_pair]
    report["same_melody_distance"] = round(float(d_same.mean()), 4)
    report["different_melody_distance"] = round(float(d_diff.mean()), 4)
    report["invariance_ratio"] = round(float(d_same.mean() / max(d_diff.mean(), 1e-9)), 4)
    if twin_pair.any():
        report["hard_negative_distance"] = round(float(distance[twin_pair].mean()), 4)
        wins = []
        rng = np.random.default_rng(seed + 1)
        by_melody: dict[str, list[int]] = {}
        for i, melody in enumerate(melody_of):
            by_melody.setdefault(melody, []).append(i)
        for query, target, _ in trials:
            twin = (twins or {}).get(melody_of[query])
            if twin in by_melody:
                rival = int(rng.choice(by_melody[twin]))
                wins.append(float(sim[query, target] > sim[query, rival]))
        if wins:
            report["twin_accuracy"] = round(float(np.mean(wins)), 4)
            report["twin_trials"] = len(wins)
    return report


# ------------------------------------------------------------------------------------------ baseline
def argmax_chroma(wav: np.ndarray, sample_rate: int, window_seconds: float = 0.17, hop_seconds: float = 0.04,
                  silence_db: float = -40.0) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the strongest pitch class and whether the frame is voiced (within ``silence_db`` of the
    loudest frame), as in MusicGen's melody metric."""
    import librosa

    from musiclm.features import Spectrogram

    n_fft = int(2 ** np.round(np.log2(window_seconds * sample_rate)))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    power = Spectrogram(n_fft, hop, power=2.0)(torch.from_numpy(np.asarray(wav, dtype=np.float32)))[0]
    basis = torch.from_numpy(librosa.filters.chroma(sr=sample_rate, n_fft=n_fft)).float()
    chroma = basis @ power
    level = power.sum(0).sqrt()
    voiced = level > level.max().clamp_min(1e-12) * 10.0 ** (silence_db / 20.0)
    return chroma.argmax(0).numpy(), voiced.numpy()


def chroma_similarity_matrix(chromas: list[tuple[np.ndarray, np.ndarray]], chunk: int = 64) -> torch.Tensor:
    """``[N, N]``: for query row i, the fraction of its voiced frames whose argmax pitch class agrees with
    candidate j's (audible frames only)."""
    frames = min(len(c) for c, _ in chromas)
    notes = np.stack([c[:frames] for c, _ in chromas])
    voiced = np.stack([v[:frames] for _, v in chromas])
    out = np.zeros((len(chromas), len(chromas)), dtype=np.float32)
    for start in range(0, len(chromas), chunk):
        q_notes, q_voiced = notes[start : start + chunk], voiced[start : start + chunk]
        agree = (q_notes[:, None, :] == notes[None, :, :]) & voiced[None, :, :] & q_voiced[:, None, :]
        out[start : start + chunk] = agree.sum(-1) / np.maximum(q_voiced.sum(-1), 1)[:, None]
    return torch.from_numpy(out)


# ------------------------------------------------------------------------------------------- a pair set
def evaluate_pairs(model: Any, folder: str | os.PathLike[str], split: str = "test", candidates: int = 100,
                   seed: int = 0, max_melodies: int | None = 1000, chroma_baseline: bool = True,
                   progress: Callable[[int, int], None] | None = None, batch: int = 16) -> dict[str, Any]:
    """Embed the held-out clips of a pair set with a :class:`~musiclm.melody.api.MelodyModel` (the public
    audio path) and report retrieval, invariance and the chromagram baseline."""
    pairs = read_pairs(folder, split)
    melodies = pairs.melody_ids
    if len(melodies) < 2:
        raise EvalError(f"{folder}: split {split!r} has {len(melodies)} melodies with two or more versions; "
                        "at least 2 are needed")
    if max_melodies is not None and len(melodies) > max_melodies:
        keep = np.random.default_rng(seed).choice(len(melodies), size=max_melodies, replace=False)
        melodies = sorted(melodies[int(i)] for i in keep)
    indices = [i for m in melodies for i in pairs.melodies[m]]
    clips = [pairs.clips[i] for i in indices]
    rows, chromas = [], []
    for start in range(0, len(clips), batch):
        wavs = [load_audio(c.path, model.sample_rate)[0] for c in clips[start : start + batch]]
        for wav in wavs:
            emb = model.embed(wav)[0]
            rows.append(emb)
            if chroma_baseline:
                chromas.append(argmax_chroma(wav, model.sample_rate))
        if progress is not None:
            progress(min(start + batch, len(clips)), len(clips))
    most = max(len(r) for r in rows)
    embeddings = torch.zeros(len(rows), most, rows[0].shape[1])
    mask = torch.zeros(len(rows), most, dtype=torch.bool)
    for i, row in enumerate(rows):
        embeddings[i, : len(row)] = row
        mask[i, : len(row)] = True
    melody_of = [c.melody_id for c in clips]
    kinds = [c.kind for c in clips]
    report: dict[str, Any] = {"pairs": str(folder), "split": split, "melodies": len(melodies), "clips": len(clips),
                              "windows_per_clip": most, "model": getattr(model, "source", None)}
    report.update(retrieval_report(embeddings, mask, melody_of, candidates, seed, kinds, pairs.twins))
    if report["candidates"] < candidates:
        report["note"] = (f"only {report['candidates']} held-out melodies: each query is ranked among "
                          f"{report['candidates']} candidates, not {candidates}")
    if chroma_baseline:
        sim = chroma_similarity_matrix(chromas)
        ranks = rank_trials(sim, retrieval_trials(melody_of, candidates, seed))
        report["chroma_baseline"] = {"top1": round(float((ranks == 0).mean()), 4),
                                     "top5": round(float((ranks < 5).mean()), 4)}
    return report


def summary(report: dict[str, Any]) -> str:
    """The report as a few human-readable lines."""
    lines = [f"{report['melodies']} held-out melodies ({report['split']}), {report['queries']} queries, each among "
             f"{report['candidates']} candidate melodies",
             f"top-1 {report['top1']:.3f}   top-5 {report['top5']:.3f}   MRR {report['mrr']:.3f}"]
    by_kind = [f"{k.removeprefix('top1_').removesuffix('_query')} {v:.3f}" for k, v in report.items()
               if k.startswith("top1_") and k.endswith("_query")]
    if by_kind:
        lines.append("top-1 by query kind: " + ", ".join(by_kind))
    lines.append(f"distance between versions {report['same_melody_distance']:.3f}, between melodies "
                 f"{report['different_melody_distance']:.3f}: invariance ratio {report['invariance_ratio']:.3f}")
    if "twin_accuracy" in report:
        lines.append(f"own version beats the hard negative (same rhythm and key): {report['twin_accuracy']:.3f} "
                     f"of {report['twin_trials']}")
    if "chroma_baseline" in report:
        base = report["chroma_baseline"]
        lines.append(f"chromagram baseline: top-1 {base['top1']:.3f}, top-5 {base['top5']:.3f}")
    if "note" in report:
        lines.append(report["note"])
    return "\n".join(lines)
