"""``TokenStore``: the tokens of a corpus, made once by :mod:`musiclm.tokenstore.build`, read by the stage trainers.

A store folder holds ``store.json`` (what was tokenized, by which models: see :class:`StoreInfo`) and
``shards/shard-NNNNN.npz``, one per ``shard_size`` clips, each written atomically with numpy (no pickles)
beside a human-readable ``shard-NNNNN.json`` report. Per clip a shard keeps:

=================  ===============================  ==========================================================
array              dtype, shape                     meaning
=================  ===============================  ==========================================================
``ids``            str ``[n]``                      manifest clip id
``splits``         str ``[n]``                      train / valid / test
``corpora``        str ``[n]``                      name of the corpus folder the clip came from
``sources``        str ``[n]``                      the manifest's ``source`` field
``captions``       str ``[n]``                      caption text ("" when none; for evaluation only)
``seconds``        float64 ``[n]``                  duration of the decoded audio
``codes``          int16 ``[levels, sum frames]``   SoundStream codes (50 Hz, all RVQ levels), clips concatenated
``code_offsets``   int64 ``[n + 1]``                clip ``i`` owns ``codes[:, off[i]:off[i+1]]``
``semantic``       int16 ``[sum tokens]``           semantic tokens (25 Hz), clips concatenated
``semantic_offsets`` int64 ``[n + 1]``              clip ``i`` owns ``semantic[off[i]:off[i+1]]``
``mulan_tokens``   int16 ``[n, Q]``                 RVQ tokens of the clip's MuLan audio embedding
``mulan_embedding`` float16 ``[n, D]``              the MuLan audio embedding itself (unit norm)
``melody``         int16 ``[sum windows, L]``       melody tokens (one row per 4 s window, 3 s hop), clips
                                                    concatenated; only in stores made with a melody model
``melody_offsets`` int64 ``[n + 1]``                clip ``i`` owns ``melody[off[i]:off[i+1]]`` (with ``melody``)
``contour``        int16 ``[sum frames]``           pitch contour (dominant pitch class or silent, 25 Hz), clips
                                                    concatenated; only in stores made with ``--contour``
``contour_offsets`` int64 ``[n + 1]``               clip ``i`` owns ``contour[off[i]:off[i+1]]`` (with ``contour``)
``store_key``      str ``[]``                       ties the shard to its ``store.json`` (layout and models)
``report``         str ``[]``                       JSON: clips planned, kept and skipped (with reasons)
=================  ===============================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path, atomic_write_text

FORMAT = "musiclm-tokenstore"
FORMAT_VERSION = 1
STORE_FILE = "store.json"
SHARDS_DIR = "shards"

STRING_FIELDS = ("ids", "splits", "corpora", "sources", "captions")
ARRAY_FIELDS = (*STRING_FIELDS, "seconds", "codes", "code_offsets", "semantic", "semantic_offsets", "mulan_tokens",
                "mulan_embedding", "store_key", "report")
MELODY_FIELDS = ("melody", "melody_offsets")  # present when the store was made with a melody model
CONTOUR_FIELDS = ("contour", "contour_offsets")  # present when the store was made with pitch contours
TOKEN_DTYPE = np.int16
TOKEN_LIMIT = int(np.iinfo(TOKEN_DTYPE).max) + 1  # vocabularies must fit int16


class TokenStoreError(MusicLMError):
    """A token store is missing, incomplete, corrupt, or does not match the models or corpus of a run."""


# ------------------------------------------------------------------------------------------------ metadata
@dataclass
class StoreInfo:
    """The content of ``store.json``: the corpus layout, the shard plan and the identity of the three models."""

    corpora: list[dict[str, Any]]  # {"name", "path", "clips"} in the order given
    splits: list[str]  # the split filter of the build (all three when none was given)
    shard_size: int
    num_shards: int
    num_clips: int  # clips planned (tokenized or skipped)
    layout: str  # fingerprint of the planned clip list (corpus, id, path, split, in order)
    sample_rate: int
    codec: dict[str, Any]  # fingerprint, frame_rate, levels, codebook_size, coarse_levels, hop_length, config
    semantic: dict[str, Any]  # fingerprint, token_rate, num_clusters, layer, config
    mulan: dict[str, Any]  # fingerprint, embed_dim, num_quantizers, codebook_size, config
    musiclm_version: str = ""
    melody: dict[str, Any] | None = None  # fingerprint, num_quantizers, codebook_size, hop/window seconds, config
    contour: dict[str, Any] | None = None  # pitch contour settings: fingerprint, frame_rate, values, ...
    format: str = FORMAT
    version: int = FORMAT_VERSION
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            self.key = self.compute_key()

    def compute_key(self) -> str:
        """A hash of what makes two stores interchangeable: the layout, the shard size and the model weights."""
        parts = [self.layout, str(self.shard_size), self.codec["fingerprint"], self.semantic["fingerprint"],
                 self.mulan["fingerprint"]]
        if self.melody:
            parts.append(self.melody["fingerprint"])
        if self.contour:
            parts.append("contour:" + self.contour["fingerprint"])
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # facts the stage trainers need
    @property
    def levels(self) -> int:
        return int(self.codec["levels"])

    @property
    def coarse_levels(self) -> int:
        return int(self.codec["coarse_levels"])

    @property
    def codebook_size(self) -> int:
        return int(self.codec["codebook_size"])

    @property
    def frame_rate(self) -> float:
        return float(self.codec["frame_rate"])

    @property
    def semantic_rate(self) -> float:
        return float(self.semantic["token_rate"])

    @property
    def semantic_clusters(self) -> int:
        return int(self.semantic["num_clusters"])

    @property
    def mulan_levels(self) -> int:
        return int(self.mulan["num_quantizers"])

    @property
    def mulan_codebook_size(self) -> int:
        return int(self.mulan["codebook_size"])

    @property
    def embed_dim(self) -> int:
        return int(self.mulan["embed_dim"])

    @property
    def melody_levels(self) -> int:
        """Melody tokens per melody window (0: the store holds no melody tokens)."""
        return int(self.melody["num_quantizers"]) if self.melody else 0

    @property
    def melody_codebook_size(self) -> int:
        return int(self.melody["codebook_size"]) if self.melody else 0

    @property
    def contour_values(self) -> int:
        """Distinct pitch-contour values (0: the store holds no contour)."""
        return int(self.contour["values"]) if self.contour else 0

    @property
    def array_fields(self) -> tuple[str, ...]:
        """The arrays every shard of this store holds."""
        return (*ARRAY_FIELDS, *(MELODY_FIELDS if self.melody else ()), *(CONTOUR_FIELDS if self.contour else ()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = STORE_FILE) -> StoreInfo:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TokenStoreError(f"{where}: not a token store description (format is not {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise TokenStoreError(f"{where}: token store format version {data.get('version')} is not supported "
                                  f"(this musiclm reads version {FORMAT_VERSION}); tokenize again")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in data and n not in ("musiclm_version", "key", "melody", "contour"))
        if missing:
            raise TokenStoreError(f"{where}: missing fields {missing}")
        info = cls(**{k: v for k, v in data.items() if k in names})
        if info.key != info.compute_key():
            raise TokenStoreError(f"{where}: its key does not match its content (edited by hand?)")
        return info


def store_file(folder: str | os.PathLike[str]) -> Path:
    return Path(folder) / STORE_FILE


def shard_path(folder: str | os.PathLike[str], index: int) -> Path:
    return Path(folder) / SHARDS_DIR / f"shard-{index:05d}.npz"


def report_path(folder: str | os.PathLike[str], index: int) -> Path:
    return shard_path(folder, index).with_suffix(".json")


def read_info(folder: str | os.PathLike[str]) -> StoreInfo:
    """The :class:`StoreInfo` of a store folder (clear errors for a missing or damaged ``store.json``)."""
    path = store_file(folder)
    if not path.exists():
        hint = "no such folder" if not Path(folder).exists() else f"no {STORE_FILE}"
        raise TokenStoreError(f"{folder}: not a token store ({hint}); make one with "
                              f"`musiclm tokenize --corpus CORPUS --out {folder}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenStoreError(f"{path}: unreadable ({exc})") from exc
    try:
        return StoreInfo.from_dict(data, str(path))
    except TypeError as exc:
        raise TokenStoreError(f"{path}: malformed ({exc})") from exc


def write_info(folder: str | os.PathLike[str], info: StoreInfo) -> Path:
    return atomic_write_text(store_file(folder), json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")


# -------------------------------------------------------------------------------------------------- shards
def string_array(values: Sequence[str]) -> np.ndarray:
    """Fixed-width unicode array (never an object array, so it loads without pickles)."""
    return np.array(list(values), dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def write_shard(folder: str | os.PathLike[str], index: int, arrays: dict[str, np.ndarray],
                report: dict[str, Any], fields: Sequence[str] = ARRAY_FIELDS) -> Path:
    """Write shard ``index`` (the ``.npz``, then its ``.json`` report), each atomically.

    The ``.npz`` is the completion mark: it carries the report too, so a kill between the two files loses
    nothing (:func:`shard_report` restores the ``.json``).
    """
    path = shard_path(folder, index)
    report_text = json.dumps(report, sort_keys=True)
    payload = dict(arrays)
    payload["report"] = np.array(report_text)
    missing = [k for k in fields if k not in payload]
    if missing:
        raise ValueError(f"shard arrays lack {missing}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **payload)
    atomic_write_text(report_path(folder, index), json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def _open_npz(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TokenStoreError(f"{path}: corrupt shard ({exc}); delete it and run `musiclm tokenize` again "
                              f"to remake it") from exc


def _read(npz: Any, path: Path, key: str) -> np.ndarray:
    try:
        return npz[key]
    except KeyError:
        raise TokenStoreError(f"{path}: corrupt shard (no array {key!r}); delete it and run `musiclm tokenize` "
                              f"again to remake it") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TokenStoreError(f"{path}: corrupt shard (array {key!r}: {exc}); delete it and run "
                              f"`musiclm tokenize` again to remake it") from exc


def read_shard(path: str | os.PathLike[str], info: StoreInfo, small_only: bool = False) -> dict[str, np.ndarray]:
    """All arrays of one shard, validated against ``info`` (shapes, dtypes, value ranges, store key).

    ``small_only`` leaves out ``codes`` and ``semantic`` (but checks the offsets against their shapes).
    """
    path = Path(path)
    fields = info.array_fields
    with _open_npz(path) as npz:
        names = set(npz.files)
        missing = [k for k in fields if k not in names]
        if missing:
            raise TokenStoreError(f"{path}: corrupt shard (missing {missing}); delete it and run "
                                  f"`musiclm tokenize` again to remake it")
        keys = [k for k in fields if not (small_only and k in ("codes", "semantic"))]
        out = {k: _read(npz, path, k) for k in keys}
        if small_only:
            out["_codes_shape"] = np.array(_member_shape(npz, path, "codes"))
            out["_semantic_shape"] = np.array(_member_shape(npz, path, "semantic"))
    _validate_shard(out, path, info)
    return out


def _member_shape(npz: Any, path: Path, key: str) -> tuple[int, ...]:
    """The shape of one ``.npy`` member, read from its header only."""
    try:
        with npz.zip.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, _ = reader(handle)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise TokenStoreError(f"{path}: corrupt shard (array {key!r}: {exc})") from exc
    return tuple(int(s) for s in shape)


def _validate_shard(a: dict[str, np.ndarray], path: Path, info: StoreInfo) -> None:
    def bad(what: str) -> TokenStoreError:
        return TokenStoreError(f"{path}: corrupt shard ({what}); delete it and run `musiclm tokenize` again")

    if str(a["store_key"]) != info.key:
        raise TokenStoreError(f"{path}: belongs to another token store (key {a['store_key']}, this store's is "
                              f"{info.key}); shards of different stores must not be mixed")
    n = a["ids"].shape[0]
    for name in STRING_FIELDS:
        if a[name].shape != (n,) or a[name].dtype.kind != "U":
            raise bad(f"{name} must be {n} strings")
    if a["seconds"].shape != (n,):
        raise bad("seconds has the wrong length")
    codes_shape = tuple(a["_codes_shape"]) if "_codes_shape" in a else a["codes"].shape
    semantic_shape = tuple(a["_semantic_shape"]) if "_semantic_shape" in a else a["semantic"].shape
    for name, total in (("code_offsets", codes_shape[-1] if len(codes_shape) == 2 else -1),
                        ("semantic_offsets", semantic_shape[0] if len(semantic_shape) == 1 else -1)):
        offsets = a[name]
        if (offsets.shape != (n + 1,) or offsets.dtype.kind not in "iu" or int(offsets[0]) != 0
                or bool(np.any(np.diff(offsets) < 0)) or int(offsets[-1]) != total):
            raise bad(f"{name} do not fit the token arrays")
    if len(codes_shape) != 2 or codes_shape[0] != info.levels:
        raise bad(f"codes must be [{info.levels}, frames], got {codes_shape}")
    if a["mulan_tokens"].shape != (n, info.mulan_levels) or a["mulan_tokens"].dtype != TOKEN_DTYPE:
        raise bad(f"mulan_tokens must be int16 [{n}, {info.mulan_levels}]")
    if a["mulan_embedding"].shape != (n, info.embed_dim) or a["mulan_embedding"].dtype != np.float16:
        raise bad(f"mulan_embedding must be float16 [{n}, {info.embed_dim}]")
    checks = [("mulan_tokens", info.mulan_codebook_size)]
    if info.melody:
        melody, offsets = a["melody"], a["melody_offsets"]
        if melody.ndim != 2 or melody.shape[1] != info.melody_levels:
            raise bad(f"melody must be [windows, {info.melody_levels}], got {melody.shape}")
        if (offsets.shape != (n + 1,) or offsets.dtype.kind not in "iu" or int(offsets[0]) != 0
                or bool(np.any(np.diff(offsets) < 0)) or int(offsets[-1]) != melody.shape[0]):
            raise bad("melody_offsets do not fit the melody array")
        checks.append(("melody", info.melody_codebook_size))
    if info.contour:
        contour, offsets = a["contour"], a["contour_offsets"]
        if contour.ndim != 1:
            raise bad(f"contour must be [frames], got {contour.shape}")
        if (offsets.shape != (n + 1,) or offsets.dtype.kind not in "iu" or int(offsets[0]) != 0
                or bool(np.any(np.diff(offsets) < 0)) or int(offsets[-1]) != contour.shape[0]):
            raise bad("contour_offsets do not fit the contour array")
        checks.append(("contour", info.contour_values))
    if "codes" in a:
        checks.append(("codes", info.codebook_size))
    if "semantic" in a:
        checks.append(("semantic", info.semantic_clusters))
    for name, limit in checks:
        values = a[name]
        if values.dtype != TOKEN_DTYPE:
            raise bad(f"{name} must be int16, got {values.dtype}")
        if values.size and (int(values.min()) < 0 or int(values.max()) >= limit):
            raise bad(f"{name} outside [0, {limit})")


def shard_report(folder: str | os.PathLike[str], index: int, info: StoreInfo) -> dict[str, Any] | None:
    """The report of shard ``index`` (``None`` when the shard is not done); restores a lost ``.json``."""
    path = shard_path(folder, index)
    if not path.exists():
        return None
    side = report_path(folder, index)
    if side.exists():
        try:
            report = json.loads(side.read_text(encoding="utf-8"))
            if report.get("store_key") == info.key:
                return report
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
    with _open_npz(path) as npz:
        key = str(_read(npz, path, "store_key"))
        if key != info.key:
            raise TokenStoreError(f"{path}: belongs to another token store (key {key}, this store's is {info.key})")
        report = json.loads(str(_read(npz, path, "report")))
    atomic_write_text(side, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def index_ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``."""
    out: list[str] = []
    values = sorted(indices)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(out)


