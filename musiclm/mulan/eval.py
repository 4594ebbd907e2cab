"""``musiclm mulan eval``: retrieval, zero-shot and robustness measures of a MuLan model on held-out clips.

On up to ``max_clips`` clips of a split (default ``test``), with their audio embeddings from the corpus cache:

- text->audio and audio->text recall@1/5/10 and median rank with the manifest captions; a hit is the exact
  clip ("clip") or any clip of the same source piece ("piece": clips of one piece share their labels, so
  their captions cannot tell them apart);
- the same with captions written afresh from the labels in seen (training) phrasing and in held-out
  (test-only) phrasing, and the gap between them;
- zero-shot genre accuracy, instrument-family and mood top-1 hit rate and mean average precision from text
  prompts ("a bossa nova track");
- with a fitted quantiser: how often the text's tokens equal the paired audio's tokens (level 1, all levels);
- with a MusicCaps CSV: the top clips for 20 real MusicCaps captions (qualitative).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musiclm.data.captions import instrument_words
from musiclm.data.manifest import ClipRecord, read_manifest
from musiclm.errors import MusicLMError
from musiclm.mulan.recipe import clip_labels, paraphrase_view
from musiclm.mulan.zeroshot import (
    class_embeddings,
    family_prompts,
    genre_prompts,
    mood_prompts,
    scores,
)

TextEncoder = Callable[[list[str]], torch.Tensor]


def ranks(sim: torch.Tensor, relevant: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of the best relevant candidate per query row of ``sim [Q, C]``.

    ``relevant [Q, C]`` marks the hits (default: the diagonal). Ties count against the query (pessimistic).
    """
    q, c = sim.shape
    if relevant is None:
        if q != c:
            raise ValueError("without a relevance mask, sim must be square (query i matches candidate i)")
        relevant = torch.eye(q, dtype=torch.bool)
    best = sim.masked_fill(~relevant, float("-inf")).max(1).values
    return 1 + ((sim >= best[:, None]) & ~relevant).sum(1)


