"""What ``musiclm eval`` evaluates: the model, and the floors and ceilings every metric is read against.

=================  ==========================================================================================
system             what it renders for a prompt
=================  ==========================================================================================
``model``          the text-to-music model (:meth:`MusicLM.generate`)
``reference``      the prompt's own reference clip (the ceiling of adherence; FAD and KLD are 0 by construction
                   when the references are the per-prompt clips)
``codec``          the reference passed through the codec at all its levels: the best any token model can do
                   (the codec ceiling)
``retrieval``      the training clip whose MuLan audio embedding is closest to the prompt's MuLan text
                   embedding: real music, chosen by the conditioning model alone (a strong baseline for MCC)
``unconditional``  :meth:`MusicLM.generate_unconditional`: the model with the prompt taken away (the floor of
                   every adherence metric)
=================  ==========================================================================================

Every system returns mono float32 audio at the project rate (24 kHz), cut to the requested duration.
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from musiclm import SAMPLE_RATE
from musiclm.audio import load_audio, resample
from musiclm.errors import AudioError
from musiclm.eval import EvalError
from musiclm.eval.prompts import Prompt, corpus_prompts, subsample
from musiclm.fileio import atomic_path

if TYPE_CHECKING:
    from musiclm.codec.api import Codec
    from musiclm.mulan.api import MuLan
    from musiclm.pipeline import MusicLM

log = logging.getLogger("musiclm.eval")

SYSTEM_NAMES = ("model", "reference", "codec", "retrieval", "unconditional")
"""Every system ``musiclm eval`` knows, in report order."""
MODEL_SYSTEMS = frozenset({"model", "unconditional"})
REFERENCE_SYSTEMS = frozenset({"reference", "codec"})


@dataclass
class Clip:
    """One rendered clip and what the system wants to record about it (e.g. which clip was retrieved)."""

    audio: np.ndarray  # float32 [samples] at SAMPLE_RATE
    info: dict[str, Any] = field(default_factory=dict)


def batch_seed(seed: int, ids: Sequence[str]) -> int:
    """The sampling seed of a batch: a pure function of the run's seed and the batch's first prompt id."""
    digest = hashlib.sha256(f"{int(seed)}:{ids[0] if ids else ''}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def load_clip_audio(path: str | os.PathLike[str], duration: float | None = None) -> np.ndarray:
    """A clip at 24 kHz mono, cut to ``duration`` seconds when longer (silence is allowed)."""
    wav, _ = load_audio(path, SAMPLE_RATE, allow_silent=True)
    if duration is not None:
        wav = wav[: int(round(duration * SAMPLE_RATE))]
    return np.ascontiguousarray(wav, dtype=np.float32)


def _at_project_rate(audio: np.ndarray, rate: int, samples: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if rate != SAMPLE_RATE:
        audio = resample(audio, rate, SAMPLE_RATE)
    return np.ascontiguousarray(audio[..., :samples], dtype=np.float32)


class System(ABC):
    """Renders one clip per prompt. ``batch_size`` prompts are passed to :meth:`render` at a time."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    batch_size: int = 1

    @abstractmethod
    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        """One :class:`Clip` per prompt, in order."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}


class ModelSystem(System):
    """The text-to-music model, ``batch_size`` prompts per call (the default sampling of each stage)."""

    name = "model"
    description = "the model: MuLan text tokens -> semantic -> coarse -> fine -> codec decoder"

    def __init__(self, model: MusicLM, batch_size: int = 4, sampling: dict[str, Any] | None = None):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.sampling = dict(sampling or {})

    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        ids = [p.id for p in prompts]
        audio, rate = self.model.generate([p.text for p in prompts], duration, seed=batch_seed(seed, ids),
                                          **self.sampling)
        samples = int(round(duration * SAMPLE_RATE))
        return [Clip(_at_project_rate(row, rate, samples)) for row in audio.numpy()]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": getattr(self.model, "source", None), "sampling": self.sampling,
                "batch_size": self.batch_size}


class UnconditionalSystem(System):
    """The model with no prompt (the null MuLan tokens at every stage)."""

    name = "unconditional"
    description = "the model without the prompt (null MuLan tokens): the floor of every adherence metric"

    def __init__(self, model: MusicLM, batch_size: int = 4):
        self.model = model
        self.batch_size = max(1, int(batch_size))

    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        seed_value = batch_seed(seed + 1, [p.id for p in prompts])
        audio, rate = self.model.generate_unconditional(len(prompts), duration, seed=seed_value)
        samples = int(round(duration * SAMPLE_RATE))
        return [Clip(_at_project_rate(row, rate, samples)) for row in audio.numpy()]


def _reference_of(prompt: Prompt) -> str:
    if not prompt.reference:
        raise EvalError(f"prompt {prompt.id} has no reference audio")
    return prompt.reference


class ReferenceSystem(System):
    """The prompt's own reference clip."""

    name = "reference"
    description = "the prompt's reference clip (real audio)"
    needs_reference = True

    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        return [Clip(load_clip_audio(_reference_of(p), duration)) for p in prompts]


class CodecSystem(System):
    """The reference clip encoded and decoded by the codec at all of its RVQ levels."""

    name = "codec"
    description = "the reference through the codec (all RVQ levels): the codec ceiling"
    needs_reference = True

    def __init__(self, codec: Codec, levels: int | None = None):
        self.codec = codec
        self.levels = levels if levels is not None else codec.num_quantizers

    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        out = []
        for prompt in prompts:
            wav = load_clip_audio(_reference_of(prompt), duration)
            decoded = self.codec.roundtrip(wav, SAMPLE_RATE, bitrate=None, levels=self.levels)
            out.append(Clip(np.ascontiguousarray(decoded, dtype=np.float32)))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": getattr(self.codec, "source", None), "levels": self.levels,
                "kbps": self.codec.bitrate_kbps(self.levels)}


