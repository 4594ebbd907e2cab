"""Text-to-music search over a corpus folder, with the corpus's MuLan audio embeddings cached beside it.

The cache lives in ``<corpus>/.mulan/embeddings-<model>-<manifest>.npz`` (model = :meth:`MuLan.token_fingerprint`,
manifest = hash of ``manifest.jsonl``), written atomically and read without pickle. When the manifest changes,
the embeddings of clips whose audio path is unchanged are reused from the model's previous cache file, and
only new clips are embedded; the old file is then removed. Clips whose audio cannot be embedded (unreadable,
silent) are remembered in the cache as failures and left out of results.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from musiclm.data.manifest import MANIFEST, ClipRecord, read_manifest
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path
from musiclm.mulan.api import MuLan

log = logging.getLogger("musiclm.mulan")

CACHE_DIR = ".mulan"


def manifest_fingerprint(corpus: str | os.PathLike[str]) -> str:
    path = Path(corpus) / MANIFEST
    if not path.exists():
        raise MusicLMError(f"{corpus}: no {MANIFEST} (is this a corpus folder?)")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cache_file(corpus: str | os.PathLike[str], model_key: str, manifest_key: str) -> Path:
    return Path(corpus) / CACHE_DIR / f"embeddings-{model_key}-{manifest_key}.npz"


def _read_cache(path: Path) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str]]:
    """``{id: (path, embedding)}`` and ``{id: path}`` of failures; empty when the file is unusable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            rows = {str(i): (str(p), e) for i, p, e in zip(data["ids"], data["paths"], data["embeddings"])}
            failed = {str(i): str(p) for i, p in zip(data["failed_ids"], data["failed_paths"])}
        return rows, failed
    except (OSError, KeyError, ValueError) as exc:
        log.warning("%s: unusable embedding cache (%s); recomputing", path, exc)
        return {}, {}


def _write_cache(path: Path, rows: dict[str, tuple[str, np.ndarray]], failed: dict[str, str], dim: int) -> None:
    ids = sorted(rows)
    embeddings = np.stack([rows[i][1] for i in ids]).astype(np.float32) if ids else np.zeros((0, dim), np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, ids=np.array(ids, dtype=str), paths=np.array([rows[i][0] for i in ids], dtype=str),
                 embeddings=embeddings, failed_ids=np.array(sorted(failed), dtype=str),
                 failed_paths=np.array([failed[i] for i in sorted(failed)], dtype=str))


def corpus_embeddings(
    mulan: MuLan,
    corpus: str | os.PathLike[str],
    records: list[ClipRecord] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 8,
) -> tuple[list[ClipRecord], torch.Tensor]:
    """Unit audio embeddings of ``records`` (default: every clip of the corpus), from the cache where possible.

    Returns the records that could be embedded (in the order given) and their ``[N, D]`` embeddings.
    """
    corpus = Path(corpus)
    manifest_key = manifest_fingerprint(corpus)
    model_key = mulan.token_fingerprint()
    path = cache_file(corpus, model_key, manifest_key)
    rows, failed = _read_cache(path) if path.exists() else ({}, {})
    stale = [p for p in sorted((corpus / CACHE_DIR).glob(f"embeddings-{model_key}-*.npz")) if p != path]
    for old in stale:
        old_rows, old_failed = _read_cache(old)
        rows.update({k: v for k, v in old_rows.items() if k not in rows})
        failed.update({k: v for k, v in old_failed.items() if k not in failed})
    all_records = read_manifest(corpus)
    by_id = {r.id: r for r in all_records}
    # keep only entries whose clip is still in the manifest with the same audio path
    rows = {k: v for k, v in rows.items() if k in by_id and by_id[k].path == v[0]}
    failed = {k: v for k, v in failed.items() if k in by_id and by_id[k].path == v}
    wanted = all_records if records is None else records
    todo = [r for r in wanted if r.id not in rows and r.id not in failed]
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        try:
            emb = mulan.embed_files([corpus / r.path for r in chunk])
            for record, row in zip(chunk, emb):
                rows[record.id] = (record.path, row.numpy())
        except MusicLMError:
            for record in chunk:  # find the culprit(s) one by one
                try:
                    rows[record.id] = (record.path, mulan.embed_files([corpus / record.path])[0].numpy())
                except MusicLMError as exc:
                    log.warning("%s: left out of the search index (%s)", record.id, exc)
                    failed[record.id] = record.path
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    if todo or stale or not path.exists():
        _write_cache(path, rows, failed, mulan.embed_dim)
        for old in stale:
            old.unlink(missing_ok=True)
    kept = [r for r in wanted if r.id in rows]
    if not kept:
        return [], torch.zeros(0, mulan.embed_dim)
    return kept, torch.from_numpy(np.stack([rows[r.id][1] for r in kept]).astype(np.float32))


def search(mulan: MuLan, corpus: str | os.PathLike[str], query: str, top: int = 5,
           split: str | None = None) -> list[dict[str, object]]:
    """The ``top`` clips of a corpus closest to ``query`` (cosine similarity), best first."""
    if top < 1:
        raise MusicLMError("--top must be >= 1")
    records = read_manifest(corpus, split)
    if not records:
        raise MusicLMError(f"{corpus}: no clips{f' in split {split!r}' if split else ''}")
    text = mulan.embed_text([query])
    records, audio = corpus_embeddings(mulan, corpus, records)
    if not records:
        raise MusicLMError(f"{corpus}: no clip could be embedded")
    sims = (audio @ text[0]).tolist()
    order = sorted(range(len(records)), key=lambda i: -sims[i])[:top]
    return [{"rank": rank + 1, "id": records[i].id, "score": round(float(sims[i]), 4), "path": records[i].path,
             "split": records[i].split, "caption": records[i].caption} for rank, i in enumerate(order)]