# ---------------------------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class ClipTokens:
    """Everything a store holds about one clip."""

    id: str
    split: str
    corpus: str
    source: str
    caption: str
    seconds: float
    codes: np.ndarray  # int16 [levels, frames] at 50 Hz
    semantic: np.ndarray  # int16 [tokens] at 25 Hz
    mulan_tokens: np.ndarray  # int16 [Q]
    mulan_embedding: np.ndarray  # float16 [D]
    melody: np.ndarray | None = None  # int16 [windows, L] when the store holds melody tokens
    contour: np.ndarray | None = None  # int16 [frames] when the store holds pitch contours


class _Columns:
    """The arrays of all loaded shards, concatenated (read-only), shared by a store and its views."""

    def __init__(self, parts: list[dict[str, np.ndarray]], levels: int, q: int, d: int, folder: Path,
                 info: StoreInfo, indices: list[int]):
        n = sum(p["ids"].shape[0] for p in parts)
        total_codes = sum(int(p["code_offsets"][-1]) for p in parts)
        total_semantic = sum(int(p["semantic_offsets"][-1]) for p in parts)
        self.codes = np.empty((levels, total_codes), dtype=TOKEN_DTYPE)
        self.semantic = np.empty(total_semantic, dtype=TOKEN_DTYPE)
        self.code_offsets = np.zeros(n + 1, dtype=np.int64)
        self.semantic_offsets = np.zeros(n + 1, dtype=np.int64)
        row = code_at = semantic_at = 0
        for part, index in zip(parts, indices):
            rows = part["ids"].shape[0]
            self.code_offsets[row + 1 : row + rows + 1] = part["code_offsets"][1:] + code_at
            self.semantic_offsets[row + 1 : row + rows + 1] = part["semantic_offsets"][1:] + semantic_at
            full = read_shard(shard_path(folder, index), info)  # the big arrays, one shard at a time
            self.codes[:, code_at : code_at + full["codes"].shape[1]] = full["codes"]
            self.semantic[semantic_at : semantic_at + full["semantic"].shape[0]] = full["semantic"]
            code_at += full["codes"].shape[1]
            semantic_at += full["semantic"].shape[0]
            row += rows
        def cat(name: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([p[name] for p in parts]) if parts else empty

        self.ids = cat("ids", string_array([]))
        self.splits = cat("splits", string_array([]))
        self.corpora = cat("corpora", string_array([]))
        self.sources = cat("sources", string_array([]))
        self.captions = cat("captions", string_array([]))
        self.seconds = cat("seconds", np.zeros(0))
        self.mulan_tokens = cat("mulan_tokens", np.zeros((0, q), dtype=TOKEN_DTYPE))
        self.mulan_embedding = cat("mulan_embedding", np.zeros((0, d), dtype=np.float16))
        self.melody: np.ndarray | None = None
        self.melody_offsets: np.ndarray | None = None
        if info.melody:
            self.melody = cat("melody", np.zeros((0, info.melody_levels), dtype=TOKEN_DTYPE))
            self.melody_offsets = _joined_offsets(parts, "melody_offsets", n)
        self.contour: np.ndarray | None = None
        self.contour_offsets: np.ndarray | None = None
        if info.contour:
            self.contour = cat("contour", np.zeros(0, dtype=TOKEN_DTYPE))
            self.contour_offsets = _joined_offsets(parts, "contour_offsets", n)
        for value in vars(self).values():
            if value is None:
                continue
            value.flags.writeable = False


def _joined_offsets(parts: list[dict[str, np.ndarray]], name: str, n: int) -> np.ndarray:
    """The ``[n + 1]`` offsets of a ragged array whose shards' parts are concatenated in order."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    row = at = 0
    for part in parts:
        rows = part["ids"].shape[0]
        offsets[row + 1 : row + rows + 1] = part[name][1:] + at
        at += int(part[name][-1])
        row += rows
    return offsets


class TokenStore:
    """Read access to a token store: per-clip codes, semantic tokens, MuLan tokens and embeddings.

    ``TokenStore.open(folder)`` loads every shard into memory (about 12 kB per 10 s clip) after validating it;
    ``select("train")`` gives a view of one split sharing the same arrays. Arrays handed out are read-only.
    """

    def __init__(self, folder: Path, info: StoreInfo, columns: _Columns, rows: np.ndarray,
                 shards_present: list[int], skipped: list[dict[str, Any]]):
        self.folder = folder
        self.info = info
        self._c = columns
        self._rows = rows
        self.shards_present = shards_present
        self.skipped = skipped  # {"id", "corpus", "reason"} of clips the build could not tokenize

    @classmethod
    def open(cls, folder: str | os.PathLike[str], allow_incomplete: bool = False) -> TokenStore:
        """Load a store folder; missing shards are an error unless ``allow_incomplete``."""
        folder = Path(folder)
        info = read_info(folder)
        present = [i for i in range(info.num_shards) if shard_path(folder, i).exists()]
        missing = sorted(set(range(info.num_shards)) - set(present))
        if missing and not allow_incomplete:
            raise TokenStoreError(f"{folder}: {len(missing)} of {info.num_shards} shards are not done yet "
                                  f"({index_ranges(missing)}); run `musiclm tokenize` again with the same "
                                  f"arguments to finish the store")
        parts = [read_shard(shard_path(folder, i), info, small_only=True) for i in present]
        skipped: list[dict[str, Any]] = []
        for part in parts:
            skipped.extend(json.loads(str(part["report"])).get("skipped", []))
        columns = _Columns(parts, info.levels, info.mulan_levels, info.embed_dim, folder, info, present)
        if len(set(columns.ids.tolist())) != columns.ids.shape[0]:
            dupes = [k for k, v in Counter(columns.ids.tolist()).items() if v > 1][:3]
            raise TokenStoreError(f"{folder}: clip ids appear twice ({dupes}); the store is damaged")
        return cls(folder, info, columns, np.arange(columns.ids.shape[0]), present, skipped)

    # --------------------------------------------------------------------------------------- selection
    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __repr__(self) -> str:
        return f"TokenStore({str(self.folder)!r}, clips={len(self)})"

    @property
    def complete(self) -> bool:
        return len(self.shards_present) == self.info.num_shards

    @property
    def ids(self) -> list[str]:
        return self._c.ids[self._rows].tolist()

    @property
    def splits(self) -> list[str]:
        """The split of each clip (parallel to :attr:`ids`)."""
        return self._c.splits[self._rows].tolist()

    def split_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.splits).items()))

    def select(self, split: str | Sequence[str]) -> TokenStore:
        """A view of the clips of one split (or several), sharing this store's arrays."""
        wanted = [split] if isinstance(split, str) else list(split)
        keep = np.isin(self._c.splits[self._rows], wanted)
        return TokenStore(self.folder, self.info, self._c, self._rows[keep], self.shards_present, self.skipped)

    def index(self, clip_id: str) -> int:
        """Position of clip ``clip_id`` in this store (or view)."""
        hits = np.flatnonzero(self._c.ids[self._rows] == clip_id)
        if not hits.size:
            raise KeyError(clip_id)
        return int(hits[0])

    # ------------------------------------------------------------------------------------- per clip
    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"clip index {i} out of range for {n} clips")
        return int(self._rows[i])

    def codes(self, i: int) -> np.ndarray:
        """Acoustic codes ``[levels, frames]`` (int16, 50 Hz, all RVQ levels; the coarse stage uses the first
        ``info.coarse_levels``)."""
        r = self._row(i)
        return self._c.codes[:, self._c.code_offsets[r] : self._c.code_offsets[r + 1]]

    def semantic(self, i: int) -> np.ndarray:
        """Semantic tokens ``[frames]`` (int16, 25 Hz)."""
        r = self._row(i)
        return self._c.semantic[self._c.semantic_offsets[r] : self._c.semantic_offsets[r + 1]]

    def mulan_tokens(self, i: int) -> np.ndarray:
        """MuLan conditioning tokens ``[Q]`` (int16) of the clip's audio embedding."""
        return self._c.mulan_tokens[self._row(i)]

    def mulan_embedding(self, i: int) -> np.ndarray:
        """The clip's MuLan audio embedding ``[D]`` (float16)."""
        return self._c.mulan_embedding[self._row(i)]

    @property
    def has_melody(self) -> bool:
        """True when the store was made with a melody model (:meth:`melody` works)."""
        return self._c.melody is not None

    def melody(self, i: int) -> np.ndarray:
        """Melody tokens ``[windows, levels]`` (int16; one row per melody-model window)."""
        return self._ragged(i, self._c.melody, self._c.melody_offsets, "melody tokens (tokenize with --melody DIR)")

    def _ragged(self, i: int, values: np.ndarray | None, offsets: np.ndarray | None, what: str) -> np.ndarray:
        if values is None or offsets is None:
            raise TokenStoreError(f"{self.folder}: this store holds no {what}")
        r = self._row(i)
        return values[offsets[r] : offsets[r + 1]]

    @property
    def has_contour(self) -> bool:
        """True when the store holds pitch contours (:meth:`contour` works)."""
        return self._c.contour is not None

    def contour(self, i: int) -> np.ndarray:
        """Pitch contour ``[frames]`` (int16, 25 Hz: pitch class 0-11 or 12 for silent)."""
        return self._ragged(i, self._c.contour, self._c.contour_offsets, "pitch contours (tokenize with --contour)")

    def caption(self, i: int) -> str:
        return str(self._c.captions[self._row(i)])

    def seconds(self, i: int) -> float:
        return float(self._c.seconds[self._row(i)])

    def split(self, i: int) -> str:
        return str(self._c.splits[self._row(i)])

    def corpus(self, i: int) -> str:
        return str(self._c.corpora[self._row(i)])

    def clip(self, i: int) -> ClipTokens:
        r = self._row(i)
        return ClipTokens(id=str(self._c.ids[r]), split=str(self._c.splits[r]), corpus=str(self._c.corpora[r]),
                          source=str(self._c.sources[r]), caption=str(self._c.captions[r]),
                          seconds=float(self._c.seconds[r]), codes=self.codes(i), semantic=self.semantic(i),
                          mulan_tokens=self.mulan_tokens(i), mulan_embedding=self.mulan_embedding(i),
                          melody=self.melody(i) if self.has_melody else None,
                          contour=self.contour(i) if self.has_contour else None)

    # ----------------------------------------------------------------------------------------- totals
    def code_lengths(self) -> np.ndarray:
        """Frames of acoustic codes per clip ``[len]``."""
        offsets = self._c.code_offsets
        return (offsets[self._rows + 1] - offsets[self._rows]).astype(np.int64)

    def semantic_lengths(self) -> np.ndarray:
        offsets = self._c.semantic_offsets
        return (offsets[self._rows + 1] - offsets[self._rows]).astype(np.int64)

    def hours(self) -> float:
        return float(self._c.seconds[self._rows].sum() / 3600.0)
