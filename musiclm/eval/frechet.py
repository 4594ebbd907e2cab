"""Fréchet distance between two Gaussians, and the Fréchet Audio Distance (FAD) between embedding sets.

FAD (Kilgour et al., 2019) fits a Gaussian to the embeddings of each audio set and reports

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

Lower is better; 0 means the two sets have identical first and second moments.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg

from musiclm.eval import EvalError

log = logging.getLogger("musiclm.eval")

MAX_IMAGINARY = 1e-3
"""Largest imaginary part (relative to the trace scale) tolerated in the matrix square root."""


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise EvalError(f"{name} must be a square matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvalError(f"{name} contains NaN or infinite values")
    return x


def _as_vector(x: np.ndarray, name: str) -> np.ndarray:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if x.ndim != 1:
        raise EvalError(f"{name} must be a vector, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise EvalError(f"{name} contains NaN or infinite values")
    return x


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> np.ndarray:
    """(sigma1 @ sigma2)^{1/2}; retried with ``eps * I`` added to both covariances if it is not usable."""
    product = sigma1 @ sigma2
    covmean = np.asarray(scipy.linalg.sqrtm(product))
    if not _usable_root(covmean, product):
        log.warning("Fréchet distance: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        product = (sigma1 + offset) @ (sigma2 + offset)
        covmean = np.asarray(scipy.linalg.sqrtm(product))
        if not np.isfinite(covmean).all():
            raise EvalError("Fréchet distance: the matrix square root is not finite even after regularisation")
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.abs(np.diag(covmean)).max()))
        imaginary = float(np.abs(covmean.imag).max())
        if imaginary > MAX_IMAGINARY * scale:
            raise EvalError(f"Fréchet distance: the matrix square root has a large imaginary part ({imaginary:.3g}); "
                            "the covariances are probably ill-conditioned (too few samples for their dimension)")
        covmean = covmean.real
    return covmean


def _usable_root(root: np.ndarray, product: np.ndarray) -> bool:
    if not np.isfinite(root).all():
        return False
    norm = np.linalg.norm(product)
    if norm == 0.0:
        return True
    error = np.linalg.norm(root @ root - product) / norm
    return bool(error < 1e-4)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared-unit, >= 0).

    The matrix square root is scipy's ``sqrtm``; when the covariance product is singular or the root is not
    finite, ``eps`` is added to both diagonals and the root taken again. A negligible imaginary part (numerical
    noise) is dropped; a large one raises :class:`~musiclm.eval.EvalError`.
    """
    mu1, mu2 = _as_vector(mu1, "mu1"), _as_vector(mu2, "mu2")
    sigma1, sigma2 = _as_matrix(sigma1, "sigma1"), _as_matrix(sigma2, "sigma2")
    if mu1.shape != mu2.shape:
        raise EvalError(f"means differ in dimension: {mu1.shape[0]} vs {mu2.shape[0]}")
    if sigma1.shape != sigma2.shape or sigma1.shape[0] != mu1.shape[0]:
        raise EvalError(f"covariances {sigma1.shape} and {sigma2.shape} do not fit means of dimension {mu1.shape[0]}")
    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2, eps)
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and (unbiased) covariance ``[D, D]`` of embeddings ``[N, D]`` (N >= 2)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise EvalError(f"embeddings must be [N, D], got shape {emb.shape}")
    if emb.shape[0] < 2:
        raise EvalError(f"need at least 2 embeddings to fit a Gaussian, got {emb.shape[0]}")
    if not np.isfinite(emb).all():
        raise EvalError("embeddings contain NaN or infinite values")
    return emb.mean(axis=0), np.atleast_2d(np.cov(emb, rowvar=False))


def fad(emb_a: np.ndarray, emb_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet Audio Distance between two embedding sets ``[N_a, D]`` and ``[N_b, D]``."""
    emb_a, emb_b = np.asarray(emb_a), np.asarray(emb_b)
    if emb_a.ndim != 2 or emb_b.ndim != 2:
        raise EvalError(f"embeddings must be [N, D], got shapes {emb_a.shape} and {emb_b.shape}")
    if emb_a.shape[1] != emb_b.shape[1]:
        raise EvalError(f"embedding sets differ in dimension: {emb_a.shape[1]} vs {emb_b.shape[1]}")
    for name, emb in (("first", emb_a), ("second", emb_b)):
        if emb.shape[0] < 2:
            raise EvalError(f"FAD needs at least 2 embeddings per set; the {name} set has {emb.shape[0]}")
    if min(emb_a.shape[0], emb_b.shape[0]) <= emb_a.shape[1]:
        log.warning("FAD with %d/%d embeddings of dimension %d: the covariances are singular and the value is "
                    "biased; use more audio", emb_a.shape[0], emb_b.shape[0], emb_a.shape[1])
    mu_a, sigma_a = gaussian_stats(emb_a)
    mu_b, sigma_b = gaussian_stats(emb_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b, eps)
