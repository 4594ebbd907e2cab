"""Memorisation study: ground cost, Sinkhorn cost, and finding a planted copy among random continuations."""

from __future__ import annotations

import numpy as np
import ot
import pytest

from musiclm.eval import EvalError
from musiclm.eval.memorization import (
    _ot_self,
    ground_cost,
    memorization_study,
    sinkhorn_cost,
    token_histogram,
)

VOCAB, DIM = 128, 64
PROMPT, CONTINUATION = 25, 100


@pytest.fixture(scope="module")
def centroids() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((VOCAB, DIM))


def test_ground_cost_units(centroids):
    cost = ground_cost(centroids)
    assert cost.shape == (VOCAB, VOCAB)
    np.testing.assert_allclose(np.diag(cost), 0.0)
    np.testing.assert_allclose(cost, cost.T)
    off = cost[~np.eye(VOCAB, dtype=bool)]
    assert off.mean() == pytest.approx(1.0) and off.min() > 0
    with pytest.raises(EvalError, match="coincide"):
        ground_cost(np.ones((4, 3)))


def test_self_transport_matches_pot(centroids):
    cost = ground_cost(centroids)
    hist = token_histogram(np.random.default_rng(1).integers(0, VOCAB, 60), VOCAB)
    support = np.flatnonzero(hist)
    a, sub = hist[support], cost[np.ix_(support, support)]
    expected = ot.sinkhorn2(a, a, sub, 0.1, numItermax=100_000, stopThr=1e-12)
    assert _ot_self(a, sub, 0.1) == pytest.approx(float(expected), rel=1e-6)


def test_sinkhorn_cost_zero_for_same_histogram_and_ordered(centroids):
    cost = ground_cost(centroids)
    rng = np.random.default_rng(2)
    seq = rng.integers(0, VOCAB, CONTINUATION)
    assert sinkhorn_cost(seq, seq, cost) == 0.0
    assert sinkhorn_cost(seq, rng.permutation(seq), cost) == 0.0  # histograms ignore order
    near = seq.copy()
    near[:5] = rng.integers(0, VOCAB, 5)
    far = rng.integers(0, VOCAB, CONTINUATION)
    assert 0.0 < sinkhorn_cost(near, seq, cost) < sinkhorn_cost(far, seq, cost)


def test_planted_copy_is_found_and_random_continuations_do_not_match(centroids):
    rng = np.random.default_rng(3)
    sequences = rng.integers(0, VOCAB, (30, 150))
    short = rng.integers(0, VOCAB, 60)  # too short: skipped
    near_copy = sequences[1, PROMPT : PROMPT + CONTINUATION].copy()
    near_copy[::10] = (near_copy[::10] + 1) % VOCAB
    noise = np.random.default_rng(4)

    def continue_fn(prompts: np.ndarray, steps: int) -> np.ndarray:
        out = []
        for prompt in prompts:
            if np.array_equal(prompt, sequences[0, :PROMPT]):
                out.append(sequences[0, PROMPT : PROMPT + steps])  # memorised exactly
            elif np.array_equal(prompt, sequences[1, :PROMPT]):
                out.append(near_copy)  # memorised approximately
            else:
                out.append(noise.integers(0, VOCAB, steps))
        return np.stack(out)

    report = memorization_study([*sequences, short], continue_fn, centroids, PROMPT, CONTINUATION, threshold=0.3,
                                batch_size=7, rng=np.random.default_rng(5))
    assert report.sequences == 30 and report.skipped == 1
    assert report.exact_matches == 1
    assert report.approximate_matches == 2
    assert report.costs[0] == 0.0 and 0.0 < report.costs[1] < 0.3
    assert min(report.costs[2:]) > 0.3  # random continuations do not match
    assert report.chance_matches == 0 and report.chance_rate == 0.0
    # The calibrated threshold (1 % quantile of 30 chance costs, about their minimum) lies above both copies.
    assert report.calibrated_threshold is not None and report.calibrated_threshold > report.costs[1]
    assert 2 <= report.calibrated_matches <= 4
    summary = report.to_dict()
    assert summary["exact_rate"] == pytest.approx(1 / 30)
    assert summary["approximate_rate"] == pytest.approx(2 / 30)
    assert "costs" not in summary and len(report.to_dict(with_costs=True)["costs"]) == 30


def test_unconditional_prompts_and_errors(centroids):
    sequences = np.random.default_rng(6).integers(0, VOCAB, (4, 20))
    report = memorization_study(sequences, lambda p, n: np.zeros((p.shape[0], n), dtype=int), centroids, 0, 10)
    assert report.sequences == 4 and report.exact_matches == 0
    with pytest.raises(EvalError, match="shape"):
        memorization_study(sequences, lambda p, n: np.zeros((p.shape[0], n + 1), dtype=int), centroids, 5, 10)
    with pytest.raises(EvalError, match="needed"):
        memorization_study(sequences, lambda p, n: p, centroids, 15, 10)
    with pytest.raises(EvalError, match="outside"):
        memorization_study(sequences + VOCAB, lambda p, n: p, centroids, 5, 10)
