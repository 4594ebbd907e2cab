"""Tokenize corpora once: SoundStream codes, semantic tokens and MuLan tokens of every clip (and, with a
melody model, its melody tokens), in shards.

The planned clips (every corpus's manifest in the order given, clips in manifest order, optionally only some
splits) are cut into shards of ``shard_size``; shard ``i`` belongs to rank ``i % world_size``, so N processes
(``--rank``/``--world-size``, or torchrun's ``RANK``/``WORLD_SIZE``) share a build with no communication. A
shard is written atomically when all its clips are done; a re-run skips finished shards, so a killed build
loses at most the shard each rank was working on. A clip that cannot be read or tokenized is skipped and
recorded with its reason in the shard's report; a shard where more than ``max_skip_fraction`` of the clips
fail stops the build, since that points at a broken setup rather than a bad clip.

Within a shard, clips of equal length are batched through each model (``batch`` at a time) while a
background thread decodes the next files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musiclm import __version__
from musiclm.audio import load_audio
from musiclm.config import to_dict
from musiclm.data.manifest import SPLITS, ClipRecord, read_manifest
from musiclm.errors import MusicLMError
from musiclm.fileio import fsync_file
from musiclm.progress import clip_bar
from musiclm.tokenstore.store import (
    SHARDS_DIR,
    STORE_FILE,
    TOKEN_DTYPE,
    TOKEN_LIMIT,
    StoreInfo,
    TokenStoreError,
    read_info,
    read_shard,
    shard_path,
    store_file,
    string_array,
    write_shard,
)
from musiclm.weights import weights_digest

log = logging.getLogger("musiclm.tokenstore")

DEFAULT_SHARD_SIZE = 256
DEFAULT_BATCH = 8  # on a GPU
DEFAULT_CPU_BATCH = 1  # on a CPU, batching saves no compute and costs page faults (docs/TOKENIZE.md)
DEFAULT_MAX_SKIP_FRACTION = 0.5


class TokenizeError(TokenStoreError):
    """A tokenize run cannot start or must stop (bad arguments, wrong models for the store, broken setup)."""


# -------------------------------------------------------------------------------------------------- models
def semantic_fingerprint(tokenizer: Any) -> str:
    """Hash of a :class:`~musiclm.semantic.tokenizer.SemanticTokenizer`'s config, weights and centroids."""
    config = to_dict(tokenizer.config)
    config.pop("source", None)  # where the weights came from is not what they are
    state = dict(tokenizer.model.state_dict())
    state["kmeans.centroids"] = tokenizer.centroids
    return weights_digest(config, state)


