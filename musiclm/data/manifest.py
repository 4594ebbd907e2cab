"""The corpus contract: a folder with ``manifest.jsonl`` (one JSON object per clip) and audio files.

Each record has ``id``, ``path`` (relative to the corpus folder), ``seconds``, ``sample_rate``, ``split``
(train/valid/test) and ``source``, and where known ``caption``, ``aspects`` and ``labels`` (structured
ground truth). Splits are assigned per *source piece* (:func:`split_for`), so no piece, score or
recording has clips in two splits.

Writers append records to per-worker part files (``manifest.parts/*.jsonl``, one fsync'ed line per clip,
after the clip's audio file is complete) and :func:`merge_parts` builds ``manifest.jsonl`` atomically. A
line cut short by a kill is ignored when reading, so its clip is simply made again on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_write_text

log = logging.getLogger("musiclm.data")

MANIFEST = "manifest.jsonl"
PARTS_DIR = "manifest.parts"
REJECTS_DIR = "rejects.parts"  # JSONL lines {"id", "reason", ...} of clips that were skipped
SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT_FRACTIONS = (0.90, 0.05, 0.05)


class ManifestError(MusicLMError):
    """A manifest or corpus folder is missing or malformed."""


@dataclass
class ClipRecord:
    """One clip of a corpus, as stored in ``manifest.jsonl``."""

    id: str
    path: str
    seconds: float
    sample_rate: int
    split: str
    source: str
    piece_id: str = ""
    caption: str | None = None
    aspects: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    offset: float = 0.0  # start of the clip within its source piece or recording, seconds
    annotations: str | None = None  # relative path of a JSON sidecar with time-aligned ground truth

    def validate(self) -> None:
        if not self.id or "/" in self.id:
            raise ManifestError(f"clip id {self.id!r} must be non-empty and contain no '/'")
        if self.split not in SPLITS:
            raise ManifestError(f"clip {self.id}: split must be one of {SPLITS}, got {self.split!r}")
        if self.seconds <= 0 or self.sample_rate <= 0:
            raise ManifestError(f"clip {self.id}: seconds and sample_rate must be positive")
        if Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise ManifestError(f"clip {self.id}: path must be relative to the corpus folder")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            record = cls(**known)
        except TypeError as exc:
            raise ManifestError(f"malformed manifest record {data.get('id', '?')}: {exc}") from exc
        record.validate()
        return record


def split_for(piece_id: str, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """The split of every clip of ``piece_id``: a stable hash of the piece and the seed."""
    digest = hashlib.sha256(f"{seed}:{piece_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "valid" if u < fractions[0] + fractions[1] else "test"


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Parsed lines of a JSONL file; a malformed line (e.g. cut by a kill) is skipped with a warning."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping a malformed line", path, number)


def read_manifest(corpus: str | os.PathLike[str], split: str | None = None) -> list[ClipRecord]:
    """The clips of a corpus folder (optionally one split), in manifest order."""
    path = Path(corpus) / MANIFEST
    if not path.exists():
        raise ManifestError(f"{corpus}: no {MANIFEST} (is this a corpus folder?)")
    records = [ClipRecord.from_dict(d) for d in read_jsonl(path)]
    return [r for r in records if split is None or r.split == split]


def write_manifest(corpus: str | os.PathLike[str], records: Iterable[ClipRecord]) -> Path:
    """Write ``manifest.jsonl`` atomically (records sorted by id)."""
    ordered = sorted(records, key=lambda r: r.id)
    for record in ordered:
        record.validate()
    text = "".join(r.to_json() + "\n" for r in ordered)
    return atomic_write_text(Path(corpus) / MANIFEST, text)


class PartWriter:
    """Appends records to one part file; each line is flushed and fsync'ed before the call returns."""

    def __init__(self, corpus: str | os.PathLike[str], name: str, folder: str = PARTS_DIR):
        directory = Path(corpus) / folder
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, line: str) -> None:
        self._handle.write(line.rstrip("\n") + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_parts(corpus: str | os.PathLike[str]) -> list[ClipRecord]:
    """Every complete record in the part files whose audio file exists (later duplicates win)."""
    folder = Path(corpus) / PARTS_DIR
    records: dict[str, ClipRecord] = {}
    if folder.exists():
        for part in sorted(folder.glob("*.jsonl")):
            for data in read_jsonl(part):
                try:
                    record = ClipRecord.from_dict(data)
                except ManifestError as exc:
                    log.warning("%s: %s", part, exc)
                    continue
                if (Path(corpus) / record.path).exists():
                    records[record.id] = record
    return list(records.values())


def merge_parts(corpus: str | os.PathLike[str]) -> list[ClipRecord]:
    """Combine the part files into ``manifest.jsonl`` (atomically); returns the records."""
    corpus = Path(corpus)
    records = {r.id: r for r in read_parts(corpus)}
    write_manifest(corpus, records.values())
    return sorted(records.values(), key=lambda r: r.id)


def check_split_leakage(records: Iterable[ClipRecord]) -> dict[str, set[str]]:
    """Pieces found in more than one split (empty when the corpus is clean)."""
    seen: dict[str, set[str]] = {}
    for record in records:
        seen.setdefault(record.piece_id or record.id, set()).add(record.split)
    return {piece: splits for piece, splits in seen.items() if len(splits) > 1}
