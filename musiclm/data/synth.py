"""Build a synthetic corpus: compose or arrange pieces, render them with FluidSynth, caption them.

Deterministic from ``seed``: piece ``j`` is planned from ``numpy.random.default_rng([seed, j])`` alone, so
any worker, rank or re-run makes exactly the same clips. Pieces are dealt to ranks (``j % world_size``)
and to worker processes; each rank appends to its own part file, so many machines can render into one
shared folder. Re-running skips finished clips. A clip that fails the quality check is re-rendered with
another soundfont and mix, and after that skipped and logged with its reason in ``rejects.parts/``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclm import SAMPLE_RATE
from musiclm.audio import save_audio
from musiclm.data.manifest import (
    REJECTS_DIR,
    ClipRecord,
    PartWriter,
    merge_parts,
    read_jsonl,
    read_parts,
    split_for,
)
from musiclm.data.piece import Piece
from musiclm.data.workers import run_jobs
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_write_text
from musiclm.progress import clip_bar

log = logging.getLogger("musiclm.data")

CLIPS_PER_PIECE = 2
SCORE_FRACTION = 0.2
RENDER_ATTEMPTS = 3


@dataclass(frozen=True)
class PieceJob:
    """What to make for piece ``index``: which clips (ids) and how long each is."""

    index: int
    clip_ids: tuple[str, ...]
    seconds: float
    seed: int


def clip_id(seed: int, index: int, k: int) -> str:
    return f"s{seed}-{index:07d}-{k}"


def plan_jobs(clips: int, seconds: float, seed: int, rank: int = 0, world_size: int = 1,
              clips_per_piece: int = CLIPS_PER_PIECE) -> list[PieceJob]:
    """The pieces of this rank: piece ``j`` makes clips ``j*clips_per_piece ...`` up to ``clips`` in all."""
    jobs = []
    pieces = -(-clips // clips_per_piece)
    for index in range(rank, pieces, world_size):
        count = min(clips_per_piece, clips - index * clips_per_piece)
        jobs.append(PieceJob(index, tuple(clip_id(seed, index, k) for k in range(count)), seconds, seed))
    return jobs


# ------------------------------------------------------------------------------------------ one piece
def make_piece(job: PieceJob, rng: np.random.Generator, styles: list[str],
               scores: dict[str, list[str]]) -> Piece:
    """Compose (about 80 %) or arrange a real score (about 20 %) long enough for the job's clips.

    Scores are drawn family first (Bach chorales, Essen folk songs, O'Neill's fiddle tunes, ...), so the
    largest collection does not crowd out the others.
    """
    from musiclm.data.composer import compose
    from musiclm.data.scores import arrange_score

    length = job.seconds * len(job.clip_ids) + 6.0
    families = sorted(f for f, refs in scores.items() if refs)
    if families and rng.random() < SCORE_FRACTION:
        refs = scores[families[int(rng.integers(len(families)))]]
        path = refs[int(rng.integers(len(refs)))]
        try:
            return arrange_score(path, rng, seconds=length)
        except Exception as exc:  # a score that fails to parse must not stop the corpus
            log.debug("score %s failed (%s); composing instead", path, exc)
    # styles cycle in a seeded order, so every style is equally represented
    cycle, position = divmod(job.index, len(styles))
    order = np.random.default_rng([job.seed, 7, cycle]).permutation(len(styles))
    return compose(styles[int(order[position])], rng, seconds=length)


def clip_starts(piece: Piece, seconds: float, count: int) -> list[float]:
    """Non-overlapping clip starts on bar lines, preferring section starts, that fit inside the piece."""
    end = piece.seconds
    bars = [t for t in piece.bar_times if t + seconds <= end + 1e-6]
    if not bars:
        return [0.0] if end >= seconds * 0.5 else []
    section_starts = {round(s[1], 3) for s in piece.sections}
    starts: list[float] = []
    earliest = 0.0
    for _ in range(count):
        options = [t for t in bars if t >= earliest - 1e-6]
        if not options:
            break
        near = [t for t in options if t < options[0] + seconds / 2 and round(t, 3) in section_starts]
        start = near[0] if near else options[0]
        starts.append(float(start))
        earliest = start + seconds
    return starts


def window_annotations(piece: Piece, start: float, seconds: float) -> dict[str, Any]:
    """Ground truth inside ``[start, start + seconds)``, with times relative to the clip start."""
    end = start + seconds

    def inside(t: float) -> bool:
        return start - 1e-6 <= t < end

    def spans(items: list[tuple]) -> list[list]:
        out = []
        for item in items:
            s, e = item[0], item[1]
            if e > start and s < end:
                out.append([round(max(s, start) - start, 4), round(min(e, end) - start, 4), *item[2:]])
        return out

    return {
        "beats": [round(t - start, 4) for t in piece.beat_times if inside(t)],
        "downbeats": [round(t - start, 4) for t in piece.bar_times if inside(t)],
        "melody": spans(piece.melody),
        "chords": spans(piece.chords),
        "sections": spans([(start_, end_, name) for name, start_, end_ in piece.sections]),
    }


_WORKER: dict[str, Any] = {}


def _init_worker(out: str, styles: list[str], scores: dict[str, list[str]]) -> None:
    """Per-process state shared by all jobs of a worker (sent once, not with every job)."""
    _WORKER.update(out=out, styles=styles, scores=scores)


def _render_piece_job(job: PieceJob) -> dict[str, Any]:
    """Worker: make one piece's clips; returns their records and rejects (never raises)."""
    from musiclm.data.captions import caption_clip
    from musiclm.data.render import check_audio, default_renderer
    from musiclm.data.soundfonts import choose_soundfont, find_soundfonts

    out, styles, scores = _WORKER["out"], _WORKER["styles"], _WORKER["scores"]
    started = time.perf_counter()
    rng = np.random.default_rng([job.seed, job.index])
    records, rejects = [], []
    try:
        piece = make_piece(job, rng, styles, scores)
        starts = clip_starts(piece, job.seconds, len(job.clip_ids))
    except Exception as exc:
        reason = f"composition failed: {type(exc).__name__}: {exc}"
        return {"records": [], "rejects": [{"id": c, "reason": reason} for c in job.clip_ids],
                "cpu_seconds": time.perf_counter() - started}
    split = split_for(piece.piece_id, job.seed)
    fonts = find_soundfonts()
    renderer = default_renderer(SAMPLE_RATE)
    for k, cid in enumerate(job.clip_ids):
        if k >= len(starts):
            rejects.append({"id": cid, "reason": "piece too short for another clip"})
            continue
        start = starts[k]
        wav, reason = None, "not rendered"
        for _ in range(RENDER_ATTEMPTS):
            font = choose_soundfont(fonts, rng)
            try:
                wav = renderer.render(piece, font, rng, start=start, seconds=job.seconds)
            except Exception as exc:
                wav, reason = None, f"render failed: {type(exc).__name__}: {exc}"
                continue
            reason = check_audio(wav, SAMPLE_RATE)
            if reason is None:
                break
        if reason is not None or wav is None:
            rejects.append({"id": cid, "reason": reason, "piece_id": piece.piece_id})
            continue
        labels = piece.labels
        window_end = start + job.seconds
        labels.sections = [name for name, s, e in piece.sections if e > start and s < window_end] or labels.sections
        caption, aspects = caption_clip(labels, rng, split)
        rel_audio = f"audio/{job.index % 100:02d}/{cid}.flac"
        rel_notes = f"audio/{job.index % 100:02d}/{cid}.json"
        save_audio(Path(out) / rel_audio, wav, SAMPLE_RATE)
        atomic_write_text(Path(out) / rel_notes, json.dumps(window_annotations(piece, start, job.seconds)))
        records.append(ClipRecord(
            id=cid, path=rel_audio, seconds=job.seconds, sample_rate=SAMPLE_RATE, split=split,
            source=labels.source, piece_id=piece.piece_id, caption=caption, aspects=aspects,
            labels=labels.to_dict(), offset=round(start, 4), annotations=rel_notes,
        ).to_json())
    return {"records": records, "rejects": rejects, "cpu_seconds": time.perf_counter() - started}


