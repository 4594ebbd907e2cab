"""The evaluation suite: render every system's clip for every prompt, measure them, write the report.

Layout of an evaluation folder ``OUT``::

    OUT/prompts.json                   the prompts evaluated (ids, captions, references, labels)
    OUT/audio/<system>/<id>.flac       every clip, 24 kHz (the FLAC is the completion mark: a re-run reuses it)
    OUT/audio/<system>/<id>.json       what was recorded while rendering it (seconds taken, retrieved clip, ...)
    OUT/features/<name>.npz            measured features per system, keyed by the clips and the measuring models
    OUT/cache/                         the retrieval library's MuLan embeddings
    OUT/report.json, OUT/report.md, OUT/plots/*.png

Metrics per system (see :mod:`musiclm.eval` for each one's definition):

- **FAD** against the reference set with the tagger's embedding, MuLan's audio embedding and (given weights)
  VGGish. The reference set is the prompts' own reference clips, or for text-only prompts a pool of corpus test
  clips.
- **KLD** (the paper's protocol): ``KL(p_ref || p_gen)`` of the tagger's label distributions, per head, each
  generated clip against its own prompt's reference clip; only with per-prompt references.
- **MCC**: cosine between the MuLan text embedding of the prompt and the MuLan audio embedding of the clip.
- **Adherence** to the prompt's labels: tempo (beat tracking; within ±8 %, with half/double-tempo octave errors
  counted separately), mode (chroma key templates), genre and instrument families (the tagger).
- **Melody** (chroma cosine) where a prompt carries a melody (no prompt source sets one yet: the hook is here).
- **Memorisation** of the semantic stage (greedy continuation of training token sequences; a model-level
  study, not per system).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musiclm import SAMPLE_RATE, __version__
from musiclm.audio import save_audio
from musiclm.errors import AudioError
from musiclm.eval import EvalError
from musiclm.eval.prompts import Prompt, PromptSet
from musiclm.eval.systems import Clip, System, load_clip_audio
from musiclm.fileio import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from musiclm.eval.tagger import Tagger
    from musiclm.eval.vggish import VGGish
    from musiclm.mulan.api import MuLan
    from musiclm.pipeline import MusicLM

log = logging.getLogger("musiclm.eval")

AUDIO_DIR = "audio"
FEATURES_DIR = "features"
CACHE_DIR = "cache"
REFERENCE_SET = "reference-set"
SILENCE_PEAK = 1e-5


# ------------------------------------------------------------------------------------------ evaluators
def _module_hash(module: Any) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Evaluators:
    """The models that measure clips: MuLan (MCC, FAD_MuLan), the tagger (FAD_tagger, KLD, genre and
    instruments) and VGGish (FAD_VGG), the last two optional."""

    mulan: MuLan
    tagger: Tagger | None = None
    vggish: VGGish | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts = [self.mulan.fingerprint(), _module_hash(self.tagger.model) if self.tagger else "-",
                     _module_hash(self.vggish) if self.vggish is not None else "-"]
            self._fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        return self._fingerprint

    def fad_embeddings(self) -> list[str]:
        return [name for name, present in (("tagger", self.tagger is not None), ("mulan", True),
                                           ("vggish", self.vggish is not None)) if present]


# -------------------------------------------------------------------------------------------- features
@dataclass
class ClipFeatures:
    """What the metrics need from a set of clips, row i describing clip ``ids[i]``."""

    ids: list[str]
    peak: np.ndarray  # [N] absolute peak (silent clips are noted)
    mulan: np.ndarray  # [N, D] unit MuLan audio embeddings (zeros for silent clips)
    tempo: np.ndarray  # [N] measured BPM (0 for no onsets)
    key_tonic: np.ndarray  # [N] pitch class, -1 when unknown (silence)
    key_mode: np.ndarray  # [N] "major" / "minor" / ""
    tagger_embedding: np.ndarray | None = None  # [N, E]
    tagger_probs: dict[str, np.ndarray] = field(default_factory=dict)  # head -> [N, classes]
    vggish: np.ndarray | None = None  # [sum of examples, 128] (every 0.96 s example of every clip)
    vggish_offsets: np.ndarray | None = None  # [N + 1]

    @property
    def silent(self) -> np.ndarray:
        return self.peak <= SILENCE_PEAK

    def embedding(self, name: str) -> np.ndarray | None:
        return {"tagger": self.tagger_embedding, "mulan": self.mulan, "vggish": self.vggish}[name]

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"ids": np.array(self.ids, dtype=str), "peak": self.peak,
                                         "mulan": self.mulan, "tempo": self.tempo, "key_tonic": self.key_tonic,
                                         "key_mode": np.asarray(self.key_mode, dtype=str)}
        if self.tagger_embedding is not None:
            arrays["tagger_embedding"] = self.tagger_embedding
        arrays.update({f"tagger_probs.{h}": p for h, p in self.tagger_probs.items()})
        if self.vggish is not None:
            arrays["vggish"] = self.vggish
            arrays["vggish_offsets"] = np.asarray(self.vggish_offsets)
        return arrays

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ClipFeatures:
        probs = {k.split(".", 1)[1]: a[k] for k in a if k.startswith("tagger_probs.")}
        return cls(ids=a["ids"].tolist(), peak=a["peak"], mulan=a["mulan"], tempo=a["tempo"],
                   key_tonic=a["key_tonic"], key_mode=a["key_mode"], tagger_embedding=a.get("tagger_embedding"),
                   tagger_probs=probs, vggish=a.get("vggish"), vggish_offsets=a.get("vggish_offsets"))

    @classmethod
    def concatenate(cls, parts: Sequence[ClipFeatures]) -> ClipFeatures:
        if not parts:
            raise EvalError("no clips to measure")
        first = parts[0]
        vggish = offsets = None
        if first.vggish is not None:
            vggish = np.concatenate([p.vggish for p in parts])
            counts = np.concatenate([np.diff(p.vggish_offsets) for p in parts])
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(ids=[i for p in parts for i in p.ids], peak=np.concatenate([p.peak for p in parts]),
                   mulan=np.concatenate([p.mulan for p in parts]), tempo=np.concatenate([p.tempo for p in parts]),
                   key_tonic=np.concatenate([p.key_tonic for p in parts]),
                   key_mode=np.concatenate([p.key_mode for p in parts]),
                   tagger_embedding=np.concatenate([p.tagger_embedding for p in parts])
                   if first.tagger_embedding is not None else None,
                   tagger_probs={h: np.concatenate([p.tagger_probs[h] for p in parts]) for h in first.tagger_probs},
                   vggish=vggish, vggish_offsets=offsets)


def _mulan_rows(mulan: MuLan, wavs: list[np.ndarray], silent: np.ndarray) -> np.ndarray:
    out = np.zeros((len(wavs), mulan.embed_dim), dtype=np.float32)
    loud = [i for i in range(len(wavs)) if not silent[i]]
    if not loud:
        return out
    try:
        out[loud] = mulan.embed_audio([wavs[i] for i in loud], SAMPLE_RATE).numpy()
    except AudioError:
        for i in loud:  # a clip MuLan cannot embed (e.g. all its windows silent) keeps a zero row
            with contextlib.suppress(AudioError):
                out[i] = mulan.embed_audio(wavs[i], SAMPLE_RATE).numpy()[0]
    return out


def measure_clips(ids: Sequence[str], wavs: Sequence[np.ndarray], evaluators: Evaluators) -> ClipFeatures:
    """Features of clips at 24 kHz: MuLan embedding, tempo, key, tagger outputs and VGGish examples."""
    from musiclm.analysis import estimate_key
    from musiclm.eval.adherence import measure_tempo

    wavs = [np.ascontiguousarray(w, dtype=np.float32) for w in wavs]
    peak = np.array([float(np.abs(w).max()) if w.size else 0.0 for w in wavs])
    silent = peak <= SILENCE_PEAK
    tempo = np.array([measure_tempo(w, SAMPLE_RATE) if not s else 0.0 for w, s in zip(wavs, silent)])
    tonic, mode = [], []
    for w, s in zip(wavs, silent):
        if s:
            tonic.append(-1)
            mode.append("")
            continue
        estimate = estimate_key(w, SAMPLE_RATE)
        ok = np.isfinite(estimate.score)
        tonic.append(estimate.tonic if ok else -1)
        mode.append(estimate.mode if ok else "")
    features = ClipFeatures(ids=list(ids), peak=peak, mulan=_mulan_rows(evaluators.mulan, wavs, silent),
                            tempo=tempo, key_tonic=np.array(tonic, dtype=np.int64), key_mode=np.array(mode, dtype=str))
    if evaluators.tagger is not None:
        features.tagger_probs = {h: p.astype(np.float32) for h, p in
                                 evaluators.tagger.predict(wavs, SAMPLE_RATE).items()}
        features.tagger_embedding = evaluators.tagger.embed(wavs, SAMPLE_RATE).astype(np.float32)
    if evaluators.vggish is not None:
        rows = [evaluators.vggish.embed(w, SAMPLE_RATE).numpy().astype(np.float32) for w in wavs]
        features.vggish = np.concatenate(rows)
        features.vggish_offsets = np.concatenate([[0], np.cumsum([r.shape[0] for r in rows])]).astype(np.int64)
    return features


def _features_key(paths: Sequence[Path], evaluators: Evaluators, duration: float) -> str:
    digest = hashlib.sha256(f"{evaluators.fingerprint()}|{duration}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def features_of_files(name: str, ids: Sequence[str], paths: Sequence[Path], evaluators: Evaluators, out: Path,
                      duration: float, batch: int = 16, progress: bool = False) -> ClipFeatures:
    """Measure audio files (cut to ``duration``), cached in ``out/features/<name>.npz`` under a key of the files'
    sizes and times, the measuring models and the duration."""
    from tqdm import tqdm

    paths = [Path(p) for p in paths]
    key = _features_key(paths, evaluators, duration)
    cache = out / FEATURES_DIR / f"{name}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as saved:
                if str(saved["key"]) == key:
                    return ClipFeatures.from_arrays({k: saved[k] for k in saved.files if k != "key"})
        except (OSError, ValueError, KeyError):
            log.warning("%s: unreadable feature cache, measuring again", cache)
    parts = []
    with tqdm(total=len(paths), desc=f"measuring {name}", unit="clip", disable=not progress, leave=False,
              dynamic_ncols=True, mininterval=1.0) as bar:
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            wavs = [load_clip_audio(p, duration) for p in chunk]
            parts.append(measure_clips(ids[start : start + batch], wavs, evaluators))
            bar.update(len(chunk))
    features = ClipFeatures.concatenate(parts)
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, key=np.array(key), **features.to_arrays())
    return features


# ---------------------------------------------------------------------------------------------- render
def clip_path(out: Path, system: str, prompt_id: str) -> Path:
    return out / AUDIO_DIR / system / f"{prompt_id}.flac"


def render_system(system: System, prompts: Sequence[Prompt], out: Path, duration: float, seed: int,
                  progress: bool = True) -> dict[str, Any]:
    """Render the clips of ``system`` that are not cached yet; returns counts and timings."""
    from tqdm import tqdm

    missing = [p for p in prompts if not clip_path(out, system.name, p.id).exists()]
    started = time.perf_counter()
    with tqdm(total=len(prompts), initial=len(prompts) - len(missing), desc=f"rendering {system.name}",
              unit="clip", disable=not progress, dynamic_ncols=True, mininterval=1.0) as bar:
        for start in range(0, len(missing), system.batch_size):
            batch = missing[start : start + system.batch_size]
            began = time.perf_counter()
            clips = system.render(batch, duration, seed)
            if len(clips) != len(batch):
                raise EvalError(f"system {system.name} returned {len(clips)} clips for {len(batch)} prompts")
            per_clip = (time.perf_counter() - began) / len(batch)
            for prompt, clip in zip(batch, clips):
                _store_clip(out, system.name, prompt.id, clip, per_clip)
            bar.update(len(batch))
    return {"rendered": len(missing), "cached": len(prompts) - len(missing),
            "wall_seconds_this_run": time.perf_counter() - started}


def _store_clip(out: Path, system: str, prompt_id: str, clip: Clip, seconds: float) -> None:
    audio = np.asarray(clip.audio, dtype=np.float32).reshape(-1)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise EvalError(f"system {system} made empty or non-finite audio for prompt {prompt_id}")
    path = clip_path(out, system, prompt_id)
    meta = {"render_seconds": seconds, "peak": float(np.abs(audio).max()),
            "clipped": bool(np.abs(audio).max() > 1.0), **clip.info}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
    save_audio(path, audio, SAMPLE_RATE)  # written last: the completion mark


def clip_info(out: Path, system: str, prompt_id: str) -> dict[str, Any]:
    side = clip_path(out, system, prompt_id).with_suffix(".json")
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


# --------------------------------------------------------------------------------------------- metrics
def _cosines(text: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Row-wise cosine; 0 where an audio embedding is all zeros (a silent clip)."""
    norms = np.linalg.norm(text, axis=1) * np.linalg.norm(audio, axis=1)
    dots = (np.asarray(text, dtype=np.float64) * np.asarray(audio, dtype=np.float64)).sum(axis=1)
    return np.where(norms > 0, dots / np.maximum(norms, 1e-12), 0.0)


