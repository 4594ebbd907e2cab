"""Generated results on disk: one folder per job id, a size cap and an expiry.

A folder is named by the job id only (32 lowercase hex digits, checked by :func:`check_job_id` before any
path is formed), so nothing a request sends ever becomes part of a path. Each holds ``audio.wav``,
``meta.json`` (the request and timings) and, once asked for, ``spectrogram.png``. :meth:`ResultStore.prune`
removes results older than ``max_age_seconds`` and then the oldest ones until the total fits ``max_bytes``.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_write_bytes, atomic_write_text

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
AUDIO_FILE, META_FILE, SPECTROGRAM_FILE = "audio.wav", "meta.json", "spectrogram.png"


class UnknownResult(MusicLMError):
    """No stored result has this id (never made, expired, deleted, or not an id at all)."""


def new_job_id() -> str:
    """A fresh, unguessable job id (128 random bits as hex)."""
    return secrets.token_hex(16)


def check_job_id(job_id: str) -> str:
    """``job_id`` if it has the form of a job id, else :class:`UnknownResult` (never a path)."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise UnknownResult("no such job")
    return job_id


class ResultStore:
    """The results folder (see the module docstring). Thread-safe."""

    def __init__(self, root: str | Path, max_bytes: int = 2 * 1024**3, max_age_seconds: float = 7 * 86400):
        if max_bytes <= 0 or max_age_seconds <= 0:
            raise MusicLMError("the results cap and expiry must be positive")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_age_seconds = int(max_bytes), float(max_age_seconds)
        self._lock = threading.Lock()
        self._plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe

    def _folder(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    # ------------------------------------------------------------------------------------------ writing
    def save(self, job_id: str, audio: np.ndarray, sample_rate: int, meta: dict[str, Any]) -> int:
        """Write a finished job's audio and metadata; returns the bytes used."""
        from musiclm.audio import save_audio

        folder = self._folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        save_audio(folder / AUDIO_FILE, np.asarray(audio, dtype=np.float32), sample_rate)
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=1, default=str))
        return _folder_bytes(folder)

    def delete(self, job_id: str) -> bool:
        """Remove a job's folder; False when there was none."""
        folder = self._folder(job_id)
        with self._lock:
            if not folder.is_dir():
                return False
            shutil.rmtree(folder, ignore_errors=True)
            return True

    # ------------------------------------------------------------------------------------------ reading
    def audio_path(self, job_id: str) -> Path:
        path = self._folder(job_id) / AUDIO_FILE
        if not path.is_file():
            raise UnknownResult("this job has no audio (not finished, expired or deleted)")
        return path

    def spectrogram(self, job_id: str, title: str | None = None) -> bytes:
        """The PNG of the job's log-mel spectrogram, drawn on first request and kept beside the audio."""
        from musiclm.audio import load_audio
        from musiclm.plots import spectrogram_png_bytes

        folder = self._folder(job_id)
        png = folder / SPECTROGRAM_FILE
        with self._plot_lock:
            if png.is_file():
                return png.read_bytes()
            wav, rate = load_audio(self.audio_path(job_id), sample_rate=None, allow_silent=True)
            data = spectrogram_png_bytes(wav, rate, title=title)
            if folder.is_dir():
                atomic_write_bytes(png, data)
            return data

    def load_all(self) -> list[dict[str, Any]]:
        """The metadata of every stored result (folders that are not job ids or lack files are skipped)."""
        out = []
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and JOB_ID.fullmatch(folder.name)):
                continue
            try:
                meta = json.loads((folder / META_FILE).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("id") == folder.name and (folder / AUDIO_FILE).is_file():
                out.append(meta)
        return out

    def total_bytes(self) -> int:
        return sum(_folder_bytes(f) for f in self.root.iterdir() if f.is_dir())

    # ------------------------------------------------------------------------------------------ pruning
    def prune(self, now: float | None = None, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete expired results, then the oldest until the total fits the cap; returns the removed ids.

        ``keep`` names results never removed now (e.g. the one just written).
        """
        now = time.time() if now is None else now
        removed = []
        with self._lock:
            entries = []
            for folder in self.root.iterdir():
                if not (folder.is_dir() and JOB_ID.fullmatch(folder.name)):
                    continue
                try:
                    stamp = folder.stat().st_mtime
                    meta = json.loads((folder / META_FILE).read_text())
                    stamp = float(meta.get("finished") or stamp)
                except (OSError, ValueError, TypeError, AttributeError):
                    pass
                entries.append((stamp, folder.name, _folder_bytes(folder)))
            entries.sort()
            total = sum(size for _, _, size in entries)
            for stamp, name, size in entries:
                if name in keep:
                    continue
                if now - stamp > self.max_age_seconds or total > self.max_bytes:
                    shutil.rmtree(self.root / name, ignore_errors=True)
                    total -= size
                    removed.append(name)
        return removed


def _folder_bytes(folder: Path) -> int:
    total = 0
    for item in folder.iterdir():
        try:
            total += item.stat().st_size
        except OSError:
            continue
    return total
