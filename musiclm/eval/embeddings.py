"""Audio embedders for FAD: one protocol and three adapters (VGGish, MuLan, the tagger).

An :class:`AudioEmbedder` turns a list of mono signals into the rows a Gaussian is fit to. What a row is follows
each embedding's convention in the literature:

- **VGGish** (FAD_VGG, Kilgour et al. 2019; the MusicLM and MusicGen tables): one row per 0.96 s example, and the
  examples of every clip of the set are pooled into one Gaussian. ``pooling="mean"`` instead gives one row per
  clip (the mean of its examples) for users who want clip-level statistics.
- **MuLan**: one row per clip, the paper's clip embedding (mean over 10 s windows with a 1 s stride).
- **Tagger**: one row per clip, its penultimate layer (mean over 10 s windows).

So ``embed`` returns ``[N, D]`` where N is the number of clips, except for VGGish with ``pooling="frames"``
where N is the total number of 0.96 s examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from musiclm.eval import EvalError
from musiclm.eval.frechet import fad

if TYPE_CHECKING:
    from musiclm.eval.tagger import Tagger
    from musiclm.eval.vggish import VGGish
    from musiclm.mulan.api import MuLan


@runtime_checkable
class AudioEmbedder(Protocol):
    """Embeds audio for FAD: ``embed(wavs, sr) -> [N, D]`` rows (see the module docstring for what a row is)."""

    name: str
    sample_rate: int  # the rate the model works at; inputs at other rates are resampled

    def embed(self, wavs: Sequence[np.ndarray], sr: int) -> np.ndarray: ...


def _check_wavs(wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
        raise EvalError("embed takes a list of signals, got a single 1-D array; wrap it in a list")
    signals = [np.asarray(w, dtype=np.float32) for w in wavs]
    for i, s in enumerate(signals):
        if s.ndim != 1 or s.size == 0:
            raise EvalError(f"signal {i}: expected non-empty mono audio [samples], got shape {s.shape}")
        if not np.isfinite(s).all():
            raise EvalError(f"signal {i}: audio contains NaN or infinite samples")
    if not signals:
        raise EvalError("no audio to embed")
    return signals


class VGGishEmbedder:
    """VGGish embeddings; ``pooling="frames"`` (default, the FAD convention) keeps every 0.96 s example."""

    def __init__(self, model: VGGish, pooling: Literal["frames", "mean"] = "frames", batch: int = 64):
        from musiclm.eval.vggish import SAMPLE_RATE

        if pooling not in ("frames", "mean"):
            raise EvalError(f"pooling must be 'frames' or 'mean', got {pooling!r}")
        self.model = model.eval()
        self.pooling = pooling
        self.batch = batch
        self.name = "vggish" if pooling == "frames" else "vggish-mean"
        self.sample_rate = SAMPLE_RATE

    def embed(self, wavs: Sequence[np.ndarray], sr: int) -> np.ndarray:
        rows = [self.model.embed(s, sr, self.batch).numpy() for s in _check_wavs(wavs)]
        if self.pooling == "mean":
            return np.stack([r.mean(axis=0) for r in rows])
        return np.concatenate(rows)


class MuLanEmbedder:
    """MuLan audio embeddings (unit vectors, 128-d): one per clip."""

    def __init__(self, mulan: MuLan):
        self.mulan = mulan
        self.name = "mulan"
        self.sample_rate = mulan.sample_rate

    def embed(self, wavs: Sequence[np.ndarray], sr: int) -> np.ndarray:
        return self.mulan.embed_audio(_check_wavs(wavs), sample_rate=sr).numpy()


class TaggerEmbedder:
    """The tagger's penultimate-layer embedding: one per clip."""

    def __init__(self, tagger: Tagger):
        self.tagger = tagger
        self.name = "tagger"
        self.sample_rate = tagger.sample_rate

    def embed(self, wavs: Sequence[np.ndarray], sr: int) -> np.ndarray:
        return self.tagger.embed(_check_wavs(wavs), sr)


def audio_fad(embedder: AudioEmbedder, generated: Sequence[np.ndarray], reference: Sequence[np.ndarray],
              sr: int, reference_sr: int | None = None) -> float:
    """FAD between two sets of audio under one embedder (``reference_sr`` defaults to ``sr``)."""
    emb_gen = embedder.embed(generated, sr)
    emb_ref = embedder.embed(reference, reference_sr if reference_sr is not None else sr)
    return fad(emb_gen, emb_ref)