def fad_scores(gen: ClipFeatures, ref: ClipFeatures | None, names: Sequence[str]) -> dict[str, Any]:
    """FAD per embedding name (None, with the reason under ``errors``, where it cannot be computed)."""
    from musiclm.eval.frechet import fad

    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        if ref is None:
            out[name] = None
            errors[name] = "no reference set"
            continue
        a, b = gen.embedding(name), ref.embedding(name)
        if a is None or b is None:
            out[name] = None
            errors[name] = "embedding not measured"
            continue
        try:
            out[name] = fad(a, b)
        except EvalError as exc:
            out[name] = None
            errors[name] = str(exc)
    if errors:
        out["errors"] = errors
    return out


def tempo_metrics(prompts: Sequence[Prompt], measured: np.ndarray) -> tuple[dict[str, Any] | None, list[dict]]:
    """Tempo adherence over the prompts whose labels give a BPM (None when none does)."""
    from musiclm.eval.adherence import tempo_adherence, tempo_adherence_summary

    rows: list[dict[str, Any]] = []
    for prompt, bpm in zip(prompts, measured):
        requested = _float(prompt.labels.get("bpm"))
        rows.append(tempo_adherence(requested, float(bpm)) if requested and requested > 0 else {})
    usable = [r for r in rows if r]
    if not usable:
        return None, rows
    summary = tempo_adherence_summary(usable)
    summary.update(half=sum(r["category"] == "half" for r in usable),
                   double=sum(r["category"] == "double" for r in usable),
                   no_tempo=sum(r["measured_bpm"] <= 0 for r in usable))
    return summary, rows


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def mode_metrics(prompts: Sequence[Prompt], features: ClipFeatures) -> tuple[dict[str, Any] | None, list[dict]]:
    """Mode (major/minor family) and key agreement over the prompts whose labels give a mode."""
    from musiclm.analysis import KeyEstimate, key_agreement, mode_family

    rows: list[dict[str, Any]] = []
    for prompt, tonic, mode in zip(prompts, features.key_tonic, features.key_mode):
        requested = prompt.labels.get("mode")
        family = mode_family(str(requested)) if requested else None
        if family is None:
            rows.append({})
            continue
        row: dict[str, Any] = {"requested_mode": family, "estimated_mode": str(mode) or None,
                               "match": bool(mode) and str(mode) == family}
        key = prompt.labels.get("key")
        if key and int(tonic) >= 0:
            with contextlib.suppress(ValueError):  # a key label that is no note name
                row["key_agreement"] = key_agreement(KeyEstimate(int(tonic), str(mode), 0.0), str(key),
                                                     str(requested))
        rows.append(row)
    usable = [r for r in rows if r]
    if not usable:
        return None, rows
    summary: dict[str, Any] = {"count": len(usable), "accuracy": float(np.mean([r["match"] for r in usable]))}
    keyed = [r["key_agreement"] for r in usable if "key_agreement" in r]
    if keyed:
        summary["key"] = {k: keyed.count(k) / len(keyed) for k in ("exact", "relative", "fifth", "wrong")}
    return summary, rows