# --------------------------------------------------------------------------------------------- retrieval
class RetrievalLibrary:
    """MuLan audio embeddings of a corpus split: the clips the retrieval baseline chooses from."""

    def __init__(self, ids: Sequence[str], paths: Sequence[str], embeddings: np.ndarray, valid: np.ndarray,
                 source: str = ""):
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ids) or len(paths) != len(ids):
            raise EvalError("library ids, paths and embeddings differ in length")
        self.ids, self.paths = list(ids), list(paths)
        self.embeddings, self.valid = embeddings, np.asarray(valid, dtype=bool)
        self.source = source
        if not self.valid.any():
            raise EvalError(f"the retrieval library {source} has no usable clip")

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, text_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index ``[N]`` and cosine ``[N]`` of the library clip closest to each text embedding ``[N, D]``."""
        text = np.asarray(text_embeddings, dtype=np.float64)
        text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        audio = self.embeddings.astype(np.float64)
        audio = audio / np.maximum(np.linalg.norm(audio, axis=1, keepdims=True), 1e-12)
        scores = text @ audio.T
        scores[:, ~self.valid] = -np.inf
        best = scores.argmax(axis=1)
        return best, scores[np.arange(len(best)), best]

    @classmethod
    def build(cls, corpus: str | os.PathLike[str], mulan: MuLan, cache_dir: str | os.PathLike[str],
              split: str = "train", limit: int | None = None, seed: int = 0, batch: int = 16,
              save_every: int = 512, progress: Callable[[int, int], None] | None = None) -> RetrievalLibrary:
        """Embed the clips of ``split`` (a ``limit``-clip subset drawn with ``seed`` when given), resuming from
        and saving to ``cache_dir/retrieval-<key>.npz``; the key covers the clips and MuLan's weights."""
        clips = corpus_prompts(corpus, split)
        if not clips:
            raise EvalError(f"{corpus}: no captioned {split} clips for the retrieval library")
        clips = subsample(clips, limit, seed)
        ids, paths = [c.id for c in clips], [str(c.reference) for c in clips]
        key = hashlib.sha256("|".join([str(Path(corpus).resolve()), split, mulan.fingerprint(), *ids]).encode())
        cache = Path(cache_dir) / f"retrieval-{key.hexdigest()[:16]}.npz"
        embeddings = np.zeros((len(ids), mulan.embed_dim), dtype=np.float32)
        valid = np.zeros(len(ids), dtype=bool)
        done = 0
        if cache.exists():
            with np.load(cache, allow_pickle=False) as saved:
                if saved["ids"].tolist() == ids:
                    done = int(saved["done"])
                    embeddings[:done], valid[:done] = saved["embeddings"][:done], saved["valid"][:done]
        last_saved = done
        for start in range(done, len(ids), batch):
            stop = min(start + batch, len(ids))
            embeddings[start:stop], valid[start:stop] = _embed_clips(mulan, paths[start:stop])
            done = stop
            if done - last_saved >= save_every or done == len(ids):
                _save_library(cache, ids, embeddings, valid, done)
                last_saved = done
            if progress is not None:
                progress(done, len(ids))
        return cls(ids, paths, embeddings, valid, source=f"{corpus} ({split}, {len(ids)} clips)")


def _embed_clips(mulan: MuLan, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """MuLan audio embeddings of files; a clip that cannot be embedded (e.g. silent) is marked invalid."""
    wavs, ok = [], []
    for path in paths:
        try:
            wavs.append(load_audio(path, mulan.sample_rate)[0])
            ok.append(True)
        except AudioError as exc:
            log.warning("retrieval library: skipping %s (%s)", path, exc)
            wavs.append(None)
            ok.append(False)
    out = np.zeros((len(paths), mulan.embed_dim), dtype=np.float32)
    present = [i for i, w in enumerate(wavs) if w is not None]
    if present:
        try:
            out[present] = mulan.embed_audio([wavs[i] for i in present]).numpy()
        except AudioError:
            for i in present:  # find the culprit clip by clip
                try:
                    out[i] = mulan.embed_audio(wavs[i]).numpy()[0]
                except AudioError as exc:
                    log.warning("retrieval library: skipping %s (%s)", paths[i], exc)
                    ok[i] = False
    return out, np.asarray(ok, dtype=bool)


def _save_library(path: Path, ids: list[str], embeddings: np.ndarray, valid: np.ndarray, done: int) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, ids=np.array(ids, dtype=str), embeddings=embeddings, valid=valid, done=np.array(done))


class RetrievalSystem(System):
    """The library clip nearest to the prompt's MuLan text embedding."""

    name = "retrieval"
    description = "the training clip whose MuLan audio embedding is closest to the prompt's MuLan text embedding"
    batch_size = 16

    def __init__(self, mulan: MuLan, library: RetrievalLibrary):
        self.mulan = mulan
        self.library = library

    def render(self, prompts: Sequence[Prompt], duration: float, seed: int) -> list[Clip]:
        text = self.mulan.embed_text([p.text for p in prompts]).numpy()
        best, cosine = self.library.nearest(text)
        return [Clip(load_clip_audio(self.library.paths[i], duration),
                     {"retrieved": self.library.ids[i], "text_audio_cosine": float(c)})
                for i, c in zip(best.tolist(), cosine.tolist())]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "library": self.library.source}