@dataclass
class TokenizerModels:
    """The models a store is made with: codec, semantic tokenizer and MuLan (with its quantiser), and
    optionally the melody model (with its quantiser), whose tokens condition the semantic stage."""

    codec: Any  # musiclm.codec.api.Codec
    semantic: Any  # musiclm.semantic.tokenizer.SemanticTokenizer
    mulan: Any  # musiclm.mulan.api.MuLan
    melody: Any = None  # musiclm.melody.api.MelodyModel or None
    contour: Any = None  # musiclm.melody.contour.PitchContour or None (frame-rate pitch contours)

    def __post_init__(self) -> None:
        if self.mulan.quantizer is None:
            raise TokenizeError("the MuLan model has no fitted embedding quantiser (run `musiclm mulan "
                                "fit-quantizer RUN` and export it again)")
        sizes = {"codec codebook": self.codec.codebook_size, "semantic clusters": self.semantic.num_clusters,
                 "MuLan codebook": self.mulan.codebook_size}
        if self.melody is not None:
            if self.melody.quantizer is None:
                raise TokenizeError("the melody model has no fitted quantiser (run `musiclm melody fit-quantizer "
                                    "RUN` and export it again)")
            sizes["melody codebook"] = self.melody.codebook_size
        too_big = {k: v for k, v in sizes.items() if v > TOKEN_LIMIT}
        if too_big:
            raise TokenizeError(f"vocabularies must fit int16 (<= {TOKEN_LIMIT}): {too_big}")

    @classmethod
    def load(cls, codec: str | os.PathLike[str], semantic: str | os.PathLike[str],
             mulan: str | os.PathLike[str], device: str | torch.device = "cpu",
             melody: str | os.PathLike[str] | None = None) -> TokenizerModels:
        """Load the model folders (made by ``musiclm codec|semantic|mulan|melody export``)."""
        from musiclm.codec.api import Codec
        from musiclm.mulan.api import MuLan
        from musiclm.semantic.tokenizer import SemanticTokenizer

        folders = [("codec", codec, "--codec"), ("semantic tokenizer", semantic, "--semantic"),
                   ("MuLan", mulan, "--mulan")]
        if melody is not None:
            folders.append(("melody", melody, "--melody"))
        for name, folder, flag in folders:
            if not Path(folder).exists():
                raise TokenizeError(f"no {name} model at {folder}; pass {flag} DIR (made by `musiclm "
                                    f"{flag[2:]} export`)")
        melody_model = None
        if melody is not None:
            from musiclm.melody.api import MelodyModel

            melody_model = MelodyModel.from_pretrained(melody, device=device)
        return cls(Codec.from_pretrained(codec, device=device),
                   SemanticTokenizer.from_pretrained(semantic, device=device),
                   MuLan.from_pretrained(mulan, device=device), melody_model)

    def to(self, device: str | torch.device) -> TokenizerModels:
        self.codec.to(device)
        self.semantic.to(device)
        self.mulan.to(device)
        if self.melody is not None:
            self.melody.to(device)
        return self

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    def identity(self) -> dict[str, dict[str, Any]]:
        """What ``store.json`` records of each model (a store never mixes tokens of two models)."""
        codec, sem, mulan = self.codec, self.semantic, self.mulan
        sem_config = to_dict(sem.config)
        out: dict[str, dict[str, Any] | None] = {
            "codec": {"fingerprint": codec.token_fingerprint(), "sample_rate": codec.sample_rate,
                      "frame_rate": codec.frame_rate, "hop_length": codec.hop_length, "levels": codec.num_quantizers,
                      "coarse_levels": codec.config.coarse_levels, "codebook_size": codec.codebook_size,
                      "source": codec.source, "config": to_dict(codec.config)},
            "semantic": {"fingerprint": semantic_fingerprint(sem), "sample_rate": sem.sample_rate,
                         "token_rate": sem.token_rate, "num_clusters": sem.num_clusters, "layer": sem.layer,
                         "source": sem_config.pop("source", ""), "config": sem_config},
            "mulan": {"fingerprint": mulan.token_fingerprint(), "sample_rate": mulan.sample_rate,
                      "embed_dim": mulan.embed_dim, "num_quantizers": mulan.num_quantizers,
                      "codebook_size": mulan.codebook_size, "source": mulan.source, "config": to_dict(mulan.config)},
            "melody": None,
            "contour": None if self.contour is None else self.contour.identity(),
        }
        if self.melody is not None:
            m = self.melody
            out["melody"] = {"fingerprint": m.fingerprint(), "sample_rate": m.sample_rate,
                             "num_quantizers": m.num_quantizers, "codebook_size": m.codebook_size,
                             "window_seconds": m.window_seconds, "hop_seconds": m.hop_seconds,
                             "source": getattr(m, "source", None), "config": to_dict(m.config)}
        return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class PlannedClip:
    corpus: str  # name of the corpus folder
    root: Path
    record: ClipRecord


