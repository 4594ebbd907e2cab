"""Listening tests: blind A-vs-B ratings of two or more systems on a prompt set, kept in one SQLite file.

A test has prompts (a key and a caption) and systems (models, checkpoints, sampling settings or reference
audio), with one clip per system and prompt. :func:`create_test` copies the clips into the data folder under
names made of their SHA-256 (nothing a request sends ever names a file) and gives each a random token, which
is all a rater's page sees. Raters get the pairs they have not rated yet, least-rated first, in random order
and on a random side, and answer on a 5-point scale: -2 (A much better) .. 0 (no preference) .. 2 (B much
better). :func:`analyse` counts wins per system and tests each pair of systems with the Wilcoxon signed-rank
test on the per-rating preferences (zeros dropped, two-sided).

SQLite runs in WAL mode with a busy timeout and every write in ``BEGIN IMMEDIATE``, so concurrent raters
(threads or processes) are safe; ``PRAGMA user_version`` records which of :data:`MIGRATIONS` have run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.errors import MusicLMError

DB_FILE = "listening.sqlite"
CLIP_DIR = "clips"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MEDIA_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+=:-]{0,63}$")
TOKEN = re.compile(r"^[0-9a-f]{16}$")
SCALE = {-2: "A much better", -1: "A slightly better", 0: "no preference", 1: "B slightly better",
         2: "B much better"}

MIGRATIONS: tuple[str, ...] = (
    # 1: tests, systems, prompts, clips, ratings
    """
    CREATE TABLE tests (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '',
                        created REAL NOT NULL);
    CREATE TABLE systems (id INTEGER PRIMARY KEY, test_id INTEGER NOT NULL REFERENCES tests(id), name TEXT NOT NULL,
                          UNIQUE (test_id, name));
    CREATE TABLE prompts (id INTEGER PRIMARY KEY, test_id INTEGER NOT NULL REFERENCES tests(id), key TEXT NOT NULL,
                          caption TEXT NOT NULL, UNIQUE (test_id, key));
    CREATE TABLE clips (id INTEGER PRIMARY KEY, system_id INTEGER NOT NULL REFERENCES systems(id),
                        prompt_id INTEGER NOT NULL REFERENCES prompts(id), token TEXT NOT NULL UNIQUE,
                        file TEXT NOT NULL, seconds REAL NOT NULL, UNIQUE (system_id, prompt_id));
    CREATE TABLE ratings (id INTEGER PRIMARY KEY, test_id INTEGER NOT NULL REFERENCES tests(id),
                          rater TEXT NOT NULL, left_clip INTEGER NOT NULL REFERENCES clips(id),
                          right_clip INTEGER NOT NULL REFERENCES clips(id), pair_key TEXT NOT NULL,
                          score INTEGER NOT NULL CHECK (score BETWEEN -2 AND 2), created REAL NOT NULL,
                          UNIQUE (test_id, rater, pair_key));
    """,
    # 2: how long a rater took, and the indexes the pair scheduler and the analysis read by
    """
    ALTER TABLE ratings ADD COLUMN elapsed_ms INTEGER;
    CREATE INDEX ratings_by_test ON ratings (test_id, pair_key);
    CREATE INDEX clips_by_prompt ON clips (prompt_id);
    """,
)


class ListeningError(MusicLMError):
    """A listening-test request or setup is unusable (unknown test, bad clip, duplicate rating, ...)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PromptItem:
    key: str
    caption: str


