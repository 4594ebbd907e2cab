"""The MuLan embedding quantiser: residual k-means over MuLan AUDIO embeddings -> 12 conditioning tokens.

MusicLM conditions its generators on RVQ tokens of the MuLan embedding: the audio embedding of each training
clip while training, the text embedding of the prompt at inference. The same codebooks must serve both, so
they are fit once, after the towers are trained, on audio embeddings of the training corpus, and saved with
the model (the public re-implementation never trained nor saved this quantiser).

The fit is greedy residual k-means (k-means++ seeding, Lloyd iterations, in torch on CPU or GPU): level 1
clusters the embeddings, level ``l`` clusters what levels ``1..l-1`` left over. Codewords are rounded to fp16
as they are fit, so the exported (fp16) quantiser gives exactly the tokens of the fitted one. A codebook is
never larger than ``points / min_points_per_code`` (rounded down to a power of two): k-means with more
centroids than points leaves codes that no training clip uses, which the generators would then never see as
conditioning.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from musiclm import __version__
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path


class QuantizerError(MusicLMError):
    """The quantiser is not fitted, or cannot be fitted on the data given."""


class EmbeddingQuantizer(nn.Module):
    """Greedy residual quantisation of ``[B, D]`` embeddings with codebooks ``[levels, codes, D]``."""

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.register_buffer("codebooks", torch.zeros(num_quantizers, codebook_size, dim))

    @property
    def num_quantizers(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def fitted(self) -> bool:
        return bool(self.codebooks.abs().sum() > 0)

    @torch.no_grad()
    def encode(self, embeddings: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """``[B, D]`` -> tokens ``[B, levels]`` (int64 in ``[0, codebook_size)``)."""
        if not self.fitted:
            raise QuantizerError("the MuLan quantiser is not fitted (run `musiclm mulan fit-quantizer RUN`)")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.codebooks.shape[2]:
            raise QuantizerError(f"expected embeddings [B, {self.codebooks.shape[2]}], got {tuple(embeddings.shape)}")
        levels = self.num_quantizers if levels is None else levels
        residual = embeddings.to(self.codebooks.device, torch.float32)
        tokens = []
        for level in range(levels):
            book = self.codebooks[level]
            distances = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.t()
                         + book.pow(2).sum(1)[None, :])
            index = distances.argmin(1)
            tokens.append(index)
            residual = residual - book[index]
        return torch.stack(tokens, dim=1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, levels]`` -> the quantised embeddings ``[B, D]`` (sum of the chosen codewords)."""
        tokens = tokens.to(self.codebooks.device).long()
        if tokens.dim() != 2 or tokens.shape[1] > self.num_quantizers:
            raise QuantizerError(f"expected tokens [B, <= {self.num_quantizers}], got {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise QuantizerError(f"tokens must be within [0, {self.codebook_size})")
        out = torch.zeros(tokens.shape[0], self.codebooks.shape[2], device=self.codebooks.device)
        for level in range(tokens.shape[1]):
            out = out + self.codebooks[level][tokens[:, level]]
        return out

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.encode(embeddings)


def effective_codebook_size(points: int, requested: int, min_points_per_code: int) -> int:
    """The codebook size used for ``points`` embeddings: ``requested``, or the largest power of two with at
    least ``min_points_per_code`` points per code (at least 2)."""
    if points < 2:
        raise QuantizerError(f"need at least 2 embeddings to fit the quantiser, got {points}")
    allowed = points // max(1, min_points_per_code)
    if allowed >= requested:
        return requested
    return max(2, 2 ** int(math.floor(math.log2(max(allowed, 2)))))


@dataclass
class LevelStats:
    level: int
    codes_used: int  # distinct codes of this level used by the fit data
    perplexity: float  # exp(entropy) of this level's code distribution
    cosine: float  # mean cosine between the embeddings and their quantisation with levels 1..level
    relative_error: float  # mean |x - q| / |x| with levels 1..level


@dataclass
class FitReport:
    points: int
    dim: int
    num_quantizers: int
    requested_codebook_size: int
    codebook_size: int
    levels: list[LevelStats]

    def to_dict(self) -> dict:
        return asdict(self)


def _sq_distances(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ centers.t() + centers.pow(2).sum(1)[None, :]).clamp_min(0)


def _assign(x: torch.Tensor, centers: torch.Tensor, chunk: int = 65_536) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest center and squared distance of every row, in chunks (bounded memory)."""
    index, dist = [], []
    for start in range(0, len(x), chunk):
        d = _sq_distances(x[start : start + chunk], centers)
        best = d.min(1)
        index.append(best.indices)
        dist.append(best.values)
    return torch.cat(index), torch.cat(dist)


def kmeans(data: torch.Tensor, k: int, iters: int = 100, seed: int = 0, init_sample: int = 50_000) -> torch.Tensor:
    """Centers ``[k, D]`` of ``data [N, D]``: k-means++ seeding (on a sample) then Lloyd iterations.

    Deterministic for a seed; runs on ``data``'s device. A cluster left empty is re-seeded with the point
    farthest from its center.
    """
    generator = torch.Generator().manual_seed(seed)
    x = data.float()
    n = len(x)
    sample = x[torch.randperm(n, generator=generator)[: min(n, init_sample)].to(x.device)]
    first = int(torch.randint(len(sample), (1,), generator=generator))
    centers = [sample[first]]
    closest = _sq_distances(sample, sample[first : first + 1])[:, 0]
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: duplicate a random one
            pick = int(torch.randint(len(sample), (1,), generator=generator))
        else:
            pick = int(torch.multinomial((closest / total).cpu(), 1, generator=generator))
        centers.append(sample[pick])
        closest = torch.minimum(closest, _sq_distances(sample, sample[pick : pick + 1])[:, 0])
    centers_t = torch.stack(centers)
    previous = None
    for _ in range(iters):
        index, dist = _assign(x, centers_t)
        counts = torch.bincount(index, minlength=k).float()
        sums = torch.zeros_like(centers_t).index_add_(0, index, x)
        updated = sums / counts.clamp_min(1)[:, None]
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = dist.argsort(descending=True)[: len(empty)]
            updated[empty] = x[far]
        centers_t = torch.where((counts > 0)[:, None], updated, centers_t)
        if len(empty):
            centers_t[empty] = x[far]
        if previous is not None and torch.equal(index, previous):
            break
        previous = index
    return centers_t


def level_stats(embeddings: torch.Tensor, quantizer: EmbeddingQuantizer) -> list[LevelStats]:
    """Usage and reconstruction of ``embeddings`` per level (cumulative reconstruction)."""
    tokens = quantizer.encode(embeddings)
    x = embeddings.float().to(quantizer.codebooks.device)
    stats = []
    for level in range(quantizer.num_quantizers):
        counts = torch.bincount(tokens[:, level], minlength=quantizer.codebook_size).float()
        p = counts[counts > 0] / counts.sum()
        q = quantizer.decode(tokens[:, : level + 1])
        cos = torch.nn.functional.cosine_similarity(x, q, dim=1).mean()
        rel = ((x - q).norm(dim=1) / x.norm(dim=1).clamp_min(1e-8)).mean()
        stats.append(LevelStats(level + 1, int((counts > 0).sum()), float(torch.exp(-(p * p.log()).sum())),
                                round(float(cos), 6), round(float(rel), 6)))
    return stats


def fit_quantizer(
    embeddings: torch.Tensor | np.ndarray,
    num_quantizers: int = 12,
    codebook_size: int = 1024,
    *,
    min_points_per_code: int = 4,
    iters: int = 100,
    seed: int = 0,
) -> tuple[EmbeddingQuantizer, FitReport]:
    """Fit residual k-means codebooks on ``[N, D]`` audio embeddings; returns the quantiser and a report."""
    data = embeddings.detach().float() if isinstance(embeddings, torch.Tensor) else torch.as_tensor(
        np.asarray(embeddings, dtype=np.float32))
    if data.dim() != 2 or not torch.isfinite(data).all():
        raise QuantizerError(f"expected finite embeddings [N, D], got shape {tuple(data.shape)}")
    size = effective_codebook_size(len(data), codebook_size, min_points_per_code)
    quantizer = EmbeddingQuantizer(num_quantizers, size, data.shape[1]).to(data.device)
    residual = data.clone()
    for level in range(num_quantizers):
        centers = kmeans(residual, size, iters, seed + level)
        quantizer.codebooks[level] = centers.half().float()  # exactly what an fp16 export stores
        index = quantizer.encode(data, levels=level + 1)[:, level]  # the greedy path so far
        residual = residual - quantizer.codebooks[level][index]
    report = FitReport(len(data), data.shape[1], num_quantizers, codebook_size, size, level_stats(data, quantizer))
    return quantizer.cpu(), report


def save_quantizer(quantizer: EmbeddingQuantizer, path: str | os.PathLike[str], kind: str = "") -> Path:
    """Write a fitted quantiser's codebooks (fp16-exact) as safetensors, atomically; ``kind`` names its
    embedding space in the metadata (e.g. ``"melody"``)."""
    if not quantizer.fitted:
        raise QuantizerError("refusing to save an unfitted quantiser")
    metadata = {"musiclm_version": __version__}
    if kind:
        metadata["format"] = f"musiclm-{kind}-quantizer"
    with atomic_path(path) as tmp:
        save_file({"codebooks": quantizer.codebooks.detach().cpu().half().contiguous()}, str(tmp), metadata=metadata)
    return Path(path)


def load_quantizer(path: str | os.PathLike[str]) -> EmbeddingQuantizer:
    """A quantiser written by :func:`save_quantizer`."""
    from musiclm.train.checkpoint import CheckpointError

    try:
        books = load_file(str(path))["codebooks"].float()
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable quantiser file ({exc})") from exc
    quantizer = EmbeddingQuantizer(books.shape[0], books.shape[1], books.shape[2])
    quantizer.codebooks.copy_(books)
    return quantizer
