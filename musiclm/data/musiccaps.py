"""MusicCaps (Agostinelli et al., 2023): its captions as a prompt set and, with local audio, as a corpus.

The CSV (``musiccaps-public.csv``) has one row per 10 s YouTube clip: ``ytid, start_s, end_s,
audioset_positive_labels, aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval``.
``aspect_list`` is a Python list literal and is parsed with :func:`ast.literal_eval` (never ``eval``).

The audio is not distributed with the CSV; a user who downloaded it has a folder of ``<ytid>.<ext>`` files
(wav, flac, mp3, ogg, ...). A file as long as the clip (10 s) is used whole; a longer file (the whole
video) is cut at ``start_s``–``end_s``. Rows whose audio is missing or unusable are skipped and counted.
Clips of the AudioSet evaluation set go to the ``test`` split, the others to :func:`split_for` of their
ytid. ``balanced`` keeps only the 1,000-clip genre-balanced subset used for evaluation.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musiclm import SAMPLE_RATE
from musiclm.audio import READABLE_SUFFIXES, load_audio, save_audio
from musiclm.data.ingest import normalize_audio
from musiclm.data.manifest import ClipRecord, PartWriter, merge_parts, read_parts, split_for
from musiclm.errors import AudioError, MusicLMError
from musiclm.fileio import atomic_write_text

COLUMNS = ("ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
           "is_balanced_subset", "is_audioset_eval")
AUDIO_DIR = "audio/musiccaps"
PROMPTS_FILE = "prompts.jsonl"
PART_NAME = "musiccaps"
LONG_FILE_SLACK_SECONDS = 1.0
"""A file longer than the clip by more than this is taken to be the whole video and is cut."""


class MusicCapsError(MusicLMError):
    """The MusicCaps CSV or audio folder cannot be used."""


@dataclass(frozen=True)
class MusicCapsRow:
    """One MusicCaps clip as described by the CSV."""

    ytid: str
    start_s: float
    end_s: float
    audioset_labels: tuple[str, ...]
    aspects: tuple[str, ...]
    caption: str
    author_id: str
    balanced: bool
    audioset_eval: bool

    @property
    def clip_id(self) -> str:
        return f"musiccaps-{self.ytid}"

    def labels(self) -> dict[str, Any]:
        return {"ytid": self.ytid, "author_id": self.author_id, "balanced": self.balanced,
                "audioset_eval": self.audioset_eval, "audioset_labels": list(self.audioset_labels),
                "start_s": self.start_s, "end_s": self.end_s}


def parse_aspects(text: str) -> list[str]:
    """The ``aspect_list`` cell (a Python list literal of strings) as a list, parsed safely."""
    try:
        value = ast.literal_eval(text.strip() or "[]")
    except (ValueError, SyntaxError) as exc:
        raise MusicCapsError(f"aspect_list is not a list literal: {text[:80]!r}") from exc
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise MusicCapsError(f"aspect_list must be a list of strings: {text[:80]!r}")
    return [a.strip() for a in value if a.strip()]


def _flag(text: str, column: str, line: int) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise MusicCapsError(f"line {line}: {column} must be True or False, got {text!r}")


def read_musiccaps(csv_path: str | os.PathLike[str], *, balanced: bool = False) -> list[MusicCapsRow]:
    """The rows of the MusicCaps CSV (optionally only the balanced subset), in file order."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MusicCapsError(f"{csv_path}: no such file")
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MusicCapsError(f"{csv_path}: not a MusicCaps CSV (missing columns {', '.join(missing)})")
        for line, raw in enumerate(reader, 2):
            try:
                row = MusicCapsRow(
                    ytid=raw["ytid"].strip(),
                    start_s=float(raw["start_s"]),
                    end_s=float(raw["end_s"]),
                    audioset_labels=tuple(x for x in raw["audioset_positive_labels"].split(",") if x),
                    aspects=tuple(parse_aspects(raw["aspect_list"])),
                    caption=raw["caption"].strip(),
                    author_id=raw["author_id"].strip(),
                    balanced=_flag(raw["is_balanced_subset"], "is_balanced_subset", line),
                    audioset_eval=_flag(raw["is_audioset_eval"], "is_audioset_eval", line),
                )
            except (ValueError, TypeError, AttributeError) as exc:
                raise MusicCapsError(f"{csv_path}:{line}: malformed row ({exc})") from exc
            except MusicCapsError as exc:
                raise MusicCapsError(f"{csv_path}:{line}: {exc}") from exc
            if not row.ytid or "/" in row.ytid or row.end_s <= row.start_s:
                raise MusicCapsError(f"{csv_path}:{line}: bad ytid or times")
            if row.balanced or not balanced:
                rows.append(row)
    return rows