def read_prompts(path: str | Path) -> list[PromptItem]:
    """A prompt set: JSON lines (``id`` or ``key``, and ``caption``/``text``/``prompt``) or text lines
    (``KEY<TAB>CAPTION``, or just the caption, keyed by its 1-based line number among the prompts)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ListeningError(f"{path}: cannot read the prompt file ({exc.strerror})") from None
    items: list[PromptItem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        if path.suffix.lower() in (".jsonl", ".json"):
            try:
                record = json.loads(line)
            except ValueError:
                raise ListeningError(f"{where}: not a JSON object") from None
            if not isinstance(record, dict):
                raise ListeningError(f"{where}: not a JSON object")
            caption = next((record[k] for k in ("caption", "text", "prompt") if isinstance(record.get(k), str)), None)
            key = record.get("id", record.get("key", len(items) + 1))
        elif "\t" in line:
            key, caption = line.split("\t", 1)
        else:
            key, caption = len(items) + 1, line
        key = str(key).strip()
        if not caption or not str(caption).strip():
            raise ListeningError(f"{where}: the prompt has no caption")
        if not KEY.fullmatch(key):
            raise ListeningError(f"{where}: prompt key {key!r} must be letters, digits, '.', '_' or '-'")
        items.append(PromptItem(key, str(caption).strip()))
    if not items:
        raise ListeningError(f"{path}: no prompts")
    keys = [i.key for i in items]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ListeningError(f"{path}: duplicate prompt keys {', '.join(duplicates[:5])}")
    return items


def find_clip(folder: Path, key: str) -> Path | None:
    """The audio file of prompt ``key`` in a system's folder (``KEY.wav``, ``.flac``, ``.ogg`` or ``.mp3``)."""
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{key}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class ListeningStore:
    """The listening-test database and clip folder under ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.clip_dir = self.data_dir / CLIP_DIR
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILE
        self.migrate()

    # ------------------------------------------------------------------------------------- connection
    @contextmanager
    def connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A fresh connection (one per operation: safe across threads and processes)."""
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 30000")
            if write:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    def migrate(self) -> int:
        """Apply the migrations this file has not seen; returns the schema version."""
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise ListeningError(f"{self.path}: schema version {version} is newer than this musiclm "
                                         f"({len(MIGRATIONS)}); upgrade musiclm")
                for number in range(version, len(MIGRATIONS)):
                    for statement in (s.strip() for s in MIGRATIONS[number].split(";")):
                        if statement:
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return len(MIGRATIONS)
        finally:
            conn.close()

    def schema_version(self) -> int:
        with self.connect() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------------------------------ setup
    def create_test(self, name: str, prompts: Sequence[PromptItem], systems: dict[str, str | Path],
                    description: str = "") -> dict[str, Any]:
        """Register a test: every system folder must hold one audio file per prompt key."""
        from musiclm.audio import audio_info

        if not NAME.fullmatch(name):
            raise ListeningError(f"test name {name!r} must be 1-64 letters, digits, spaces or ._+=:-")
        if len(systems) < 2:
            raise ListeningError("a listening test needs at least two systems")
        if not prompts:
            raise ListeningError("a listening test needs at least one prompt")
        clips: dict[tuple[str, str], tuple[str, float]] = {}
        missing = []
        for system, folder in systems.items():
            if not NAME.fullmatch(system):
                raise ListeningError(f"system name {system!r} must be 1-64 letters, digits, spaces or ._+=:-")
            folder = Path(folder)
            if not folder.is_dir():
                raise ListeningError(f"system {system}: {folder} is not a folder")
            for item in prompts:
                source = find_clip(folder, item.key)
                if source is None:
                    missing.append(f"{system}/{item.key}")
                    continue
                seconds = float(audio_info(source)["seconds"])
                clips[(system, item.key)] = (self._import_clip(source), seconds)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ListeningError(f"missing clips (KEY.wav/.flac/.ogg/.mp3 per prompt): {', '.join(missing[:5])}{more}")
        with self.connect(write=True) as conn:
            if conn.execute("SELECT 1 FROM tests WHERE name = ?", (name,)).fetchone():
                raise ListeningError(f"a listening test named {name!r} already exists", 409)
            test_id = conn.execute("INSERT INTO tests (name, description, created) VALUES (?, ?, ?)",
                                   (name, description, time.time())).lastrowid
            system_ids = {s: conn.execute("INSERT INTO systems (test_id, name) VALUES (?, ?)", (test_id, s)).lastrowid
                          for s in systems}
            prompt_ids = {p.key: conn.execute("INSERT INTO prompts (test_id, key, caption) VALUES (?, ?, ?)",
                                              (test_id, p.key, p.caption)).lastrowid for p in prompts}
            for (system, key), (file, seconds) in clips.items():
                conn.execute("INSERT INTO clips (system_id, prompt_id, token, file, seconds) VALUES (?, ?, ?, ?, ?)",
                             (system_ids[system], prompt_ids[key], secrets.token_hex(8), file, seconds))
        return {"name": name, "systems": list(systems), "prompts": len(prompts), "clips": len(clips),
                "pairs": len(prompts) * len(systems) * (len(systems) - 1) // 2}

    def _import_clip(self, source: Path) -> str:
        """Copy an audio file into the clip folder as ``<sha256><suffix>``; returns that file name."""
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        name = digest.hexdigest() + source.suffix.lower()
        target = self.clip_dir / name
        if not target.is_file():
            from musiclm.fileio import atomic_path

            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        return name

    # ------------------------------------------------------------------------------------------ queries
    def tests(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT t.id, t.name, t.description, t.created, "
                "(SELECT COUNT(*) FROM systems s WHERE s.test_id = t.id) AS systems, "
                "(SELECT COUNT(*) FROM prompts p WHERE p.test_id = t.id) AS prompts, "
                "(SELECT COUNT(*) FROM ratings r WHERE r.test_id = t.id) AS ratings, "
                "(SELECT COUNT(DISTINCT rater) FROM ratings r WHERE r.test_id = t.id) AS raters "
                "FROM tests t ORDER BY t.created").fetchall()
        return [{k: row[k] for k in tuple(row.keys()) if k != "id"} for row in rows]

    def _test_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM tests WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ListeningError(f"no listening test named {name!r}", 404)
        return int(row["id"])

    def _pairs(self, conn: sqlite3.Connection, test_id: int) -> dict[str, tuple[sqlite3.Row, sqlite3.Row]]:
        """Every comparable pair of the test: ``pair_key -> (clip, clip)`` (same prompt, two systems)."""
        clips = conn.execute(
            "SELECT c.id, c.token, c.prompt_id, c.system_id, p.key, p.caption FROM clips c "
            "JOIN prompts p ON p.id = c.prompt_id WHERE p.test_id = ? ORDER BY c.prompt_id, c.system_id",
            (test_id,)).fetchall()
        by_prompt: dict[int, list[sqlite3.Row]] = {}
        for clip in clips:
            by_prompt.setdefault(clip["prompt_id"], []).append(clip)
        pairs = {}
        for group in by_prompt.values():
            for a, b in itertools.combinations(group, 2):
                pairs[_pair_key(a["id"], b["id"])] = (a, b)
        return pairs

    def next_pair(self, name: str, rater: str, rng: np.random.Generator) -> dict[str, Any] | None:
        """A pair ``rater`` has not rated (least-rated first, random order and side), or None when done."""
        rater = check_rater(rater)
        with self.connect() as conn:
            test_id = self._test_id(conn, name)
            pairs = self._pairs(conn, test_id)
            counts = dict(conn.execute("SELECT pair_key, COUNT(*) FROM ratings WHERE test_id = ? GROUP BY pair_key",
                                       (test_id,)).fetchall())
            mine = {r[0] for r in conn.execute("SELECT pair_key FROM ratings WHERE test_id = ? AND rater = ?",
                                               (test_id, rater)).fetchall()}
        open_keys = sorted(k for k in pairs if k not in mine)
        if not open_keys:
            return {"test": name, "done": True, "rated": len(mine), "total": len(pairs)}
        fewest = min(counts.get(k, 0) for k in open_keys)
        candidates = [k for k in open_keys if counts.get(k, 0) == fewest]
        a, b = pairs[candidates[int(rng.integers(len(candidates)))]]
        if rng.random() < 0.5:
            a, b = b, a
        return {"test": name, "done": False, "rated": len(mine), "total": len(pairs),
                "prompt": {"key": a["key"], "caption": a["caption"]},
                "a": {"clip": a["token"], "url": f"/api/listen/clips/{a['token']}"},
                "b": {"clip": b["token"], "url": f"/api/listen/clips/{b['token']}"},
                "scale": {str(k): v for k, v in SCALE.items()}}

    def rate(self, name: str, rater: str, clip_a: str, clip_b: str, score: int,
             elapsed_ms: int | None = None) -> dict[str, Any]:
        """Store a rating of the pair shown as A = ``clip_a`` (left), B = ``clip_b`` (right)."""
        rater = check_rater(rater)
        if isinstance(score, bool) or not isinstance(score, int) or score not in SCALE:
            raise ListeningError(f"score must be an integer from -2 (A much better) to 2 (B much better), "
                                 f"got {score!r}")
        if elapsed_ms is not None and (not isinstance(elapsed_ms, int) or elapsed_ms < 0):
            raise ListeningError("elapsed_ms must be a non-negative integer")
        for token in (clip_a, clip_b):
            if not isinstance(token, str) or not TOKEN.fullmatch(token):
                raise ListeningError("unknown clip")
        with self.connect(write=True) as conn:
            test_id = self._test_id(conn, name)
            rows = {r["token"]: r for r in conn.execute(
                "SELECT c.id, c.token, c.prompt_id, c.system_id FROM clips c JOIN prompts p ON p.id = c.prompt_id "
                "WHERE p.test_id = ? AND c.token IN (?, ?)", (test_id, clip_a, clip_b)).fetchall()}
            if clip_a not in rows or clip_b not in rows:
                raise ListeningError("unknown clip for this test")
            a, b = rows[clip_a], rows[clip_b]
            if a["prompt_id"] != b["prompt_id"] or a["system_id"] == b["system_id"]:
                raise ListeningError("these two clips are not a pair of this test")
            key = _pair_key(a["id"], b["id"])
            if conn.execute("SELECT 1 FROM ratings WHERE test_id = ? AND rater = ? AND pair_key = ?",
                            (test_id, rater, key)).fetchone():
                raise ListeningError("this rater has already rated this pair", 409)
            rating_id = conn.execute(
                "INSERT INTO ratings (test_id, rater, left_clip, right_clip, pair_key, score, created, elapsed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (test_id, rater, a["id"], b["id"], key, score, time.time(), elapsed_ms)).lastrowid
        return {"id": rating_id, "stored": True}

    def clip_file(self, token: str) -> tuple[Path, str]:
        """The stored file and media type of a clip, by its token only."""
        if not isinstance(token, str) or not TOKEN.fullmatch(token):
            raise ListeningError("unknown clip", 404)
        with self.connect() as conn:
            row = conn.execute("SELECT file FROM clips WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise ListeningError("unknown clip", 404)
        path = self.clip_dir / Path(row["file"]).name
        if not path.is_file():
            raise ListeningError("the clip's file is missing from the data folder", 404)
        return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def ratings(self, name: str) -> list[dict[str, Any]]:
        """Every rating of a test with the systems revealed, oldest first."""
        with self.connect() as conn:
            test_id = self._test_id(conn, name)
            rows = conn.execute(
                "SELECT r.id, r.created, r.rater, p.key AS prompt_key, p.caption, sa.name AS system_a, "
                "sb.name AS system_b, r.score, r.elapsed_ms FROM ratings r "
                "JOIN clips ca ON ca.id = r.left_clip JOIN clips cb ON cb.id = r.right_clip "
                "JOIN systems sa ON sa.id = ca.system_id JOIN systems sb ON sb.id = cb.system_id "
                "JOIN prompts p ON p.id = ca.prompt_id WHERE r.test_id = ? ORDER BY r.id", (test_id,)).fetchall()
        return [dict(row) for row in rows]

    def systems(self, name: str) -> list[str]:
        with self.connect() as conn:
            test_id = self._test_id(conn, name)
            return [r[0] for r in conn.execute("SELECT name FROM systems WHERE test_id = ? ORDER BY id", (test_id,))]

    def export_csv(self, name: str) -> str:
        """The ratings as CSV text, one row per rating (``preferred`` names the winning system or 'tie')."""
        out = io.StringIO()
        columns = ["test", "rating_id", "created_utc", "rater", "prompt_key", "caption", "system_a", "system_b",
                   "score", "preferred", "elapsed_ms"]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in self.ratings(name):
            preferred = "tie" if r["score"] == 0 else (r["system_a"] if r["score"] < 0 else r["system_b"])
            writer.writerow({"test": name, "rating_id": r["id"],
                             "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["created"])),
                             "rater": r["rater"], "prompt_key": r["prompt_key"], "caption": r["caption"],
                             "system_a": r["system_a"], "system_b": r["system_b"], "score": r["score"],
                             "preferred": preferred, "elapsed_ms": "" if r["elapsed_ms"] is None else r["elapsed_ms"]})
        return out.getvalue()

    def results(self, name: str) -> dict[str, Any]:
        return analyse(self.systems(name), self.ratings(name)) | {"test": name}


def check_rater(rater: Any) -> str:
    if not isinstance(rater, str) or not rater.strip() or len(rater.strip()) > 64:
        raise ListeningError("rater must be a name or id of 1-64 characters")
    return rater.strip()


def _pair_key(a: int, b: int) -> str:
    return f"{min(a, b)}-{max(a, b)}"


def analyse(systems: Sequence[str], ratings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wins per system and, per pair of systems, the mean preference and a Wilcoxon signed-rank test.

    A rating's preference for system X over Y is ``-score`` when X was A (the left clip) and ``score``
    when X was B, so it is positive when X was judged to fit the caption better.
    """
    from scipy.stats import wilcoxon

    table = {s: {"system": s, "wins": 0, "losses": 0, "ties": 0, "ratings": 0} for s in systems}
    pairs: dict[tuple[str, str], list[int]] = {tuple(p): [] for p in itertools.combinations(systems, 2)}
    for r in ratings:
        a, b, score = r["system_a"], r["system_b"], int(r["score"])
        for system in (a, b):
            table[system]["ratings"] += 1
        if score == 0:
            table[a]["ties"] += 1
            table[b]["ties"] += 1
        else:
            winner, loser = (a, b) if score < 0 else (b, a)
            table[winner]["wins"] += 1
            table[loser]["losses"] += 1
        key = (a, b) if (a, b) in pairs else (b, a)
        pairs[key].append(-score if key[0] == a else score)
    for row in table.values():
        decided = row["wins"] + row["losses"]
        row["win_rate"] = round(row["wins"] / decided, 4) if decided else None
    comparisons = []
    for (x, y), prefs in pairs.items():
        values = np.asarray(prefs, dtype=float)
        entry: dict[str, Any] = {"system_x": x, "system_y": y, "n": len(prefs),
                                 "x_wins": int((values > 0).sum()), "y_wins": int((values < 0).sum()),
                                 "ties": int((values == 0).sum()),
                                 "mean_preference_x": round(float(values.mean()), 4) if len(values) else None,
                                 "wilcoxon_statistic": None, "p_value": None}
        if np.count_nonzero(values):
            test = wilcoxon(values, zero_method="wilcox", alternative="two-sided")
            entry["wilcoxon_statistic"] = float(test.statistic)
            entry["p_value"] = float(test.pvalue)
        comparisons.append(entry)
    ranking = sorted(table.values(), key=lambda r: (-(r["win_rate"] or 0.0), -r["wins"], r["system"]))
    return {"systems": ranking, "pairs": comparisons, "ratings": len(ratings),
            "raters": len({r["rater"] for r in ratings})}
