"""What a corpus holds (``musiclm data stats``): counts, hours, label histograms, caption diversity, a figure.

Works on any corpus folder: labels are used where present (synthetic clips have them all, ingested audio
may have none), and a clip without a given label is simply not counted in that histogram.
"""

from __future__ import annotations

import importlib
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.data.manifest import MANIFEST, ClipRecord, ManifestError, read_jsonl

CAPTION_SAMPLE = 20_000
"""At most this many captions (a fixed random sample) go into the diversity figures."""
TEMPO_BIN = 10
TOP_ASPECTS = 50


def source_kind(source: str) -> str:
    """The kind of a clip's source: ``"composer"``, ``"score"``, ``"ingest"``, ``"musiccaps"``, ..."""
    return source.split(":", 1)[0] or "unknown"


def source_collection(source: str) -> str:
    """The kind plus the first path element: ``"ingest:hedgewars"``, ``"score:bach"``, ``"composer"``."""
    kind, _, rest = source.partition(":")
    return f"{kind}:{rest.split('/', 1)[0]}" if rest else (kind or "unknown")


def clip_instruments(labels: dict[str, Any]) -> list[str]:
    """Instrument names of a clip: ``labels.parts[].name``, else ``labels.instruments``."""
    parts = labels.get("parts")
    if isinstance(parts, list) and parts:
        return [str(p["name"]) for p in parts if isinstance(p, dict) and p.get("name")]
    instruments = labels.get("instruments")
    if isinstance(instruments, str):
        return [instruments]
    return [str(i) for i in instruments] if isinstance(instruments, list) else []


def clip_programs(labels: dict[str, Any]) -> list[int] | None:
    """Distinct General MIDI programs (drums excluded) of a clip, or None when unknown."""
    parts = labels.get("parts")
    if isinstance(parts, list) and parts:
        programs = {int(p["program"]) for p in parts
                    if isinstance(p, dict) and not p.get("is_drum") and _is_number(p.get("program"))}
        return sorted(programs)
    programs = labels.get("programs")
    if isinstance(programs, list):
        return sorted({int(p) for p in programs if _is_number(p)})
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _program_name(program: int) -> str:
    import pretty_midi

    if not 0 <= program < 128:
        return str(program)
    return f"{program:03d} {pretty_midi.program_to_instrument_name(program)}"


def _tempo_bin(bpm: float) -> str:
    low = int(bpm // TEMPO_BIN) * TEMPO_BIN
    return f"{low}-{low + TEMPO_BIN - 1}"


def _sorted_by_count(counter: Counter[str], limit: int | None = None) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def _sorted_numerically(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: float(kv[0].split("-")[0].split(" ")[0])))


def iter_records(corpus: Path) -> Any:
    """The records of ``corpus/manifest.jsonl``, read one at a time."""
    path = corpus / MANIFEST
    if not path.exists():
        raise ManifestError(f"{corpus}: no {MANIFEST} (is this a corpus folder?)")
    for data in read_jsonl(path):
        yield ClipRecord.from_dict(data)


def corpus_stats(corpus: str | os.PathLike[str], *, caption_sample: int = CAPTION_SAMPLE) -> dict[str, Any]:
    """Counts, hours, label histograms and caption diversity of a corpus folder."""
    corpus = Path(corpus)
    clips, seconds = 0, 0.0
    splits: Counter[str] = Counter()
    split_seconds: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    collections: Counter[str] = Counter()
    source_seconds: Counter[str] = Counter()
    genres, instruments, programs, programs_per_clip = Counter(), Counter(), Counter(), Counter()
    tempos, key_modes, modes, tonics = Counter(), Counter(), Counter(), Counter()
    meters, moods, soundfonts, aspects = Counter(), Counter(), Counter(), Counter()
    labelled = drums = 0
    captions: list[str] = []
    lengths: list[float] = []
    for record in iter_records(corpus):
        clips += 1
        seconds += record.seconds
        lengths.append(record.seconds)
        splits[record.split] += 1
        split_seconds[record.split] += record.seconds
        kind = source_kind(record.source)
        sources[kind] += 1
        collections[source_collection(record.source)] += 1
        source_seconds[kind] += record.seconds
        if record.caption:
            captions.append(record.caption)
        aspects.update(a.lower() for a in record.aspects)
        labels = record.labels or {}
        if labels:
            labelled += 1
        if isinstance(labels.get("genre"), str) and labels["genre"]:
            genres[labels["genre"]] += 1
        instruments.update(set(clip_instruments(labels)))
        clip_progs = clip_programs(labels)
        if clip_progs is not None:
            programs.update(_program_name(p) for p in clip_progs)
            programs_per_clip[str(len(clip_progs))] += 1
        parts = labels.get("parts") if isinstance(labels.get("parts"), list) else []
        if labels.get("has_drums") or any(isinstance(p, dict) and p.get("is_drum") for p in parts):
            drums += 1
        if _is_number(labels.get("bpm")) and float(labels["bpm"]) > 0:
            tempos[_tempo_bin(float(labels["bpm"]))] += 1
        key, mode = labels.get("key"), labels.get("mode")
        if isinstance(key, str) and key:
            tonics[key] += 1
            key_modes[f"{key} {mode}" if isinstance(mode, str) and mode else key] += 1
        if isinstance(mode, str) and mode:
            modes[mode] += 1
        if isinstance(labels.get("meter"), str):
            meters[labels["meter"]] += 1
        mood = labels.get("mood")
        moods.update([mood] if isinstance(mood, str) else [m for m in mood or [] if isinstance(m, str)])
        if isinstance(labels.get("soundfont"), str) and labels["soundfont"]:
            soundfonts[labels["soundfont"]] += 1

    return {
        "corpus": str(corpus),
        "clips": clips,
        "hours": round(seconds / 3600.0, 4),
        "clip_seconds": _summary(lengths),
        "splits": {s: splits[s] for s in sorted(splits)},
        "hours_by_split": {s: round(v / 3600.0, 4) for s, v in sorted(split_seconds.items())},
        "sources": _sorted_by_count(sources),
        "hours_by_source": {s: round(v / 3600.0, 4) for s, v in sorted(source_seconds.items())},
        "collections": _sorted_by_count(collections),
        "captioned_clips": len(captions),
        "labelled_clips": labelled,
        "clips_with_drums": drums,
        "genre": _sorted_by_count(genres),
        "instruments": _sorted_by_count(instruments),
        "distinct_instruments": len(instruments),
        "programs": _sorted_by_count(programs),
        "distinct_programs": len(programs),
        "programs_per_clip": _sorted_numerically(programs_per_clip),
        "tempo_bpm": _sorted_numerically(tempos),
        "key_mode": _sorted_by_count(key_modes),
        "keys_covered": len(key_modes),
        "tonics_covered": len(tonics),
        "mode": _sorted_by_count(modes),
        "meter": _sorted_by_count(meters),
        "mood": _sorted_by_count(moods),
        "soundfont": _sorted_by_count(soundfonts),
        "aspects": _sorted_by_count(aspects, TOP_ASPECTS),
        "caption_diversity": caption_diversity_of(captions, caption_sample),
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "mean": 0.0, "max": 0.0}
    array = np.asarray(values)
    return {"min": round(float(array.min()), 3), "mean": round(float(array.mean()), 3),
            "max": round(float(array.max()), 3)}