# ------------------------------------------------------------------------------------------ the corpus
def _done_ids(out: Path) -> set[str]:
    done = {r.id for r in read_parts(out)}
    for path in (out / REJECTS_DIR).glob("*.jsonl"):
        done |= {d["id"] for d in read_jsonl(path) if "id" in d}
    return done


def _usable_scores() -> dict[str, list[str]]:
    """Score references per family of music21's corpus (empty when music21's corpus is unavailable)."""
    try:
        from musiclm.data.scores import FAMILIES, list_scores

        return {family: list_scores([family]) for family in FAMILIES}
    except Exception as exc:  # music21's corpus is optional for the synthetic corpus
        log.warning("real scores unavailable (%s); composing every piece", exc)
        return {}


def build_corpus(
    out: str | os.PathLike[str],
    clips: int,
    *,
    seconds: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``clips`` clips of ``seconds`` into the corpus folder ``out`` (this rank's share of them).

    Returns a summary: clips written now and in all, rejects with reasons, audio hours, throughput.
    """
    from musiclm.data.composer import STYLES
    from musiclm.data.soundfonts import find_soundfonts

    if clips < 1:
        raise MusicLMError("--clips must be at least 1")
    if not 1.0 <= seconds <= 60.0:
        raise MusicLMError("--seconds must be between 1 and 60")
    if workers < 1 or not 0 <= rank < world_size:
        raise MusicLMError("need workers >= 1 and 0 <= rank < world_size")
    find_soundfonts()  # fail early, with the install hint, when no soundfont is there
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    styles = sorted(STYLES)
    scores = _usable_scores()
    jobs = plan_jobs(clips, seconds, seed, rank, world_size)
    done = _done_ids(out)
    todo = [j for j in jobs if not all(c in done for c in j.clip_ids)]
    mine = sum(len(j.clip_ids) for j in jobs)
    started = time.perf_counter()
    written, cpu_seconds = 0, 0.0
    reasons: Counter[str] = Counter()
    bar = clip_bar(total=mine, initial=mine - sum(len(j.clip_ids) for j in todo), enabled=progress, desc="render")
    with PartWriter(out, f"rank{rank:03d}") as part, \
            PartWriter(out, f"rank{rank:03d}", folder=REJECTS_DIR) as rejected:
        for result in run_jobs(todo, _render_piece_job, _init_worker, (str(out), styles, scores), workers):
            for line in result["records"]:
                part.write(line)
                written += 1
            for reject in result["rejects"]:
                rejected.write(json.dumps(reject))
                reasons[reject["reason"].split(" (")[0]] += 1
            cpu_seconds += result["cpu_seconds"]
            bar.update(len(result["records"]) + len(result["rejects"]))
    bar.close()
    records = merge_parts(out)
    wall = time.perf_counter() - started
    hours_now = written * seconds / 3600.0
    summary = {
        "out": str(out),
        "clips_requested": clips,
        "clips_in_manifest": len(records),
        "clips_written_now": written,
        "clips_rejected_now": sum(reasons.values()),
        "reject_reasons": dict(reasons),
        "hours_in_manifest": round(sum(r.seconds for r in records) / 3600.0, 3),
        "hours_written_now": round(hours_now, 3),
        "wall_seconds": round(wall, 1),
        "workers": workers,
        "audio_hours_per_cpu_hour": round(hours_now / (wall * workers / 3600.0), 2) if written else 0.0,
        "seconds_per_clip_per_worker": round(cpu_seconds / max(written, 1), 3),
        "splits": dict(Counter(r.split for r in records)),
        "soundfonts": [f.name for f in find_soundfonts()],
    }
    return summary


