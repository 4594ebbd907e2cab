"""Turn a folder of real recordings into corpus clips (``musiclm data ingest``).

Every audio file under the folder (recursively) is decoded at 24 kHz mono, optionally normalised as a
whole, and cut into consecutive clips of ``seconds``; a trailing remainder is kept (as a shorter clip) only
when it is at least ``min_fraction`` of a clip, and clips that are mostly silence are dropped. Clips are
written as FLAC under ``CORPUS/audio/ingest/`` and recorded through a part file; ``manifest.jsonl`` is
merged at the end.

A recording is one piece: its ``piece_id`` is ``<folder name>/<path inside the folder>``, so all its clips
share one split. Captions and labels come from sidecar files (see :func:`recording_metadata`). A file that
cannot be used (corrupt, silent, too short, bad sidecar) is skipped and reported with the reason. A run can
be killed and re-run: recordings listed as finished in ``ingest.state.jsonl`` with all their clips present
are not decoded again.
"""

from __future__ import annotations

import ast
import csv
import fnmatch
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musiclm import SAMPLE_RATE
from musiclm.audio import READABLE_SUFFIXES, load_audio, loudness_normalize, peak_normalize, save_audio
from musiclm.data.manifest import ClipRecord, PartWriter, merge_parts, read_jsonl, read_parts, split_for
from musiclm.errors import AudioError, MusicLMError
from musiclm.fileio import atomic_write_text

log = logging.getLogger("musiclm.data")

STATE_FILE = "ingest.state.jsonl"
"""One line per finished recording: ``{"piece_id", "clips", "seconds"}`` (the clip length used)."""
PART_NAME = "ingest"
AUDIO_DIR = "audio/ingest"
FOLDER_CAPTIONS = "captions.jsonl"
FOLDER_METADATA = "metadata.csv"
NORMALIZE_MODES = ("loudness", "peak", "none")
SIDECAR_KEYS = ("caption", "aspects", "labels")


class IngestError(MusicLMError):
    """The ingest cannot start (bad folder or arguments)."""


@dataclass(frozen=True)
class CutOptions:
    """How recordings become clips."""

    seconds: float = 10.0
    min_fraction: float = 0.5  # a trailing remainder shorter than this fraction of a clip is dropped
    silence_db: float = -60.0  # a 100 ms frame below this RMS level (dBFS) counts as silent
    min_active: float = 0.5  # a clip needs at least this fraction of non-silent frames
    normalize: str = "loudness"  # "loudness" (-14 LUFS, peak <= -1 dBFS), "peak" (-1 dBFS) or "none"
    lufs: float = -14.0

    def validate(self) -> None:
        if not 1.0 <= self.seconds <= 60.0:
            raise IngestError(f"--seconds must be between 1 and 60 (got {self.seconds:g})")
        if not 0.0 < self.min_fraction <= 1.0:
            raise IngestError(f"min_fraction must be in (0, 1] (got {self.min_fraction:g})")
        if not 0.0 <= self.min_active <= 1.0:
            raise IngestError(f"min_active must be in [0, 1] (got {self.min_active:g})")
        if self.normalize not in NORMALIZE_MODES:
            raise IngestError(f"normalize must be one of {NORMALIZE_MODES} (got {self.normalize!r})")


class MetadataError(MusicLMError):
    """A sidecar file cannot be read; the recording it describes is skipped."""


@dataclass
class Metadata:
    """Caption, aspects and labels known for a recording (from sidecar files)."""

    caption: str | None = None
    aspects: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)

    def update(self, data: dict[str, Any], origin: str) -> None:
        """Overlay one sidecar entry: ``caption``, ``aspects``, ``labels`` and any other key as a label."""
        caption = data.get("caption")
        if caption is not None:
            if not isinstance(caption, str):
                raise MetadataError(f"{origin}: caption must be a string")
            self.caption = caption.strip() or None
        if "aspects" in data:
            self.aspects = _as_aspects(data["aspects"], origin)
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise MetadataError(f"{origin}: labels must be an object")
        extra = {k: v for k, v in data.items() if k not in (*SIDECAR_KEYS, "file", "path")}
        self.labels.update(extra)
        self.labels.update(labels)