def caption_diversity_of(captions: list[str], sample: int = CAPTION_SAMPLE) -> dict[str, Any] | None:
    """:func:`musiclm.data.captions.caption_diversity` of (a fixed random sample of) the captions."""
    try:
        captions_module = importlib.import_module("musiclm.data.captions")
    except ModuleNotFoundError as exc:
        if exc.name != "musiclm.data.captions":
            raise
        return None
    if len(captions) > sample:
        picks = np.sort(np.random.default_rng(0).choice(len(captions), size=sample, replace=False))
        captions = [captions[i] for i in picks]
    result = dict(captions_module.caption_diversity(captions))
    result["sampled"] = len(captions)
    return result


# ------------------------------------------------------------------------------------------- figure
_PANELS = (
    ("collections", "Clips by source collection", 30, True),
    ("aspects", "Caption aspects", 30, True),
    ("genre", "Genre", 30, True),
    ("instruments", "Instruments (clips using each)", 30, True),
    ("programs", "General MIDI programs (clips using each)", 30, True),
    ("programs_per_clip", "GM programs per clip", None, False),
    ("tempo_bpm", "Tempo (BPM)", None, False),
    ("key_mode", "Key and mode", 30, True),
)


def plot_stats(stats: dict[str, Any], png: str | os.PathLike[str]) -> Path:
    """Draw the histograms of :func:`corpus_stats` into one PNG (bars sorted, titled, counted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(4, 2, figsize=(16, 26))
    for ax, (key, title, limit, horizontal) in zip(axes.flat, _PANELS):
        counts = stats.get(key) or {}
        shown = dict(list(counts.items())[:limit]) if limit else counts
        cut = limit and len(counts) > limit
        suffix = f" — top {limit} of {len(counts)}" if cut else f" — {len(counts)} values"
        ax.set_title(f"{title}{suffix}", fontsize=12, loc="left")
        if not shown:
            ax.text(0.5, 0.5, "no labels in this corpus", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        names, values = list(shown), list(shown.values())
        if horizontal:
            bars = ax.barh(range(len(names)), values, color="#4c72b0")
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("clips")
        else:
            bars = ax.bar(range(len(names)), values, color="#55a868")
            ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 8 else 0, ha="right"
                          if len(names) > 8 else "center", fontsize=8)
            ax.set_ylabel("clips")
        ax.bar_label(bars, labels=[str(v) for v in values], fontsize=7, padding=2)
        ax.margins(x=0.08 if horizontal else 0.02, y=0.02 if horizontal else 0.08)
    splits = ", ".join(f"{k} {v}" for k, v in stats.get("splits", {}).items())
    sources = ", ".join(f"{k} {v}" for k, v in stats.get("sources", {}).items())
    fig.suptitle(f"{stats.get('corpus', '')}: {stats.get('clips', 0)} clips, {stats.get('hours', 0):.2f} h  "
                 f"(splits: {splits or '-'}; sources: {sources or '-'})\n"
                 f"{stats.get('distinct_programs', 0)} GM programs, "
                 f"{stats.get('keys_covered', 0)} keys+modes, "
                 f"{stats.get('captioned_clips', 0)} captioned clips", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
