from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def sine():
    """``sine(freq, seconds, sr, amp)`` -> float32 mono tone."""

    def make(freq: float = 440.0, seconds: float = 1.0, sr: int = 24_000, amp: float = 0.5) -> np.ndarray:
        t = np.arange(round(seconds * sr)) / sr
        return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models run
    faster without threading overhead, far faster on a busy machine. Covers torch and the OpenMP/BLAS pools
    (scikit-learn's k-means); the settings are restored after the module."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def python() -> str:
    return sys.executable


def _tiny_musiclm(**options):
    """``random_musiclm("tiny", seed=0, **options)`` built on one thread (faster on a busy machine)."""
    import torch

    from musiclm.random_model import random_musiclm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return random_musiclm("tiny", seed=0, **options)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_musiclm():
    """A complete MusicLM with tiny random components (built once per session; treat it as read-only)."""
    return _tiny_musiclm()


@pytest.fixture(scope="session")
def melody_musiclm():
    """The tiny random MusicLM with a melody model and a semantic stage that takes its tokens (read-only)."""
    return _tiny_musiclm(melody=True)


@pytest.fixture(scope="session")
def contour_musiclm():
    """The tiny random MusicLM whose semantic and coarse stages take a pitch contour (read-only)."""
    return _tiny_musiclm(contour=("semantic", "coarse"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_musiclm, tmp_path_factory):
    """The tiny random MusicLM saved as a model folder."""
    return tiny_musiclm.save(tmp_path_factory.mktemp("tiny-musiclm"))
