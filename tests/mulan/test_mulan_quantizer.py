"""The MuLan embedding quantiser: residual k-means codebooks, tokens, reconstruction, codebook sizing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from musiclm.mulan.quantizer import EmbeddingQuantizer, QuantizerError, effective_codebook_size, fit_quantizer

pytestmark = pytest.mark.usefixtures("one_thread")


def clustered(n: int, dim: int = 16, centers: int = 8, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dim))
    x = means[rng.integers(0, centers, n)] + 0.2 * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.from_numpy(x.astype(np.float32))


@pytest.fixture(scope="module")
def fitted() -> tuple[EmbeddingQuantizer, object, torch.Tensor]:
    data = clustered(600)
    quantizer, report = fit_quantizer(data, 12, 32, min_points_per_code=4, iters=30, seed=0)
    return quantizer, report, data


def test_tokens_shape_range_and_determinism(fitted):
    quantizer, _, data = fitted
    tokens = quantizer.encode(data[:10])
    assert tokens.shape == (10, 12) and tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < quantizer.codebook_size
    assert torch.equal(tokens, quantizer.encode(data[:10]))
    assert torch.equal(quantizer.encode(data[:10], levels=3), tokens[:, :3])


def test_reconstruction_improves_with_levels(fitted):
    quantizer, report, data = fitted
    cosines = [level.cosine for level in report.levels]
    assert cosines[0] > 0.8
    assert cosines[-1] > cosines[0]
    assert all(b >= a - 1e-4 for a, b in itertools.pairwise(cosines))
    tokens = quantizer.encode(data)
    error_1 = (data - quantizer.decode(tokens[:, :1])).norm(dim=1).mean()
    error_12 = (data - quantizer.decode(tokens)).norm(dim=1).mean()
    assert error_12 < 0.5 * error_1
    assert report.levels[0].codes_used > 8


def test_held_out_embeddings_quantise_about_as_well(fitted):
    quantizer, _, _ = fitted
    held_out = clustered(100, seed=0)[50:]  # same distribution
    q = quantizer.decode(quantizer.encode(held_out))
    assert torch.nn.functional.cosine_similarity(q, held_out).mean() > 0.9


def test_codebooks_are_fp16_exact(fitted):
    quantizer, _, _ = fitted
    books = quantizer.codebooks
    assert torch.equal(books, books.half().float())


def test_codebook_shrinks_for_small_corpora():
    assert effective_codebook_size(100_000, 1024, 4) == 1024
    assert effective_codebook_size(4096, 1024, 4) == 1024
    assert effective_codebook_size(1072, 1024, 4) == 256
    assert effective_codebook_size(10, 1024, 4) == 2
    with pytest.raises(QuantizerError):
        effective_codebook_size(1, 1024, 4)
    quantizer, report = fit_quantizer(clustered(40), 12, 1024, min_points_per_code=4, iters=10)
    assert quantizer.codebook_size == report.codebook_size == 8
    assert report.requested_codebook_size == 1024


def test_unfitted_and_bad_inputs_are_errors():
    blank = EmbeddingQuantizer(12, 16, 8)
    assert not blank.fitted
    with pytest.raises(QuantizerError, match="not fitted"):
        blank.encode(torch.randn(2, 8))
    quantizer, _ = fit_quantizer(clustered(64, dim=8), 4, 8, iters=10)
    with pytest.raises(QuantizerError):
        quantizer.encode(torch.randn(2, 9))
    with pytest.raises(QuantizerError):
        quantizer.decode(torch.full((1, 4), 8))
    with pytest.raises(QuantizerError):
        fit_quantizer(np.full((10, 8), np.nan), 4, 8)