@dataclass
class Plan:
    """The clips a store covers, in order, and their shards."""

    corpora: list[dict[str, Any]]
    splits: list[str]
    clips: list[PlannedClip]
    shard_size: int

    @property
    def num_shards(self) -> int:
        return -(-len(self.clips) // self.shard_size)

    def shard(self, index: int) -> list[PlannedClip]:
        return self.clips[index * self.shard_size : (index + 1) * self.shard_size]

    def layout(self) -> str:
        """Fingerprint of the clip list: which clip goes into which shard (paths of folders left out, so a
        cluster may mount the corpus elsewhere)."""
        digest = hashlib.sha256()
        for clip in self.clips:
            r = clip.record
            digest.update(json.dumps([clip.corpus, r.id, r.path, r.split]).encode())
        return digest.hexdigest()[:16]


def parse_splits(splits: str | Sequence[str] | None) -> list[str]:
    """``"train,valid"`` / a list / ``None`` (all) -> the split names, validated."""
    if splits is None:
        return list(SPLITS)
    names = [s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip()]
    bad = [s for s in names if s not in SPLITS]
    if bad or not names:
        raise TokenizeError(f"--splits must name some of {', '.join(SPLITS)}; got {splits!r}")
    return [s for s in SPLITS if s in names]


def plan_clips(corpora: Sequence[str | os.PathLike[str]], splits: str | Sequence[str] | None = None,
               shard_size: int = DEFAULT_SHARD_SIZE) -> Plan:
    """Read the manifests and lay the selected clips out in shards (deterministic for given arguments)."""
    if not corpora:
        raise TokenizeError("no corpus given (--corpus DIR)")
    if shard_size < 1:
        raise TokenizeError(f"--shard-size must be >= 1, got {shard_size}")
    wanted = parse_splits(splits)
    entries: list[dict[str, Any]] = []
    clips: list[PlannedClip] = []
    seen: dict[str, str] = {}
    for folder in corpora:
        root = Path(folder).resolve()
        name = root.name or "corpus"
        taken = {e["name"] for e in entries}
        suffix = 2
        base = name
        while name in taken:
            name, suffix = f"{base}-{suffix}", suffix + 1
        records = [r for r in read_manifest(root) if r.split in wanted]
        for record in records:
            if record.id in seen:
                raise TokenizeError(f"clip id {record.id!r} is in both {seen[record.id]} and {root}; "
                                    f"tokenize these corpora into separate stores")
            seen[record.id] = str(root)
            clips.append(PlannedClip(name, root, record))
        entries.append({"name": name, "path": str(root), "clips": len(records)})
    if not clips:
        raise TokenizeError(f"no clips of split(s) {', '.join(wanted)} in {', '.join(map(str, corpora))}")
    return Plan(entries, wanted, clips, shard_size)


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values win; else torchrun's ``RANK``/``WORLD_SIZE``; else ``(0, 1)``."""
    try:
        rank = int(os.environ.get("RANK", "0")) if rank is None else int(rank)
        world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else int(world_size)
    except ValueError as exc:
        raise TokenizeError(f"RANK/WORLD_SIZE must be integers ({exc})") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise TokenizeError(f"need 0 <= rank < world size (got rank {rank}, world size {world_size})")
    return rank, world_size


def store_info(plan: Plan, models: TokenizerModels) -> StoreInfo:
    ident = models.identity()
    return StoreInfo(corpora=plan.corpora, splits=plan.splits, shard_size=plan.shard_size,
                     num_shards=plan.num_shards, num_clips=len(plan.clips), layout=plan.layout(),
                     sample_rate=models.sample_rate, codec=ident["codec"], semantic=ident["semantic"],
                     mulan=ident["mulan"], melody=ident["melody"], contour=ident["contour"],
                     musiclm_version=__version__)


def _differences(old: StoreInfo, new: StoreInfo) -> list[str]:
    out = []
    for model in ("codec", "semantic", "mulan", "melody", "contour"):
        a, b = ((getattr(info, model) or {}).get("fingerprint", "none") for info in (old, new))
        if a != b:
            out.append(f"the {model} model differs (store: {a}, this run: {b})")
    if old.layout != new.layout or old.shard_size != new.shard_size:
        out.append(f"the clip layout differs (store: {old.num_clips} clips of {old.splits} from "
                   f"{[c['name'] for c in old.corpora]} in shards of {old.shard_size}; this run: {new.num_clips} "
                   f"clips of {new.splits} from {[c['name'] for c in new.corpora]} in shards of {new.shard_size})")
    return out


def prepare_store(folder: str | os.PathLike[str], info: StoreInfo) -> StoreInfo:
    """Create ``store.json`` (exclusively: the first of several ranks wins) or check that it matches ``info``."""
    folder = Path(folder)
    (folder / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    target = store_file(folder)
    if not target.exists():
        staging = folder / f".{STORE_FILE}.{os.getpid()}.tmp"
        staging.write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_file(staging)
        try:
            os.link(staging, target)  # atomic create-if-absent: of racing ranks, exactly one writes it
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not target.exists():
                os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
    existing = read_info(folder)
    problems = _differences(existing, info)
    if problems:
        raise TokenizeError(f"{folder} holds tokens made differently: {'; '.join(problems)}. Tokens of two "
                            f"models or layouts must never be mixed: use another --out folder (or delete this one)")
    return existing


# --------------------------------------------------------------------------------------------- tokenizing
@dataclass
class ClipResult:
    """One clip's tokens (a part is ``None`` while it is still to be copied from a reused store)."""

    codes: np.ndarray  # int16 [levels, frames]
    semantic: np.ndarray  # int16 [tokens]
    mulan_tokens: np.ndarray  # int16 [Q]
    mulan_embedding: np.ndarray  # float16 [D]
    samples: int
    melody: np.ndarray | None = None  # int16 [windows, L] with a melody model
    contour: np.ndarray | None = None  # int16 [frames] with pitch contours


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, MusicLMError) else text or type(exc).__name__


def _load(clip: PlannedClip, sample_rate: int) -> tuple[np.ndarray | None, str | None]:
    try:
        wav, _ = load_audio(clip.root / clip.record.path, sample_rate=sample_rate)
        return wav, None
    except Exception as exc:  # any unreadable file is a skipped clip, never a failed build
        return None, _reason(exc)


def _loaded(clips: Sequence[PlannedClip], sample_rate: int, ahead: int
            ) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """``(position, wav, error)`` in order, decoding up to ``ahead`` files in a background thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize-load") as pool:
        pending: deque[Any] = deque()
        upcoming = iter(enumerate(clips))
        for position, clip in upcoming:
            pending.append((position, pool.submit(_load, clip, sample_rate)))
            if len(pending) >= ahead:
                break
        while pending:
            position, future = pending.popleft()
            following = next(upcoming, None)
            if following is not None:
                pending.append((following[0], pool.submit(_load, following[1], sample_rate)))
            wav, error = future.result()
            yield position, wav, error


PARTS = ("codec", "semantic", "mulan", "melody", "contour")  # what a store holds per clip, one part per model
OPTIONAL_PARTS = ("melody", "contour")  # parts only some stores hold


@torch.inference_mode()
def tokenize_batch(models: TokenizerModels, wavs: np.ndarray, parts: Sequence[str] = PARTS) -> list[ClipResult]:
    """Tokens of ``[B, samples]`` equal-length audio at the models' rate: one call per model for the batch.

    Only the models named in ``parts`` run; the other fields of the results are left empty (``None``), to be
    filled from a store being reused (:func:`build_store`'s ``reuse``)."""
    rate, n = models.sample_rate, wavs.shape[0]
    codes = semantic = tokens = embedding = melody = contour = None
    if "codec" in parts:
        codes = models.codec.encode(wavs, sample_rate=rate, levels=models.codec.num_quantizers).cpu().numpy()
    if "semantic" in parts:
        semantic = models.semantic.tokenize(wavs, rate).cpu().numpy()
    if "mulan" in parts:
        mulan_embedding = models.mulan.embed_audio(wavs, rate)
        tokens = models.mulan.tokens(mulan_embedding).cpu().numpy()
        embedding = mulan_embedding.cpu().numpy()
    if "melody" in parts and models.melody is not None:
        melody = models.melody.tokens(torch.as_tensor(wavs), rate).cpu().numpy()
    if "contour" in parts and models.contour is not None:
        contour = models.contour(wavs, rate)

    def row(array: np.ndarray | None, i: int, dtype: Any) -> Any:
        return None if array is None else array[i].astype(dtype)

    return [ClipResult(row(codes, i, TOKEN_DTYPE), row(semantic, i, TOKEN_DTYPE), row(tokens, i, TOKEN_DTYPE),
                       row(embedding, i, np.float16), int(wavs.shape[1]), row(melody, i, TOKEN_DTYPE),
                       row(contour, i, TOKEN_DTYPE))
            for i in range(n)]


def _tokenize_group(models: TokenizerModels, wavs: list[np.ndarray], parts: Sequence[str] = PARTS
                    ) -> list[ClipResult | str]:
    """A batch, or each clip alone when the batch fails (so one bad clip costs only itself)."""
    try:
        return list(tokenize_batch(models, np.stack(wavs), parts))
    except Exception as exc:
        if len(wavs) == 1:
            return [_reason(exc)]
    out: list[ClipResult | str] = []
    for wav in wavs:
        try:
            out.extend(tokenize_batch(models, wav[None, :], parts))
        except Exception as exc:  # a clip the models cannot take is skipped and reported
            out.append(_reason(exc))
    return out


def default_batch(device: torch.device | str) -> int:
    """Clips per model call when none is asked for: 8 on a GPU, 1 on a CPU."""
    return DEFAULT_CPU_BATCH if torch.device(device).type == "cpu" else DEFAULT_BATCH


def tokenize_shard(models: TokenizerModels, clips: Sequence[PlannedClip], batch: int = DEFAULT_BATCH,
                   bar: Any = None, parts: Sequence[str] = PARTS) -> tuple[list[ClipResult | str], float]:
    """Per clip (in order): its tokens (of the models in ``parts``) or the reason it was skipped; and the
    seconds it took."""
    started = time.perf_counter()
    results: list[ClipResult | str | None] = [None] * len(clips)
    buckets: dict[int, list[tuple[int, np.ndarray]]] = {}

    def flush(length: int) -> None:
        group = buckets.pop(length)
        for (position, _), result in zip(group, _tokenize_group(models, [w for _, w in group], parts)):
            results[position] = result
        _advance(bar, len(group), results)

    for position, wav, error in _loaded(clips, models.sample_rate, ahead=2 * batch):
        if wav is None:
            results[position] = error or "unreadable"
            _advance(bar, 1, results)
            continue
        buckets.setdefault(wav.shape[0], []).append((position, wav))
        if len(buckets[wav.shape[0]]) >= batch:
            flush(wav.shape[0])
        elif sum(len(b) for b in buckets.values()) >= 4 * batch:  # many lengths: bound the audio held
            flush(max(buckets, key=lambda k: len(buckets[k])))
    for length in list(buckets):
        flush(length)
    return [r if r is not None else "not tokenized" for r in results], time.perf_counter() - started


def _advance(bar: Any, n: int, results: Sequence[Any]) -> None:
    if bar is not None:
        bar.update(n)
        skipped = sum(isinstance(r, str) for r in results)
        if skipped:
            bar.set_postfix(skipped=skipped, refresh=False)


def shard_arrays(clips: Sequence[PlannedClip], results: Sequence[ClipResult | str], info: StoreInfo
                 ) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
    """The ``.npz`` arrays of the clips that were tokenized, and ``{"id", "corpus", "reason"}`` of the others."""
    kept = [(c, r) for c, r in zip(clips, results) if isinstance(r, ClipResult)]
    skipped = [{"id": c.record.id, "corpus": c.corpus, "reason": r} for c, r in zip(clips, results)
               if isinstance(r, str)]
    code_lengths = [r.codes.shape[1] for _, r in kept]
    semantic_lengths = [r.semantic.shape[0] for _, r in kept]
    arrays = {
        "ids": string_array([c.record.id for c, _ in kept]),
        "splits": string_array([c.record.split for c, _ in kept]),
        "corpora": string_array([c.corpus for c, _ in kept]),
        "sources": string_array([c.record.source for c, _ in kept]),
        "captions": string_array([c.record.caption or "" for c, _ in kept]),
        "seconds": np.array([r.samples / info.sample_rate for _, r in kept], dtype=np.float64),
        "codes": (np.concatenate([r.codes for _, r in kept], axis=1) if kept
                  else np.zeros((info.levels, 0), dtype=TOKEN_DTYPE)),
        "code_offsets": np.concatenate([[0], np.cumsum(code_lengths, dtype=np.int64)]).astype(np.int64),
        "semantic": (np.concatenate([r.semantic for _, r in kept]) if kept else np.zeros(0, dtype=TOKEN_DTYPE)),
        "semantic_offsets": np.concatenate([[0], np.cumsum(semantic_lengths, dtype=np.int64)]).astype(np.int64),
        "mulan_tokens": (np.stack([r.mulan_tokens for _, r in kept]) if kept
                         else np.zeros((0, info.mulan_levels), dtype=TOKEN_DTYPE)),
        "mulan_embedding": (np.stack([r.mulan_embedding for _, r in kept]) if kept
                            else np.zeros((0, info.embed_dim), dtype=np.float16)),
        "store_key": np.array(info.key),
    }
    if info.melody:
        melody = [r.melody for _, r in kept]
        if any(m is None for m in melody):
            raise TokenizeError("the store takes melody tokens but a clip has none (tokenize with its melody model)")
        arrays["melody"] = (np.concatenate(melody) if kept  # type: ignore[arg-type]
                            else np.zeros((0, info.melody_levels), dtype=TOKEN_DTYPE))
        lengths = [m.shape[0] for m in melody]  # type: ignore[union-attr]
        arrays["melody_offsets"] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    if info.contour:
        contour = [r.contour for _, r in kept]
        if any(c is None for c in contour):
            raise TokenizeError("the store takes pitch contours but a clip has none (tokenize with --contour)")
        arrays["contour"] = (np.concatenate(contour) if kept  # type: ignore[arg-type]
                             else np.zeros(0, dtype=TOKEN_DTYPE))
        lengths = [c.shape[0] for c in contour]  # type: ignore[union-attr]
        arrays["contour_offsets"] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    return arrays, skipped


def _split_totals(clips: Sequence[PlannedClip], results: Sequence[ClipResult | str], rate: int
                  ) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for clip, result in zip(clips, results):
        if isinstance(result, ClipResult):
            entry = totals.setdefault(clip.record.split, {"clips": 0, "seconds": 0.0})
            entry["clips"] += 1
            entry["seconds"] = round(entry["seconds"] + result.samples / rate, 3)
    return totals


def shard_is_done(folder: Path, index: int, info: StoreInfo) -> bool:
    """True when shard ``index`` exists and is valid; a damaged one is removed (it will be made again)."""
    path = shard_path(folder, index)
    if not path.exists():
        return False
    try:
        read_shard(path, info, small_only=True)
    except TokenStoreError as exc:
        if "belongs to another token store" in str(exc):
            raise
        log.warning("%s; tokenizing it again", exc)
        path.unlink(missing_ok=True)
        return False
    return True


def _remove_stale_temporaries(folder: Path, index: int) -> None:
    """Temporary files a killed run of this shard left behind (only this shard's: other ranks write theirs)."""
    for stale in (folder / SHARDS_DIR).glob(f".{shard_path(folder, index).name}.*.tmp"):
        stale.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- reuse
@dataclass(frozen=True)
class Reuse:
    """A finished store of the same clip layout whose tokens of unchanged models are copied, not recomputed
    (a new MuLan, say, costs one MuLan pass over the audio instead of a full tokenize)."""

    folder: Path
    info: StoreInfo
    copied: tuple[str, ...]  # parts (of :data:`PARTS`) taken from the old store
    computed: tuple[str, ...]  # parts the models compute again


def _fingerprint(info: StoreInfo, part: str) -> str | None:
    entry = getattr(info, part) or {}
    return entry.get("fingerprint")


def plan_reuse(folder: str | os.PathLike[str], info: StoreInfo,
               also_matching: Mapping[str, str] | None = None) -> Reuse:
    """Which parts of the store ``folder`` a build of ``info`` can copy (same layout, same model fingerprint).

    ``also_matching`` maps a part to another fingerprint its tokens may be recorded under in the old store:
    the whole-model fingerprint that stores made before token fingerprints recorded for the codec and MuLan."""
    also = dict(also_matching or {})
    folder = Path(folder)
    try:
        old = read_info(folder)
    except TokenStoreError as exc:
        raise TokenizeError(f"--reuse {folder}: {exc}") from None
    if old.layout != info.layout or old.shard_size != info.shard_size:
        raise TokenizeError(f"--reuse {folder}: its clip layout differs ({old.num_clips} clips of {old.splits} in "
                            f"shards of {old.shard_size}; this run: {info.num_clips} clips of {info.splits} in "
                            f"shards of {info.shard_size}); reuse needs the same corpora, splits and --shard-size")
    wanted = [p for p in PARTS if p not in OPTIONAL_PARTS or getattr(info, p)]
    copied = tuple(p for p in wanted if _fingerprint(old, p) not in (None, "") and
                   _fingerprint(old, p) in (_fingerprint(info, p), also.get(p)))
    return Reuse(folder, old, copied, tuple(p for p in wanted if p not in copied))


def reused_results(arrays: dict[str, np.ndarray], info: StoreInfo) -> dict[str, ClipResult]:
    """Per clip id of a shard's arrays: its tokens as a :class:`ClipResult` (slices of the arrays, no copies)."""
    out: dict[str, ClipResult] = {}
    code_at, semantic_at = arrays["code_offsets"], arrays["semantic_offsets"]
    melody, melody_at = arrays.get("melody"), arrays.get("melody_offsets")
    contour, contour_at = arrays.get("contour"), arrays.get("contour_offsets")
    for i, clip_id in enumerate(arrays["ids"].tolist()):
        out[clip_id] = ClipResult(
            codes=arrays["codes"][:, code_at[i]:code_at[i + 1]],
            semantic=arrays["semantic"][semantic_at[i]:semantic_at[i + 1]],
            mulan_tokens=arrays["mulan_tokens"][i], mulan_embedding=arrays["mulan_embedding"][i],
            samples=int(round(float(arrays["seconds"][i]) * info.sample_rate)),
            melody=None if melody is None or melody_at is None else melody[melody_at[i]:melody_at[i + 1]],
            contour=None if contour is None or contour_at is None else contour[contour_at[i]:contour_at[i + 1]])
    return out


PART_FIELDS = {"codec": ("codes",), "semantic": ("semantic",), "mulan": ("mulan_tokens", "mulan_embedding"),
               "melody": ("melody",), "contour": ("contour",)}
"""The :class:`ClipResult` fields each part fills."""


def _merge(new: ClipResult, old: ClipResult, parts: Sequence[str]) -> ClipResult:
    """``new`` with the ``parts`` taken from ``old``."""
    return replace(new, **{name: getattr(old, name) for part in parts for name in PART_FIELDS[part]})


def tokenize_shard_reusing(models: TokenizerModels, clips: Sequence[PlannedClip], index: int, reuse: Reuse,
                           batch: int = DEFAULT_BATCH, bar: Any = None) -> tuple[list[ClipResult | str], float]:
    """Like :func:`tokenize_shard`, with the copied parts of shard ``index`` of the reused store; a clip that
    store skipped stays skipped (with its reason)."""
    from musiclm.tokenstore.store import shard_report

    started = time.perf_counter()
    path = shard_path(reuse.folder, index)
    if not path.exists():
        raise TokenizeError(f"--reuse {reuse.folder} lacks shard {index}; finish that store first "
                            f"(`musiclm tokenize info {reuse.folder}`)")
    old = reused_results(read_shard(path, reuse.info), reuse.info)
    old_report = shard_report(reuse.folder, index, reuse.info) or {}
    old_reasons = {s.get("id"): s.get("reason", "") for s in old_report.get("skipped", [])}
    kept = [c for c in clips if c.record.id in old]
    if reuse.computed:
        computed, _ = tokenize_shard(models, kept, batch, bar, reuse.computed)
    else:
        computed = [old[c.record.id] for c in kept]
        if bar is not None:
            bar.update(len(kept))
    by_id = dict(zip((c.record.id for c in kept), computed))
    results: list[ClipResult | str] = []
    for clip in clips:
        result = by_id.get(clip.record.id)
        if result is None:
            results.append(f"skipped in {reuse.folder}: {old_reasons.get(clip.record.id) or 'not tokenized'}")
            if bar is not None:
                bar.update(1)
        elif isinstance(result, str):
            results.append(result)
        else:
            results.append(_merge(result, old[clip.record.id], reuse.copied))
    return results, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------- the build
@dataclass
class BuildReport:
    """What one rank did."""

    out: str
    rank: int
    world_size: int
    shards_total: int
    shards_of_rank: int
    shards_already_done: int
    shards_written: int
    batch: int = DEFAULT_BATCH
    clips_tokenized: int = 0
    clips_skipped: int = 0
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    clips_per_second: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    reused_from: str | None = None
    parts_copied: list[str] = field(default_factory=list)
    parts_computed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_store(corpora: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], models: TokenizerModels,
                *, splits: str | Sequence[str] | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
                batch: int | None = None, rank: int | None = None, world_size: int | None = None,
                progress: bool = True, max_skip_fraction: float = DEFAULT_MAX_SKIP_FRACTION,
                reuse: str | os.PathLike[str] | None = None) -> BuildReport:
    """Tokenize this rank's shards of ``corpora`` into the store folder ``out`` (resuming a previous run).

    ``batch`` clips of equal length go through each model per call (default: :func:`default_batch` of the
    models' device). With ``reuse`` (a finished store of the same corpora, splits and shard size), the tokens
    of every model whose fingerprint is unchanged are copied from it and only the others are computed.
    Raises :class:`TokenizeError` when ``out`` holds tokens of other models or another layout, and when more
    than ``max_skip_fraction`` of a shard's clips fail.
    """
    batch = default_batch(models.codec.device) if batch is None else batch
    if batch < 1:
        raise TokenizeError(f"--batch must be >= 1, got {batch}")
    if not 0.0 <= max_skip_fraction <= 1.0:
        raise TokenizeError(f"max_skip_fraction must be within [0, 1], got {max_skip_fraction}")
    rank, world_size = resolve_rank(rank, world_size)
    plan = plan_clips(corpora, splits, shard_size)
    out = Path(out)
    wanted = store_info(plan, models)
    legacy = {"codec": models.codec.fingerprint(), "mulan": models.mulan.fingerprint()}
    reused = plan_reuse(reuse, wanted, legacy) if reuse is not None else None
    if reused is not None and Path(reused.folder).resolve() == out.resolve():
        raise TokenizeError("--reuse must name another store than --out")
    info = prepare_store(out, wanted)
    mine = list(range(rank, plan.num_shards, world_size))
    done = [i for i in mine if shard_is_done(out, i, info)]
    todo = [i for i in mine if i not in set(done)]
    report = BuildReport(out=str(out), rank=rank, world_size=world_size, shards_total=plan.num_shards,
                         shards_of_rank=len(mine), shards_already_done=len(done), shards_written=0, batch=batch)
    log.info("rank %d/%d: %d of %d shards to tokenize (%d already done) into %s", rank, world_size, len(todo),
             len(mine), len(done), out)
    if reused is not None:
        log.info("copying %s from %s; computing %s", ", ".join(reused.copied) or "nothing", reused.folder,
                 ", ".join(reused.computed) or "nothing")
        report.reused_from = str(reused.folder)
        report.parts_copied, report.parts_computed = list(reused.copied), list(reused.computed)
    bar = clip_bar(sum(len(plan.shard(i)) for i in mine), sum(len(plan.shard(i)) for i in done), progress,
                   desc="tokenize")
    started = time.perf_counter()
    try:
        for index in todo:
            clips = plan.shard(index)
            _remove_stale_temporaries(out, index)
            if reused is None:
                results, elapsed = tokenize_shard(models, clips, batch, bar)
            else:
                results, elapsed = tokenize_shard_reusing(models, clips, index, reused, batch, bar)
            arrays, skipped = shard_arrays(clips, results, info)
            for entry in skipped:
                log.warning("skipped clip %s (%s): %s", entry["id"], entry["corpus"], entry["reason"])
            if clips and len(skipped) > max_skip_fraction * len(clips):
                first = "; ".join(f"{s['id']}: {s['reason']}" for s in skipped[:3])
                raise TokenizeError(f"shard {index}: {len(skipped)} of {len(clips)} clips failed (more than "
                                    f"{max_skip_fraction:.0%}), which points at a broken corpus or model rather "
                                    f"than bad clips; first: {first}")
            kept = len(clips) - len(skipped)
            seconds = float(arrays["seconds"].sum())
            write_shard(out, index, arrays, {
                "shard": index, "store_key": info.key, "clips": len(clips), "tokenized": kept,
                "skipped": skipped, "splits": _split_totals(clips, results, info.sample_rate),
                "audio_seconds": round(seconds, 3), "elapsed_seconds": round(elapsed, 3), "rank": rank,
                "world_size": world_size, "device": str(models.codec.device), "threads": torch.get_num_threads(),
                "batch": batch,
                **({"reused_from": str(reused.folder), "parts_copied": list(reused.copied)} if reused else {}),
            }, fields=info.array_fields)
            report.shards_written += 1
            report.clips_tokenized += kept
            report.clips_skipped += len(skipped)
            report.audio_seconds = round(report.audio_seconds + seconds, 3)
            report.skipped.extend(skipped)
    finally:
        if bar is not None:
            bar.close()
    report.elapsed_seconds = round(time.perf_counter() - started, 3)
    done_clips = report.clips_tokenized + report.clips_skipped
    report.clips_per_second = round(done_clips / report.elapsed_seconds, 3) if report.elapsed_seconds else 0.0
    return report




# ------------------------------------------------------------------------------------------------- status
def store_status(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Shards done and missing, clips and hours per split, skipped clips and the models of a store folder."""
    from musiclm.tokenstore.store import index_ranges, shard_report

    folder = Path(folder)
    info = read_info(folder)
    per_split: dict[str, dict[str, float]] = {}
    done, missing, skipped = [], [], []
    elapsed = 0.0
    for index in range(info.num_shards):
        report = shard_report(folder, index, info)
        if report is None:
            missing.append(index)
            continue
        done.append(index)
        skipped.extend(report.get("skipped", []))
        elapsed += float(report.get("elapsed_seconds", 0.0))
        for split, totals in report.get("splits", {}).items():
            entry = per_split.setdefault(split, {"clips": 0, "hours": 0.0})
            entry["clips"] += int(totals["clips"])
            entry["hours"] += float(totals["seconds"]) / 3600.0
    splits = {s: {"clips": v["clips"], "hours": round(v["hours"], 3)} for s, v in sorted(per_split.items())}
    tokenized = sum(v["clips"] for v in splits.values())

    def model(entry: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
        return {k: entry.get(k) for k in ("fingerprint", *keys, "source")}

    return {
        "store": str(folder), "complete": not missing, "shards": info.num_shards, "shards_done": len(done),
        "shards_missing": len(missing), "missing": index_ranges(missing), "shard_size": info.shard_size,
        "clips_planned": info.num_clips, "clips_tokenized": tokenized, "clips_skipped": len(skipped),
        "hours": round(sum(v["hours"] for v in splits.values()), 3), "splits": splits,
        "corpora": info.corpora, "split_filter": info.splits,
        "tokenize_seconds": round(elapsed, 1),
        "codec": model(info.codec, ("frame_rate", "levels", "coarse_levels", "codebook_size")),
        "semantic": model(info.semantic, ("token_rate", "num_clusters", "layer")),
        "mulan": model(info.mulan, ("embed_dim", "num_quantizers", "codebook_size")),
        "melody": model(info.melody, ("num_quantizers", "codebook_size", "hop_seconds")) if info.melody else None,
        "contour": model(info.contour, ("frame_rate", "values")) if info.contour else None,
        "skipped": skipped,
    }
