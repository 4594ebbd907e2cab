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


@pytest.fixture
def python() -> str:
    return sys.executable