def retrieval_metrics(sim: torch.Tensor, relevant: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@1/5/10 (fraction of queries whose best hit ranks within k), median and mean rank."""
    r = ranks(sim.float().cpu(), None if relevant is None else relevant.cpu()).float()
    return {"r1": float((r <= 1).float().mean()), "r5": float((r <= 5).float().mean()),
            "r10": float((r <= 10).float().mean()), "median_rank": float(r.median()),
            "mean_rank": float(r.mean()), "candidates": float(sim.shape[1])}


PHRASINGS = (("seen", "train"), ("held_out", "test"))
"""The paraphrase check's two phrasings: (report name, the caption split whose phrasing it uses)."""


def phrasing_captions(records: Sequence[ClipRecord], split: str, seed: int = 0) -> list[str]:
    """A fresh caption of each record's labels in the phrasing of ``split`` ("train": seen in training,
    "test": held out); the manifest caption for a record without labels."""
    return [paraphrase_view(r, 0, seed + 1, split=split) or (r.caption or "") for r in records]


def _both_directions(text: torch.Tensor, audio: torch.Tensor, same_piece: torch.Tensor) -> dict[str, Any]:
    sim = text @ audio.t()
    return {
        "text_to_audio": {"clip": retrieval_metrics(sim), "piece": retrieval_metrics(sim, same_piece)},
        "audio_to_text": {"clip": retrieval_metrics(sim.t()), "piece": retrieval_metrics(sim.t(), same_piece.t())},
    }


def zero_shot_accuracy(model: Any, audio: torch.Tensor, labels: Sequence[str], classes: list[str],
                       prompts: list[list[str]]) -> float:
    """Top-1 accuracy of single-label zero-shot classification (items whose label is not a class are skipped)."""
    encode = model.encode_text if hasattr(model, "encode_text") else model.embed_text
    class_emb = class_embeddings(encode, prompts)
    predicted = scores(audio, class_emb).argmax(1).tolist()
    index = {c: i for i, c in enumerate(classes)}
    pairs = [(p, index[lab]) for p, lab in zip(predicted, labels) if lab in index]
    return float(np.mean([p == t for p, t in pairs])) if pairs else float("nan")


def multilabel_metrics(score: torch.Tensor, truth: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Top-1 hit rate (the best-scoring class is a true one) and mean average precision over classes."""
    from sklearn.metrics import average_precision_score

    has_any = truth.any(1)
    top = score.argmax(1).numpy()
    hit = float(truth[np.arange(len(top)), top][has_any].mean()) if has_any.any() else float("nan")
    aps = {}
    for j, name in enumerate(classes):
        if 0 < truth[:, j].sum() < len(truth):
            aps[name] = float(average_precision_score(truth[:, j], score[:, j].numpy()))
    return {"top1_hit": hit, "mAP": float(np.mean(list(aps.values()))) if aps else float("nan"),
            "classes_scored": len(aps), "per_class_ap": {k: round(v, 4) for k, v in sorted(aps.items())}}


def select_clips(corpus: str | os.PathLike[str], split: str, max_clips: int, seed: int = 0) -> list[ClipRecord]:
    """Up to ``max_clips`` captioned clips of ``split`` (a seeded sample when there are more), sorted by id."""
    records = [r for r in read_manifest(corpus, split) if (r.caption or "").strip()]
    if not records:
        raise MusicLMError(f"{corpus}: no captioned clips in split {split!r}")
    records.sort(key=lambda r: r.id)
    if len(records) > max_clips:
        rng = np.random.default_rng(seed)
        records = [records[i] for i in sorted(rng.choice(len(records), max_clips, replace=False))]
    return records


def musiccaps_queries(csv_path: str | os.PathLike[str], count: int = 20, seed: int = 0) -> list[str]:
    """``count`` MusicCaps captions, a seeded sample of the balanced subset (all rows if it is absent)."""
    from musiclm.data.musiccaps import read_musiccaps

    rows = read_musiccaps(csv_path, balanced=True) or read_musiccaps(csv_path)
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(rows), min(count, len(rows)), replace=False))
    return [rows[i].caption for i in picks]


def evaluate_mulan(
    mulan: Any,
    corpus: str | os.PathLike[str],
    split: str = "test",
    max_clips: int = 1000,
    musiccaps_csv: str | os.PathLike[str] | None = None,
    seed: int = 0,
    top: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """All measures of the module docstring for a :class:`~musiclm.mulan.api.MuLan` on one corpus folder."""
    from musiclm.mulan.search import corpus_embeddings

    records = select_clips(corpus, split, max_clips, seed)
    records, audio = corpus_embeddings(mulan, corpus, records, progress=progress)
    if len(records) < 2:
        raise MusicLMError(f"{corpus}: fewer than 2 usable clips in split {split!r}")
    pieces = [r.piece_id or r.id for r in records]
    same_piece = torch.tensor([[a == b for b in pieces] for a in pieces])
    report: dict[str, Any] = {"corpus": str(corpus), "split": split, "clips": len(records),
                              "pieces": len(set(pieces)), "temperature": round(mulan.temperature, 5)}

    captions = [r.caption or "" for r in records]
    text = mulan.embed_text(captions)
    report["manifest_captions"] = _both_directions(text, audio, same_piece)
    report["positive_cosine"] = float((text * audio).sum(1).mean())

    labelled = [i for i, r in enumerate(records) if clip_labels(r) is not None]
    if labelled:
        sub_audio, sub_same = audio[labelled], same_piece[labelled][:, labelled]
        phrasing: dict[str, Any] = {"clips": len(labelled)}
        for name, phr_split in PHRASINGS:
            texts = phrasing_captions([records[i] for i in labelled], phr_split, seed)
            phrasing[name] = _both_directions(mulan.embed_text(texts), sub_audio, sub_same)
        seen = phrasing["seen"]["text_to_audio"]["clip"]["r10"]
        held = phrasing["held_out"]["text_to_audio"]["clip"]["r10"]
        phrasing["r10_gap_points"] = round(100 * (seen - held), 2)
        report["paraphrases"] = phrasing
        report["zero_shot"] = _zero_shot(mulan, [records[i] for i in labelled], sub_audio)

    if getattr(mulan, "quantizer", None) is not None:
        text_tokens, audio_tokens = mulan.tokens(text), mulan.tokens(audio)
        report["tokens"] = {
            "level1_agreement": float((text_tokens[:, 0] == audio_tokens[:, 0]).float().mean()),
            "all_levels_agreement": float((text_tokens == audio_tokens).float().mean()),
            "codebook_size": mulan.codebook_size, "levels": mulan.num_quantizers,
        }

    if musiccaps_csv is not None:
        queries = musiccaps_queries(musiccaps_csv, 20, seed)
        sims = mulan.embed_text(queries) @ audio.t()
        report["musiccaps"] = [
            {"query": q, "top": [{"id": records[j].id, "score": round(float(sims[i, j]), 4),
                                  "caption": records[j].caption}
                                 for j in sims[i].argsort(descending=True)[:top].tolist()]}
            for i, q in enumerate(queries)
        ]
    return report


def _zero_shot(mulan: Any, records: list[ClipRecord], audio: torch.Tensor) -> dict[str, Any]:
    labels = [clip_labels(r) for r in records]
    genres = [lab.genre for lab in labels]
    classes, prompts = genre_prompts(genres)
    genre_score = scores(audio, class_embeddings(mulan.embed_text, prompts))
    predicted = genre_score.argmax(1).tolist()
    out: dict[str, Any] = {"genre": {
        "accuracy": float(np.mean([classes[p] == g for p, g in zip(predicted, genres)])),
        "classes": len(classes), "clips": len(records),
        "chance": round(1.0 / len(classes), 4),
    }}
    families = [{instrument_words(p, lab.genre).family for p in lab.parts} for lab in labels]
    fam_classes, fam_prompts = family_prompts(sorted(set().union(*families)))
    fam_truth = np.array([[c in fams for c in fam_classes] for fams in families])
    out["instrument_family"] = multilabel_metrics(scores(audio, class_embeddings(mulan.embed_text, fam_prompts)),
                                                  fam_truth, fam_classes)
    moods = [set(lab.mood or []) for lab in labels]
    mood_classes, m_prompts = mood_prompts(sorted(set().union(*moods)))
    mood_truth = np.array([[c in m for c in mood_classes] for m in moods])
    out["mood"] = multilabel_metrics(scores(audio, class_embeddings(mulan.embed_text, m_prompts)), mood_truth,
                                     mood_classes)
    return out


def summary(report: dict[str, Any]) -> str:
    """A few human-readable lines of an evaluation report."""
    lines = [f"{report['clips']} clips ({report['pieces']} pieces) of split {report['split']} in {report['corpus']}"]

    def fmt(block: dict[str, Any]) -> str:
        return (f"R@1 {block['r1']:.3f}  R@5 {block['r5']:.3f}  R@10 {block['r10']:.3f}  "
                f"median rank {block['median_rank']:.0f}")

    for direction in ("text_to_audio", "audio_to_text"):
        for level in ("clip", "piece"):
            lines.append(f"{direction:13s} {level:5s}  {fmt(report['manifest_captions'][direction][level])}")
    if "paraphrases" in report:
        p = report["paraphrases"]
        lines.append(f"seen phrasing      t2a {fmt(p['seen']['text_to_audio']['clip'])}")
        lines.append(f"held-out phrasing  t2a {fmt(p['held_out']['text_to_audio']['clip'])}")
        lines.append(f"R@10 gap (seen - held-out): {p['r10_gap_points']:.1f} points")
        z = report["zero_shot"]
        lines.append(f"zero-shot genre accuracy {z['genre']['accuracy']:.3f} over {z['genre']['classes']} genres "
                     f"(chance {z['genre']['chance']:.3f})")
        lines.append(f"instrument family top-1 {z['instrument_family']['top1_hit']:.3f}  "
                     f"mAP {z['instrument_family']['mAP']:.3f}")
        lines.append(f"mood top-1 {z['mood']['top1_hit']:.3f}  mAP {z['mood']['mAP']:.3f}")
    if "tokens" in report:
        t = report["tokens"]
        lines.append(f"text/audio token agreement: level 1 {t['level1_agreement']:.3f}, "
                     f"all levels {t['all_levels_agreement']:.3f}")
    for item in report.get("musiccaps", [])[:20]:
        best = item["top"][0] if item["top"] else None
        lines.append(f"MusicCaps: {item['query'][:80]!r} -> {best['id'] if best else '-'} "
                     f"({best['score'] if best else 0:.3f})")
    return "\n".join(lines)


def save_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    import json

    from musiclm.fileio import atomic_write_text

    return atomic_write_text(path, json.dumps(report, indent=2))