@dataclass(frozen=True)
class Job:
    """One recording to cut (sent to a worker process)."""

    path: str
    piece_id: str
    source: str
    out: str
    split: str
    caption: str | None
    aspects: tuple[str, ...]
    labels_json: str
    options: CutOptions


# ------------------------------------------------------------------------------------------ discovery
def find_recordings(folder: Path, exclude: Iterable[str] = (), skip: Iterable[Path] = ()) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted, hidden files and ``skip`` folders left out).

    ``exclude`` holds glob patterns matched against the path relative to ``folder`` and the file name.
    """
    patterns = list(exclude)
    skipped = [p.resolve() for p in skip]
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (root_path / d).resolve() not in skipped)
        for name in sorted(files):
            path = root_path / name
            if name.startswith(".") or path.suffix.lower() not in READABLE_SUFFIXES:
                continue
            rel = path.relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns):
                continue
            found.append(path)
    return sorted(found)


FolderCache = dict[Path, dict[str, dict[str, Any]]]


def recording_metadata(path: Path, root: Path, folder_cache: FolderCache) -> Metadata:
    """Everything the sidecar files say about the recording ``path`` under ``root``.

    Sources, from weakest to strongest (later ones override caption/aspects and add to labels):
    ``captions.jsonl`` and ``metadata.csv`` in the recording's folder or any folder above it up to
    ``root`` (entries keyed by ``file`` or ``path`` relative to that folder; the nearest folder wins),
    then ``<stem>.txt`` (the caption) and ``<stem>.json`` (``caption``, ``aspects``, ``labels``; other keys
    become labels) beside the recording. Raises :class:`MetadataError` for a malformed sidecar.
    """
    meta = Metadata()
    folders = [path.parent, *path.parent.parents]
    folders = folders[: folders.index(root) + 1] if root in folders else [path.parent]
    for folder in reversed(folders):  # outermost first, so nearer folders override
        entries = folder_cache.get(folder)
        if entries is None:
            entries = folder_cache[folder] = read_folder_metadata(folder)
        entry = entries.get(path.relative_to(folder).as_posix())
        if entry is not None:
            meta.update(entry, f"{folder} metadata for {path.name}")
    text_sidecar = path.with_suffix(".txt")
    if text_sidecar.is_file():
        try:
            caption = text_sidecar.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise MetadataError(f"{text_sidecar}: cannot read ({exc})") from exc
        meta.caption = caption or meta.caption
    json_sidecar = path.with_suffix(".json")
    if json_sidecar.is_file():
        try:
            data = json.loads(json_sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"{json_sidecar}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise MetadataError(f"{json_sidecar}: must hold a JSON object")
        meta.update(data, str(json_sidecar))
    return meta


def read_folder_metadata(folder: Path) -> dict[str, dict[str, Any]]:
    """Entries of ``captions.jsonl`` and ``metadata.csv`` in ``folder``, keyed by relative file path."""
    entries: dict[str, dict[str, Any]] = {}
    csv_path = folder / FOLDER_METADATA
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), 2):
                key = (row.get("file") or row.get("path") or "").strip()
                if not key:
                    log.warning("%s:%d: no 'file' or 'path' column value; line ignored", csv_path, number)
                    continue
                entries[Path(key).as_posix()] = {k: _csv_value(k, v) for k, v in row.items()
                                                 if k and v is not None and v.strip() != ""}
    jsonl_path = folder / FOLDER_CAPTIONS
    if jsonl_path.is_file():
        for data in read_jsonl(jsonl_path):
            key = str(data.get("file") or data.get("path") or "").strip() if isinstance(data, dict) else ""
            if not key:
                log.warning("%s: an entry without 'file' or 'path' is ignored", jsonl_path)
                continue
            entries.setdefault(Path(key).as_posix(), {}).update(data)
    return entries


def _csv_value(column: str, value: str) -> Any:
    """A metadata.csv cell: aspects and ';'-separated cells become lists, numbers become numbers."""
    value = value.strip()
    if column == "aspects" or ";" in value:
        return _as_aspects(value, column)
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _as_aspects(value: Any, origin: str) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError) as exc:
                raise MetadataError(f"{origin}: aspects is not a list literal ({exc})") from exc
        else:
            value = [part for part in re.split(r"[;,]", text)]
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise MetadataError(f"{origin}: aspects must be a list of strings")
    return [a.strip() for a in value if a.strip()]


# ------------------------------------------------------------------------------------------ cutting
def normalize_audio(wav: np.ndarray, sample_rate: int, mode: str, lufs: float = -14.0) -> np.ndarray:
    """Level a whole recording: ``loudness`` (integrated LUFS, peak <= -1 dBFS), ``peak`` or ``none``."""
    if mode == "loudness":
        return loudness_normalize(wav, sample_rate, lufs, -1.0)
    if mode == "peak":
        return peak_normalize(wav, -1.0)
    return wav


def active_fraction(wav: np.ndarray, sample_rate: int, silence_db: float, frame_seconds: float = 0.1
                    ) -> float:
    """Fraction of ``frame_seconds`` frames whose RMS level is above ``silence_db`` dBFS."""
    frame = max(1, round(frame_seconds * sample_rate))
    count = len(wav) // frame
    frames = wav[: count * frame].reshape(count, frame) if count else wav[None, :]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return float(np.mean(rms > 10.0 ** (silence_db / 20.0)))


def clip_spans(total: int, clip: int, min_fraction: float) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` sample spans of length ``clip``; a shorter tail is kept when at least
    ``min_fraction`` of a clip."""
    spans = [(start, start + clip) for start in range(0, total - clip + 1, clip)]
    tail_start = len(spans) * clip
    if total - tail_start >= min_fraction * clip and total > tail_start:
        spans.append((tail_start, total))
    return spans