def write_prompts(csv_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  balanced: bool = False) -> dict[str, Any]:
    """Write the captions as a prompt set (JSONL: ``id``, ``caption``, ``aspects``, ``balanced``,
    ``audioset_eval``). ``out`` is a ``.jsonl`` file or a folder (then ``out/prompts.jsonl``)."""
    rows = read_musiccaps(csv_path, balanced=balanced)
    out = Path(out)
    path = out if out.suffix == ".jsonl" else out / PROMPTS_FILE
    lines = [json.dumps({"id": r.ytid, "caption": r.caption, "aspects": list(r.aspects),
                         "balanced": r.balanced, "audioset_eval": r.audioset_eval}, ensure_ascii=False) + "\n"
             for r in rows]
    atomic_write_text(path, "".join(lines))
    return {"prompts": str(path), "rows": len(rows), "balanced_only": balanced,
            "audioset_eval": sum(r.audioset_eval for r in rows)}


def index_audio(audio_dir: Path) -> dict[str, Path]:
    """Readable audio files directly in ``audio_dir`` (``<ytid>.<ext>``) by stem; the first in sorted order
    wins when one ytid has several files."""
    index: dict[str, Path] = {}
    for path in sorted(audio_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in READABLE_SUFFIXES:
            index.setdefault(path.stem, path)
    return index


def load_clip(path: Path, row: MusicCapsRow) -> tuple[Any, int]:
    """The clip's audio at 24 kHz mono: the whole file, or ``start_s``–``end_s`` of a longer file."""
    wav, sr = load_audio(path, SAMPLE_RATE)
    clip_seconds = row.end_s - row.start_s
    if len(wav) / sr > clip_seconds + LONG_FILE_SLACK_SECONDS:
        if len(wav) / sr < row.end_s:
            raise AudioError(f"{path}: longer than the clip but ends before end_s={row.end_s:g}")
        wav = wav[round(row.start_s * sr): round(row.end_s * sr)]
    else:
        wav = wav[: round(clip_seconds * sr)]
    if float(abs(wav).max()) <= 1e-5:
        raise AudioError(f"{path}: the clip is silent")
    return wav, sr


def build_musiccaps_corpus(
    csv_path: str | os.PathLike[str],
    audio_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    balanced: bool = False,
    normalize: str = "none",
    progress: bool = True,
) -> dict[str, Any]:
    """Convert the local MusicCaps clips to a corpus folder ``out``; returns counts of what was done.

    Resumable: clips already in the part files are not converted again. Missing and unusable clips are
    counted (the first few are listed with their reason).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    rows = read_musiccaps(csv_path, balanced=balanced)
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise MusicCapsError(f"{audio_dir}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    index = index_audio(audio_dir)
    done = {r.id for r in read_parts(out)}
    missing, resumed, new = 0, 0, 0
    failed: list[dict[str, str]] = []
    with PartWriter(out, PART_NAME) as writer:
        for row in tqdm(rows, desc="musiccaps", unit="clip", disable=not progress):
            if row.clip_id in done:
                resumed += 1
                continue
            path = index.get(row.ytid)
            if path is None:
                missing += 1
                continue
            try:
                wav, sr = load_clip(path, row)
            except AudioError as exc:
                failed.append({"ytid": row.ytid, "reason": str(exc)})
                continue
            wav = normalize_audio(wav, sr, normalize)
            rel = f"{AUDIO_DIR}/{row.ytid}.flac"
            try:
                save_audio(out / rel, wav, sr)
            except OSError as exc:
                raise MusicCapsError(f"cannot write {out / rel}: {exc} (re-run to resume)") from exc
            record = ClipRecord(
                id=row.clip_id, path=rel, seconds=round(len(wav) / sr, 6), sample_rate=sr,
                split="test" if row.audioset_eval else split_for(row.ytid, seed), source="musiccaps",
                piece_id=f"musiccaps/{row.ytid}", caption=row.caption, aspects=list(row.aspects),
                labels=row.labels(), offset=row.start_s,
            )
            writer.write(record.to_json())
            new += 1
    records = [r for r in merge_parts(out) if r.source == "musiccaps"]
    return {
        "corpus": str(out),
        "rows": len(rows),
        "balanced_only": balanced,
        "clips": len(records),
        "new_clips": new,
        "resumed_clips": resumed,
        "missing_audio": missing,
        "failed": len(failed),
        "failed_examples": failed[:20],
        "failed_reasons": dict(Counter(_reason(f["reason"]) for f in failed)),
        "splits": dict(Counter(r.split for r in records)),
        "hours": round(sum(r.seconds for r in records) / 3600.0, 4),
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def _reason(message: str) -> str:
    text = message.split(": ", 1)[-1]
    return text.split(" (", 1)[0]