def tagger_adherence(prompts: Sequence[Prompt], features: ClipFeatures, tagger: Tagger) -> tuple[
        dict[str, Any], list[dict]]:
    """Genre (top-1 of the tagger among the labelled genre) and instrument families (tagger >= 0.5 against the
    families of the prompt's parts: micro precision, recall and F1)."""
    from musiclm.eval.tagger import clip_tags

    vocab = tagger.vocab
    rows: list[dict[str, Any]] = [{} for _ in prompts]
    out: dict[str, Any] = {}
    genre_probs = features.tagger_probs.get("genre")
    if genre_probs is not None:
        hits = []
        for i, prompt in enumerate(prompts):
            wanted = clip_tags(prompt.labels)["genre"]
            if wanted and wanted[0] in vocab.genre:
                predicted = vocab.genre[int(genre_probs[i].argmax())]
                rows[i].update(genre=wanted[0], predicted_genre=predicted)
                hits.append(predicted == wanted[0])
        if hits:
            out["genre"] = {"count": len(hits), "accuracy": float(np.mean(hits)), "chance": 1.0 / len(vocab.genre)}
    inst_probs = features.tagger_probs.get("instruments")
    if inst_probs is not None:
        tp = fp = fn = 0
        counted = 0
        for i, prompt in enumerate(prompts):
            wanted = {f for f in clip_tags(prompt.labels)["instruments"] if f in vocab.instruments}
            if not wanted:
                continue
            predicted = {vocab.instruments[k] for k in np.flatnonzero(inst_probs[i] >= 0.5)}
            tp, fp, fn = tp + len(wanted & predicted), fp + len(predicted - wanted), fn + len(wanted - predicted)
            counted += 1
            rows[i].update(instruments=sorted(wanted), predicted_instruments=sorted(predicted))
        if counted:
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out["instruments"] = {"count": counted, "precision": precision, "recall": recall, "f1": f1}
    return out, rows


