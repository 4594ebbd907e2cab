"""KL divergence between label distributions: zero for identical, hand-computed cases, per-head means, errors."""

from __future__ import annotations

import numpy as np
import pytest

from musiclm.eval import EvalError
from musiclm.eval.divergence import kl_divergence, kld_per_head, mean_kld


def test_identical_distributions_have_zero_divergence():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.01, 0.99, size=(5, 7))
    np.testing.assert_allclose(kl_divergence(probs, probs, kind="multilabel"), 0.0, atol=1e-12)
    soft = probs / probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(kl_divergence(soft, soft, kind="multiclass"), 0.0, atol=1e-12)


def test_multiclass_hand_computed():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)  # 0.14384
    assert kl_divergence(p, q, kind="multiclass")[0] == pytest.approx(expected, rel=1e-5)
    # Not symmetric.
    assert kl_divergence(q, p, kind="multiclass")[0] != pytest.approx(expected, rel=1e-3)


def test_multilabel_hand_computed():
    p, q = np.array([[0.5, 0.9]]), np.array([[0.5, 0.6]])
    second = 0.9 * np.log(0.9 / 0.6) + 0.1 * np.log(0.1 / 0.4)  # 0.22629
    assert kl_divergence(p, q)[0] == pytest.approx(second / 2, rel=1e-5)


def test_zero_probabilities_give_finite_values_and_means():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    q = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    kl = kl_divergence(p, q, kind="multiclass")
    assert np.isfinite(kl).all() and kl[0] > 10 and kl[1] == pytest.approx(0.0, abs=1e-5)
    assert mean_kld(p, q, kind="multiclass") == pytest.approx(kl.mean())


def test_per_head():
    ref = {"genre": np.array([[0.7, 0.3]]), "instruments": np.array([[0.9, 0.1, 0.5]])}
    gen = {"genre": np.array([[0.7, 0.3]]), "instruments": np.array([[0.5, 0.1, 0.5]])}
    out = kld_per_head(ref, gen, {"genre": "multiclass", "instruments": "multilabel"})
    assert out["genre"] == pytest.approx(0.0, abs=1e-9)
    assert out["instruments"] > 0
    assert out["mean"] == pytest.approx(out["instruments"] / 2)
    with pytest.raises(EvalError, match="missing"):
        kld_per_head(ref, {"genre": gen["genre"]}, {"genre": "multiclass", "instruments": "multilabel"})


def test_errors():
    with pytest.raises(EvalError, match="shape"):
        kl_divergence(np.ones((2, 3)) / 3, np.ones((2, 4)) / 4)
    with pytest.raises(EvalError, match="probabilities"):
        kl_divergence(np.array([[1.5, 0.2]]), np.array([[0.5, 0.5]]))
    with pytest.raises(EvalError, match="sum to 1"):
        kl_divergence(np.array([[0.2, 0.2]]), np.array([[0.5, 0.5]]), kind="multiclass")
    with pytest.raises(EvalError, match="kind"):
        kl_divergence(np.array([[0.5]]), np.array([[0.5]]), kind="softmax")  # type: ignore[arg-type]