def clip_stem(piece_id: str) -> str:
    """A readable, unique, slash-free name for a recording: slug of its path plus a hash."""
    digest = hashlib.sha1(piece_id.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", piece_id.rsplit(".", 1)[0]).strip("-")[-48:].strip("-")
    return f"{slug}-{digest}" if slug else digest


def cut_recording(job: Job) -> dict[str, Any]:
    """Worker: decode, level and cut one recording; write its clips. Never raises.

    Returns ``{"piece_id", "path", "records": [record dicts], "dropped": {reason: n}, "error": reason|None,
    "fatal": message|None}``; ``error`` means the recording is unusable, ``fatal`` that a clip could not be
    written (e.g. a full disk), which stops the ingest.
    """
    result: dict[str, Any] = {"piece_id": job.piece_id, "path": job.path, "records": [], "dropped": {},
                              "error": None, "fatal": None}
    options = job.options
    try:
        wav, sr = load_audio(job.path, SAMPLE_RATE)
    except AudioError as exc:
        result["error"] = _reason(str(exc), job.path)
        return result
    except (OSError, MemoryError) as exc:
        result["error"] = f"cannot decode ({type(exc).__name__}: {exc})"
        return result
    clip_samples = round(options.seconds * sr)
    if len(wav) < options.min_fraction * clip_samples:
        result["error"] = f"too short ({len(wav) / sr:.1f} s < {options.min_fraction * options.seconds:g} s)"
        return result
    wav = normalize_audio(wav, sr, options.normalize, options.lufs)
    stem = clip_stem(job.piece_id)
    labels = json.loads(job.labels_json)
    dropped: Counter[str] = Counter()
    for index, (start, end) in enumerate(clip_spans(len(wav), clip_samples, options.min_fraction)):
        piece = wav[start:end]
        if active_fraction(piece, sr, options.silence_db) < options.min_active:
            dropped["near-silent clip"] += 1
            continue
        rel = f"{AUDIO_DIR}/{stem}/{index:04d}.flac"
        try:
            save_audio(Path(job.out) / rel, piece, sr)
        except (AudioError, OSError) as exc:
            result["fatal"] = f"cannot write {Path(job.out) / rel}: {exc}"
            return result
        record = ClipRecord(
            id=f"ing-{stem}-{index:04d}", path=rel, seconds=round((end - start) / sr, 6), sample_rate=sr,
            split=job.split, source=job.source, piece_id=job.piece_id, caption=job.caption,
            aspects=list(job.aspects), labels=labels, offset=round(start / sr, 6),
        )
        result["records"].append(json.loads(record.to_json()))
    result["dropped"] = dict(dropped)
    if not result["records"]:
        result["error"] = f"no clip passed the silence check ({sum(dropped.values())} near-silent)"
    return result


def _reason(message: str, path: str) -> str:
    """An error message without the file name in front (the report lists the file beside it)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# ------------------------------------------------------------------------------------------ driver
def read_state(corpus: Path) -> dict[str, dict[str, Any]]:
    """Finished recordings of earlier runs, by piece id."""
    path = corpus / STATE_FILE
    if not path.exists():
        return {}
    return {d["piece_id"]: d for d in read_jsonl(path) if isinstance(d, dict) and "piece_id" in d}


def ingest(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seconds: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    name: str | None = None,
    exclude: Iterable[str] = (),
    options: CutOptions | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut every recording under ``folder`` into clips of the corpus ``out``; returns a summary.

    ``name`` (default: the folder's name) prefixes piece ids and sources, so several folders can be
    ingested into one corpus. ``options`` overrides the cutting defaults (its ``seconds`` is replaced by
    ``seconds``). The summary counts recordings, clips and hours of this folder in the corpus (finished
    earlier or now), what was new in this run, and every skipped file with its reason.
    """
    started = time.perf_counter()
    folder, out = Path(folder), Path(out)
    options = CutOptions(**{**(options.__dict__ if options else {}), "seconds": float(seconds)})
    options.validate()
    if workers < 1:
        raise IngestError(f"--workers must be at least 1 (got {workers})")
    if not folder.is_dir():
        raise IngestError(f"{folder}: not a folder")
    folder = folder.resolve()
    name = name if name is not None else folder.name
    if "/" in name.strip("/"):
        raise IngestError(f"--name {name!r} must not contain '/'")
    out.mkdir(parents=True, exist_ok=True)
    recordings = find_recordings(folder, exclude, skip=[out])

    state = read_state(out)
    clip_counts = Counter(r.piece_id for r in read_parts(out))
    jobs: list[Job] = []
    skipped: list[dict[str, str]] = []
    resumed: list[str] = []
    folder_cache: FolderCache = {}
    for path in recordings:
        rel = path.relative_to(folder).as_posix()
        piece_id = f"{name}/{rel}" if name else rel
        done = state.get(piece_id)
        if done is not None:
            if abs(float(done.get("seconds", 0)) - options.seconds) > 1e-6:
                raise IngestError(
                    f"{out} already holds {piece_id} cut into {done.get('seconds')} s clips; "
                    f"ingest with --seconds {done.get('seconds')} or into a new corpus")
            if clip_counts[piece_id] == done.get("clips"):
                resumed.append(piece_id)
                continue
        try:
            meta = recording_metadata(path, folder, folder_cache)
        except MetadataError as exc:
            skipped.append({"path": rel, "reason": f"bad sidecar: {exc}"})
            continue
        jobs.append(Job(
            path=str(path), piece_id=piece_id, source=f"ingest:{piece_id}", out=str(out),
            split=split_for(piece_id, seed), caption=meta.caption, aspects=tuple(meta.aspects),
            labels_json=json.dumps(meta.labels, ensure_ascii=False, default=str), options=options,
        ))

    new_clips, new_recordings, dropped = 0, 0, Counter()
    with PartWriter(out, PART_NAME) as writer, open(out / STATE_FILE, "a", encoding="utf-8") as state_file:
        for result in _run(jobs, workers, progress):
            rel = Path(result["path"]).relative_to(folder).as_posix()
            if result["fatal"]:
                raise IngestError(f"{result['fatal']} (re-run to resume once fixed)")
            if result["error"]:
                skipped.append({"path": rel, "reason": result["error"]})
                continue
            for record in result["records"]:
                writer.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
            new_clips += len(result["records"])
            new_recordings += 1
            dropped.update(result["dropped"])
            state_file.write(json.dumps({"piece_id": result["piece_id"], "clips": len(result["records"]),
                                         "seconds": options.seconds}) + "\n")
            state_file.flush()
            os.fsync(state_file.fileno())
    records = merge_parts(out)

    ours = {f"{name}/{p.relative_to(folder).as_posix()}" if name else p.relative_to(folder).as_posix()
            for p in recordings}
    mine = [r for r in records if r.piece_id in ours]
    skipped.sort(key=lambda s: s["path"])
    reasons = Counter(_reason_kind(s["reason"]) for s in skipped)
    summary = {
        "corpus": str(out),
        "folder": str(folder),
        "name": name,
        "files_found": len(recordings),
        "recordings": len({r.piece_id for r in mine}),
        "clips": len(mine),
        "hours": round(sum(r.seconds for r in mine) / 3600.0, 4),
        "new_recordings": new_recordings,
        "new_clips": new_clips,
        "resumed_recordings": len(resumed),
        "skipped_recordings": len(skipped),
        "skipped_reasons": dict(reasons.most_common()),
        "skipped": skipped,
        "dropped_clips": dict(dropped.most_common()),
        "splits": dict(Counter(r.split for r in mine)),
        "captioned_clips": sum(1 for r in mine if r.caption),
        "corpus_clips": len(records),
        "elapsed_s": round(time.perf_counter() - started, 2),
    }
    _write_report(out, summary)
    return summary


_REASON_KINDS = (
    ("silence check", "near-silent"), ("silent", "silent"), ("too short", "too short"),
    ("zero-length", "empty"), ("corrupt", "corrupt"), ("nan", "non-finite"), ("sidecar", "bad sidecar"),
    ("cannot decode", "corrupt"),
)


def _reason_kind(reason: str) -> str:
    """A short class of a skip reason, for counting (the full reason stays in ``skipped``)."""
    lowered = reason.lower()
    return next((kind for key, kind in _REASON_KINDS if key in lowered), "other")


def _write_report(out: Path, summary: dict[str, Any]) -> None:
    """Keep the last ingest summary beside the manifest (handy when the terminal output is gone)."""
    atomic_write_text(out / "ingest.report.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def _run(jobs: list[Job], workers: int, progress: bool) -> Iterator[dict[str, Any]]:
    """Results of :func:`cut_recording` for ``jobs``, in a process pool when ``workers`` > 1 (then in
    the order they finish)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="ingest", unit="rec", disable=not progress or not jobs, leave=True)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield cut_recording(job)
                bar.update()
            return
        context = multiprocessing.get_context("forkserver" if "forkserver" in
                                              multiprocessing.get_all_start_methods() else "spawn")
        queue = iter(jobs)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            pending = {pool.submit(cut_recording, job) for job in itertools.islice(queue, 2 * workers)}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        yield future.result()
                        bar.update()
                        job = next(queue, None)
                        if job is not None:
                            pending.add(pool.submit(cut_recording, job))
            finally:
                for future in pending:  # stopped early (error or Ctrl-C): don't start what is queued
                    future.cancel()
    finally:
        bar.close()