def melody_metrics(prompts: Sequence[Prompt], out: Path, system: str, duration: float) -> dict[str, Any] | None:
    """Chroma similarity to the prompt's melody, for prompts that carry one (None when none does)."""
    from musiclm.eval.adherence import chroma_similarity

    values = []
    for prompt in prompts:
        if not prompt.melody:
            continue
        melody = load_clip_audio(prompt.melody, duration)
        generated = load_clip_audio(clip_path(out, system, prompt.id), duration)
        try:
            values.append(chroma_similarity(melody, generated, SAMPLE_RATE))
        except EvalError as exc:
            log.warning("melody of %s: %s", prompt.id, exc)
    if not values:
        return None
    return {"count": len(values), "chroma_cosine": float(np.mean(values))}


def system_metrics(prompts: Sequence[Prompt], features: ClipFeatures, reference: ClipFeatures | None,
                   text_embeddings: np.ndarray, evaluators: Evaluators, paired: bool) -> tuple[dict[str, Any],
                                                                                             list[dict]]:
    """Every per-system metric and the per-clip rows behind them."""
    from musiclm.eval.divergence import kl_divergence, kld_per_head

    metrics: dict[str, Any] = {"fad": fad_scores(features, reference, evaluators.fad_embeddings())}
    rows: list[dict[str, Any]] = [{"id": p.id, "silent": bool(s)} for p, s in zip(prompts, features.silent)]
    cosines = _cosines(text_embeddings, features.mulan)
    metrics["mcc"] = float(cosines.mean())
    for row, value in zip(rows, cosines):
        row["mcc"] = float(value)
    metrics["kld"] = None
    tagger = evaluators.tagger
    if paired and tagger is not None and reference is not None and features.tagger_probs:
        kinds = {h: k for h, k in tagger.head_kinds.items() if h in features.tagger_probs}
        metrics["kld"] = kld_per_head(reference.tagger_probs, features.tagger_probs, kinds)
        per_clip = np.mean([kl_divergence(reference.tagger_probs[h], features.tagger_probs[h], kind=k)
                            for h, k in kinds.items()], axis=0)
        for row, value in zip(rows, per_clip):
            row["kld"] = float(value)
    adherence: dict[str, Any] = {}
    tempo, tempo_rows = tempo_metrics(prompts, features.tempo)
    if tempo is not None:
        adherence["tempo"] = tempo
    mode, mode_rows = mode_metrics(prompts, features)
    if mode is not None:
        adherence["mode"] = mode
    tag_rows: list[dict[str, Any]] = [{} for _ in prompts]
    if tagger is not None and features.tagger_probs:
        tag_summary, tag_rows = tagger_adherence(prompts, features, tagger)
        adherence.update(tag_summary)
    for row, bpm, t, m, g in zip(rows, features.tempo, tempo_rows, mode_rows, tag_rows):
        row["measured_bpm"] = float(bpm)
        if t:
            row.update(requested_bpm=t["requested_bpm"], tempo=t["category"])
        if m:
            row.update(mode=m["requested_mode"], estimated_mode=m["estimated_mode"], mode_match=m["match"])
            if "key_agreement" in m:
                row["key"] = m["key_agreement"]
        row.update(g)
    metrics["adherence"] = adherence
    metrics["silent_clips"] = int(features.silent.sum())
    return metrics, rows


