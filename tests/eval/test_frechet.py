"""Fréchet distance and FAD: known closed forms, self-distance, monotonic growth, singular cases, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from musiclm.eval import EvalError
from musiclm.eval.frechet import fad, frechet_distance, gaussian_stats


def test_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert value == pytest.approx(9.0 + 1.0, abs=1e-9)


def test_diagonal_closed_form():
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 1.0 + 4.0 + float(((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)


def test_sampled_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20_000, 1))
    b = rng.normal(3.0, 2.0, size=(20_000, 1))
    assert fad(a, b) == pytest.approx(9.0 + 1.0, rel=0.03)


def test_set_with_itself_is_zero_and_mean_shift_grows_monotonically():
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    assert fad(emb, emb) == pytest.approx(0.0, abs=1e-6)
    direction = np.eye(8)[0]
    values = [fad(emb, emb + shift * direction) for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in itertools.pairwise(values))
    # Same covariance, shifted mean: exactly the squared shift.
    assert values[-1] == pytest.approx(16.0, rel=1e-6)


def test_gaussian_stats():
    emb = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_stats(emb)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(emb, rowvar=False))


def test_singular_covariances_are_regularised():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((5, 16)), rng.standard_normal((6, 16)) + 1.0
    value = fad(a, b)
    assert np.isfinite(value) and value > 0
    assert fad(a, a) == pytest.approx(0.0, abs=1e-3)


def test_errors():
    with pytest.raises(EvalError, match="at least 2"):
        fad(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(EvalError, match="dimension"):
        fad(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(EvalError, match=r"\[N, D\]"):
        fad(np.zeros(4), np.zeros((3, 4)))
    with pytest.raises(EvalError, match="NaN"):
        gaussian_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(EvalError, match="square"):
        frechet_distance(np.zeros(2), np.zeros((2, 3)), np.zeros(2), np.eye(2))
