"""Memorisation of training data by the semantic stage, following the MusicLM paper's protocol.

For each training sequence of semantic tokens, the model is prompted with its first ``prompt_tokens`` tokens and
greedily continues it for ``continuation_tokens`` tokens (the paper: 5 s = 125 tokens at 25 Hz). A continuation
is an *exact* match when it equals the training continuation token for token, and an *approximate* match when
the optimal-transport cost between the two token histograms is below a threshold.

The approximate-match cost
--------------------------
The ground cost between two token ids is the Euclidean distance between their k-means centroids, divided by
the mean distance between two distinct centroids: one unit is "the typical distance between two different
tokens". The cost of a pair of histograms is the *debiased Sinkhorn divergence* (POT's ``ot.sinkhorn2`` with
entropic regularisation ``reg`` in those units; the two self terms by a symmetric Sinkhorn iteration that gives
the same value much faster)::

    S(a, b) = OT(a, b) - (OT(a, a) + OT(b, b)) / 2

which is exactly 0 for identical histograms (the plain regularised cost is not). So a cost of 0.85 means that,
after the best matching of token mass, the tokens of the generated continuation sit on average 0.85 typical
token distances away from those of the training continuation. The paper's threshold is 0.85 on its own
(unpublished) scale; because the scales differ, every report also carries a *chance* level: the same cost
between each generated continuation and the true continuation of another, unrelated training sequence, and a
*calibrated* threshold: the ``chance_quantile`` (1 %) quantile of those chance costs, with the number of
continuations below it. For 125 uniformly random tokens over 1024 random 64-d centroids the chance cost is about
0.86 (0.78 at the lowest of 20 draws), so the paper's 0.85 sits inside the chance distribution on this scale; the
calibrated count ("closer to its training continuation than 99 % of unrelated pairs are") is the one to compare
across models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from musiclm.eval import EvalError

DEFAULT_THRESHOLD = 0.85
DEFAULT_REG = 0.1
CHANCE_QUANTILE = 0.01

ContinueFn = Callable[[np.ndarray, int], np.ndarray]
"""``continue_fn(prompts [B, prompt_tokens], steps) -> [B, steps]`` greedy continuations (int tokens)."""


def ground_cost(centroids: np.ndarray) -> np.ndarray:
    """Token-to-token cost ``[V, V]``: centroid distances divided by their mean over distinct pairs."""
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 2:
        raise EvalError(f"centroids must be [V >= 2, D], got shape {c.shape}")
    if not np.isfinite(c).all():
        raise EvalError("centroids contain NaN or infinite values")
    sq = (c * c).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * c @ c.T, 0.0))
    np.fill_diagonal(dist, 0.0)
    v = c.shape[0]
    mean = dist.sum() / (v * (v - 1))
    if mean <= 0:
        raise EvalError("all centroids coincide: no ground cost between tokens")
    return dist / mean


def token_histogram(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Normalised histogram ``[vocab_size]`` of a token sequence."""
    tokens = np.asarray(tokens).reshape(-1)
    if tokens.size == 0:
        raise EvalError("empty token sequence")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise EvalError(f"tokens must be integers, got {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise EvalError(f"tokens must lie in [0, {vocab_size}); found {tokens.min()} .. {tokens.max()}")
    return np.bincount(tokens, minlength=vocab_size).astype(np.float64) / tokens.size


def _ot(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float) -> float:
    """Transport cost ``<P, cost>`` of the entropic plan between ``a`` and ``b`` (POT's Sinkhorn)."""
    import ot

    return float(ot.sinkhorn2(a, b, cost, reg, numItermax=10_000, stopThr=1e-6))


def _ot_self(a: np.ndarray, cost: np.ndarray, reg: float, iters: int = 1000, tol: float = 1e-10) -> float:
    """The same quantity as :func:`_ot` for ``b = a``, by the symmetric Sinkhorn iteration (log domain).

    The plan is ``a_i a_j exp((f_i + f_j - C_ij) / reg)`` with the potential ``f`` the fixed point of
    ``f_i = -reg log sum_j a_j exp((f_j - C_ij) / reg)``; averaging each update with the previous potential
    converges in tens of iterations where the alternating iteration needs thousands.
    """
    from scipy.special import logsumexp

    log_a = np.log(a)
    f = np.zeros_like(a)
    for _ in range(iters):
        update = -reg * logsumexp(log_a[None, :] + (f[None, :] - cost) / reg, axis=1)
        new = 0.5 * (f + update)
        if np.abs(new - f).max() < tol:
            f = new
            break
        f = new
    plan = np.exp(log_a[:, None] + log_a[None, :] + (f[:, None] + f[None, :] - cost) / reg)
    return float((plan * cost).sum())


def sinkhorn_cost(generated: np.ndarray, reference: np.ndarray, cost: np.ndarray, reg: float = DEFAULT_REG) -> float:
    """Debiased Sinkhorn divergence between the token histograms of two sequences (0 when identical).

    ``cost`` is a ``[V, V]`` ground cost, e.g. :func:`ground_cost` of the k-means centroids.
    """
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise EvalError(f"cost must be a square [V, V] matrix, got shape {cost.shape}")
    if reg <= 0:
        raise EvalError(f"reg must be positive, got {reg}")
    vocab = cost.shape[0]
    a, b = token_histogram(generated, vocab), token_histogram(reference, vocab)
    if np.array_equal(a, b):
        return 0.0
    sa, sb = np.flatnonzero(a), np.flatnonzero(b)  # only tokens that carry mass take part
    a, b = a[sa], b[sb]
    value = _ot(a, b, cost[np.ix_(sa, sb)], reg) - 0.5 * (
        _ot_self(a, cost[np.ix_(sa, sa)], reg) + _ot_self(b, cost[np.ix_(sb, sb)], reg))
    return max(value, 0.0)


@dataclass
class MemorizationReport:
    """Counts and rates of a memorisation study (see the module docstring for the cost's scale)."""

    prompt_tokens: int
    continuation_tokens: int
    threshold: float
    sequences: int  # sequences tested
    skipped: int  # sequences shorter than prompt_tokens + continuation_tokens
    exact_matches: int
    approximate_matches: int  # cost < threshold, exact matches included
    chance_matches: int  # baseline pairs (unrelated continuations) with cost < threshold
    calibrated_threshold: float | None = None  # chance_quantile quantile of the chance costs
    calibrated_matches: int = 0  # continuations with cost < calibrated_threshold
    costs: list[float] = field(default_factory=list, repr=False)
    chance_costs: list[float] = field(default_factory=list, repr=False)

    @property
    def exact_rate(self) -> float:
        return self.exact_matches / self.sequences if self.sequences else 0.0

    @property
    def approximate_rate(self) -> float:
        return self.approximate_matches / self.sequences if self.sequences else 0.0

    @property
    def chance_rate(self) -> float:
        return self.chance_matches / len(self.chance_costs) if self.chance_costs else 0.0

    @property
    def calibrated_rate(self) -> float:
        return self.calibrated_matches / self.sequences if self.sequences else 0.0

    def to_dict(self, with_costs: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_costs:
            out.pop("costs")
            out.pop("chance_costs")
        out.update(exact_rate=self.exact_rate, approximate_rate=self.approximate_rate, chance_rate=self.chance_rate,
                   calibrated_rate=self.calibrated_rate,
                   median_cost=float(np.median(self.costs)) if self.costs else None,
                   median_chance_cost=float(np.median(self.chance_costs)) if self.chance_costs else None)
        return out


def _as_sequences(sequences: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 2:
            raise EvalError(f"a token array must be [N, T], got shape {sequences.shape}")
        return list(sequences)
    return [np.asarray(s).reshape(-1) for s in sequences]


def memorization_study(sequences: Sequence[np.ndarray] | np.ndarray, continue_fn: ContinueFn, centroids: np.ndarray,
                       prompt_tokens: int, continuation_tokens: int = 125, threshold: float = DEFAULT_THRESHOLD,
                       reg: float = DEFAULT_REG, batch_size: int = 16, chance_quantile: float = CHANCE_QUANTILE,
                       rng: np.random.Generator | None = None) -> MemorizationReport:
    """Prompt with the start of each training sequence, continue greedily, count exact and approximate matches.

    ``sequences``: training token sequences (``[N, T]`` or a list of 1-D arrays of any lengths; those shorter
    than ``prompt_tokens + continuation_tokens`` are skipped). ``continue_fn(prompts, steps)`` returns the
    model's greedy continuations ``[B, steps]`` for a batch of prompts ``[B, prompt_tokens]``; ``prompt_tokens``
    may be 0 (unconditional continuation, called with a ``[B, 0]`` array). ``centroids``: the k-means centroids
    ``[V, D]`` of the semantic tokenizer. ``rng`` pairs each continuation with an unrelated sequence for the
    chance level (default: a fixed seed); ``chance_quantile`` sets the calibrated threshold.
    """
    if prompt_tokens < 0 or continuation_tokens < 1:
        raise EvalError("prompt_tokens must be >= 0 and continuation_tokens >= 1")
    if batch_size < 1:
        raise EvalError("batch_size must be >= 1")
    if not 0.0 <= chance_quantile < 1.0:
        raise EvalError("chance_quantile must be within [0, 1)")
    cost = ground_cost(centroids)
    vocab = cost.shape[0]
    need = prompt_tokens + continuation_tokens
    all_sequences = _as_sequences(sequences)
    usable = [s[:need].astype(np.int64) for s in all_sequences if s.size >= need]
    if not usable:
        raise EvalError(f"no sequence has the {need} tokens needed ({prompt_tokens} prompt + "
                        f"{continuation_tokens} continuation)")
    tokens = np.stack(usable)
    if tokens.min() < 0 or tokens.max() >= vocab:
        raise EvalError(f"training tokens lie in {tokens.min()} .. {tokens.max()}, outside the {vocab} centroids")
    prompts, truth = tokens[:, :prompt_tokens], tokens[:, prompt_tokens:]
    generated = []
    for start in range(0, len(tokens), batch_size):
        out = np.asarray(continue_fn(prompts[start : start + batch_size], continuation_tokens))
        expected = (min(batch_size, len(tokens) - start), continuation_tokens)
        if out.shape != expected:
            raise EvalError(f"continue_fn returned shape {out.shape}, expected {expected}")
        generated.append(out.astype(np.int64))
    gen = np.concatenate(generated)
    exact = int((gen == truth).all(axis=1).sum())
    costs = [sinkhorn_cost(g, t, cost, reg) for g, t in zip(gen, truth)]
    chance_costs: list[float] = []
    if len(tokens) >= 2:
        rng = rng if rng is not None else np.random.default_rng(0)
        shift = rng.integers(1, len(tokens), size=len(tokens))  # never the sequence itself
        partners = (np.arange(len(tokens)) + shift) % len(tokens)
        chance_costs = [sinkhorn_cost(g, truth[p], cost, reg) for g, p in zip(gen, partners)]
    calibrated = float(np.quantile(chance_costs, chance_quantile)) if chance_costs else None
    return MemorizationReport(
        prompt_tokens=prompt_tokens, continuation_tokens=continuation_tokens, threshold=threshold,
        sequences=len(tokens), skipped=len(all_sequences) - len(tokens), exact_matches=exact,
        approximate_matches=int(sum(c < threshold for c in costs)),
        chance_matches=int(sum(c < threshold for c in chance_costs)), calibrated_threshold=calibrated,
        calibrated_matches=int(sum(c < calibrated for c in costs)) if calibrated is not None else 0,
        costs=costs, chance_costs=chance_costs)