# ------------------------------------------------------------------------------------------ memorisation
def semantic_memorization(model: MusicLM, tokens: str | Path, sequences: int = 200, prompt_seconds: float = 5.0,
                          continuation_seconds: float = 5.0, seed: int = 0, batch_size: int = 16,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The paper's memorisation study of the semantic stage on the training split of a token store.

    ``sequences`` training clips long enough for the prompt and the continuation are drawn with ``seed``; the
    stage is prompted with the clip's first ``prompt_seconds`` of semantic tokens (and the clip's own MuLan
    tokens, the condition it was trained with) and continued greedily for ``continuation_seconds``.
    """
    import torch

    from musiclm.eval.memorization import memorization_study
    from musiclm.eval.prompts import subsample
    from musiclm.lm.sampling import SamplingParams
    from musiclm.tokenstore import TokenStore

    stage = model.stages["semantic"]
    spaces = stage.config.tokens
    if model.semantic_tokenizer is None:
        raise EvalError("the memorisation study needs the semantic tokenizer's centroids; the model lacks it")
    store = TokenStore.open(tokens, allow_incomplete=True)
    train = store.select("train")
    if store.info.semantic_clusters != spaces.semantic_clusters or store.info.mulan_levels != spaces.mulan_levels:
        raise EvalError(f"{tokens}: its token spaces ({store.info.semantic_clusters} semantic clusters, "
                        f"{store.info.mulan_levels} MuLan levels) do not match the model's semantic stage")
    rate = spaces.semantic_rate
    prompt_tokens = int(round(prompt_seconds * rate))
    continuation = int(round(continuation_seconds * rate))
    lengths = train.semantic_lengths()
    eligible = [i for i in range(len(train)) if lengths[i] >= prompt_tokens + continuation]
    if not eligible:
        raise EvalError(f"{tokens}: no training clip has {prompt_tokens + continuation} semantic tokens")
    chosen = subsample(eligible, sequences, seed)
    seqs = [np.asarray(train.semantic(i), dtype=np.int64) for i in chosen]
    conditions = torch.from_numpy(np.stack([train.mulan_tokens(i) for i in chosen]).astype(np.int64))
    params = SamplingParams(temperature=0.0, cfg_scale=1.0)
    cursor = {"at": 0}

    def continue_fn(prompts: np.ndarray, steps: int) -> np.ndarray:
        start = cursor["at"]
        rows = prompts.shape[0]
        condition = stage.layout.condition(conditions[start : start + rows])
        out = stage.generate(prompts.shape[1] + steps, lambda *_: (condition, None), rows,
                             prompt=torch.from_numpy(prompts), params=params,
                             generator=torch.Generator().manual_seed(0))
        cursor["at"] = start + rows
        if progress is not None:
            progress(cursor["at"], len(seqs))
        return out[:, prompts.shape[1]:, 0].numpy()

    centroids = model.semantic_tokenizer.centroids.numpy()
    report = memorization_study(seqs, continue_fn, centroids, prompt_tokens, continuation, batch_size=batch_size,
                                rng=np.random.default_rng(seed))
    mulan_match = model.mulan.matches_fingerprint(store.info.mulan.get("fingerprint", ""))
    return {**report.to_dict(), "tokens": str(tokens), "prompt_seconds": prompt_seconds,
            "continuation_seconds": continuation_seconds, "store_mulan_matches_model": mulan_match,
            "training_clips": len(train)}


# ------------------------------------------------------------------------------------------------ suite
@dataclass
class SuiteResult:
    report: dict[str, Any]
    paths: dict[str, str]


def run_suite(prompts: PromptSet, systems: Sequence[System], evaluators: Evaluators, out: str | Path, *,
              duration: float = 10.0, seed: int = 0, progress: bool = True, feature_batch: int = 16,
              memorization: Callable[[], dict[str, Any]] | None = None, notes: Sequence[str] = (),
              settings: dict[str, Any] | None = None, spectrograms: int = 3) -> SuiteResult:
    """Render (resuming), measure, score and report. Returns the report and the files written."""
    from musiclm.eval.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    notes = list(notes)
    atomic_write_text(out / "prompts.json", json.dumps([p.to_dict() for p in prompts.prompts], indent=1))
    usable = []
    for system in systems:
        if system.needs_reference and not prompts.paired:
            notes.append(f"{system.name}: skipped (the prompts have no reference audio)")
            continue
        usable.append(system)
    rendering = {s.name: render_system(s, prompts.prompts, out, duration, seed, progress) for s in usable}
    render_done = time.perf_counter()

    ids = [p.id for p in prompts.prompts]
    reference: ClipFeatures | None = None
    ref_clips = prompts.reference_clips()
    if ref_clips:
        if prompts.paired and any(s.name == "reference" for s in usable):
            reference = features_of_files("reference", ids, [clip_path(out, "reference", i) for i in ids],
                                          evaluators, out, duration, feature_batch, progress)
        else:
            reference = features_of_files(REFERENCE_SET, [c.id for c in ref_clips],
                                          [Path(str(c.reference)) for c in ref_clips], evaluators, out, duration,
                                          feature_batch, progress)
    else:
        notes.append("FAD: no reference set (text-only prompts need --reference-corpus for the reference pool)")
    if not prompts.paired:
        notes.append("KLD and attribute adherence: not measured (text-only prompts have no per-prompt reference "
                     "clip or labels)")
    text_embeddings = evaluators.mulan.embed_text([p.text for p in prompts.prompts]).numpy()

    results: dict[str, Any] = {}
    for system in usable:
        if system.name == "reference" and reference is not None and prompts.paired:
            features = reference
        else:
            features = features_of_files(system.name, ids, [clip_path(out, system.name, i) for i in ids],
                                         evaluators, out, duration, feature_batch, progress)
        metrics, rows = system_metrics(prompts.prompts, features, reference, text_embeddings, evaluators,
                                       prompts.paired)
        melody = melody_metrics(prompts.prompts, out, system.name, duration)
        metrics["melody"] = melody
        infos = [clip_info(out, system.name, i) for i in ids]
        for row, info in zip(rows, infos):
            row.update({k: v for k, v in info.items() if k in ("retrieved", "text_audio_cosine", "clipped")})
        render_seconds = [float(info.get("render_seconds", 0.0)) for info in infos]
        results[system.name] = {**system.describe(), "clips": len(ids), **rendering[system.name],
                                "render_seconds_per_clip": float(np.mean(render_seconds)),
                                "render_rtf": float(np.mean(render_seconds)) / duration,
                                "metrics": metrics, "per_clip": rows}
    if "reference" in results and prompts.paired:
        notes.append("reference: FAD and KLD are 0 by construction (the reference set is the reference clips); "
                     "the codec row is the meaningful ceiling")
    if not any(p.melody for p in prompts.prompts):
        notes.append("melody (chroma cosine): not measured, no prompt carries a melody")
    if evaluators.tagger is None:
        notes.append("tagger metrics (FAD_tagger, KLD, genre and instrument adherence): skipped, no tagger given")
    if evaluators.vggish is None:
        notes.append("FAD_VGGish: skipped (give --vggish WEIGHTS)")
    measure_done = time.perf_counter()

    memo: dict[str, Any] | None = None
    if memorization is not None:
        try:
            memo = memorization()
        except EvalError as exc:
            memo = {"skipped": str(exc)}
            notes.append(f"memorisation: skipped ({exc})")
    report = {
        "musiclm_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {"duration": duration, "seed": seed, **(settings or {})},
        "prompts": prompts.describe(),
        "evaluators": {"mulan": evaluators.mulan.source or "in-memory model",
                       "tagger": (evaluators.tagger.source or "in-memory model") if evaluators.tagger else None,
                       "vggish": bool(evaluators.vggish is not None),
                       "fad_embeddings": evaluators.fad_embeddings()},
        "systems": results,
        "memorization": memo,
        "notes": notes,
        "timings": {"render_seconds": render_done - started, "measure_seconds": measure_done - render_done,
                    "memorization_seconds": time.perf_counter() - measure_done,
                    "total_seconds": time.perf_counter() - started},
    }
    paths = write_report(report, out, prompts.prompts, spectrograms=spectrograms)
    return SuiteResult(report, paths)
