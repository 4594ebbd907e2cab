"""KL divergence between a classifier's label distributions for reference and generated audio (the paper's KLD).

For each caption, the classifier scores the reference clip (``p_ref``) and the generated clip (``p_gen``); the
metric is ``KL(p_ref || p_gen)`` averaged over captions. Lower is better.

Two kinds of output are supported:

- ``"multilabel"``: independent sigmoid probabilities per label (AudioSet tagging, the tagger's instrument
  head). Each label is a Bernoulli variable; the divergence of a pair is the mean over labels of
  ``p log(p/q) + (1-p) log((1-p)/(1-q))``.
- ``"multiclass"``: one softmax distribution per clip (the tagger's genre, mood, tempo and mode heads);
  the divergence is ``sum_k p_k log(p_k / q_k)``.

Probabilities are clipped to ``[eps, 1 - eps]`` (softmax rows are renormalised after clipping) so that a zero
in ``p_gen`` where ``p_ref`` has mass gives a large but finite value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from musiclm.eval import EvalError

Kind = Literal["multilabel", "multiclass"]
KINDS = ("multilabel", "multiclass")


def _check(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] == 0:
        raise EvalError(f"{name} must be [N, labels] probabilities, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise EvalError(f"{name} contains NaN or infinite values")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise EvalError(f"{name} must hold probabilities within [0, 1] (got {p.min():.3g} .. {p.max():.3g})")
    return p


def kl_divergence(p_ref: np.ndarray, p_gen: np.ndarray, eps: float = 1e-6,
                  kind: Kind = "multilabel") -> np.ndarray:
    """``KL(p_ref || p_gen)`` per pair: ``[N]`` from two ``[N, labels]`` arrays (a single row may be 1-D)."""
    if kind not in KINDS:
        raise EvalError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0.0 < eps < 0.5:
        raise EvalError(f"eps must be within (0, 0.5), got {eps}")
    p, q = _check(p_ref, "p_ref"), _check(p_gen, "p_gen")
    if p.shape != q.shape:
        raise EvalError(f"p_ref {p.shape} and p_gen {q.shape} differ in shape")
    p, q = np.clip(p, eps, 1.0 - eps), np.clip(q, eps, 1.0 - eps)
    if kind == "multilabel":
        kl = p * np.log(p / q) + (1.0 - p) * np.log((1.0 - p) / (1.0 - q))
        return kl.mean(axis=1)
    for name, rows in (("p_ref", p), ("p_gen", q)):
        sums = rows.sum(axis=1)
        if np.abs(sums - 1.0).max() > 1e-3 + eps * rows.shape[1]:
            raise EvalError(f"{name}: multiclass rows must sum to 1 (found sums {sums.min():.4g} .. {sums.max():.4g})")
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    return np.maximum((p * np.log(p / q)).sum(axis=1), 0.0)


def mean_kld(p_ref: np.ndarray, p_gen: np.ndarray, eps: float = 1e-6, kind: Kind = "multilabel") -> float:
    """Mean of :func:`kl_divergence` over pairs."""
    return float(kl_divergence(p_ref, p_gen, eps, kind).mean())


def kld_per_head(ref: Mapping[str, np.ndarray], gen: Mapping[str, np.ndarray], kinds: Mapping[str, Kind],
                 eps: float = 1e-6) -> dict[str, float]:
    """Mean KLD per classifier head (e.g. :meth:`musiclm.eval.tagger.Tagger.predict` outputs), plus ``"mean"``
    over heads. ``kinds`` names each head's kind (``Tagger.head_kinds``)."""
    missing = [h for h in kinds if h not in ref or h not in gen]
    if missing:
        raise EvalError(f"heads {missing} are missing from the reference or generated predictions")
    out = {head: mean_kld(ref[head], gen[head], eps, kind) for head, kind in kinds.items()}
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out
