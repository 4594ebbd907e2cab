"""Helpers of the server tests: apps around the session's tiny model, a gate that holds a generation, WAV bytes."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GatedModel:
    """The tiny model, but every generation waits at its first token until :attr:`gate` opens.

    While it waits it keeps calling the job's progress callback, so a cancelled job stops there.
    """

    def __init__(self, model: Any):
        self.model = model
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, texts: Any, duration: float, *, progress: Any = None, **kwargs: Any) -> Any:
        first = [True]

        def gated(stage: str, done: int, total: int) -> None:
            if first[0]:
                first[0] = False
                self.entered.set()
                while not self.gate.wait(0.01):
                    progress(stage, done, total)
            progress(stage, done, total)

        return self.model.generate(texts, duration, progress=gated, **kwargs)


class MelodyModel:
    """The tiny model plus a ``generate_with_melody`` that records its inputs and generates from the text."""

    def __init__(self, model: Any):
        self.model = model
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    supports_melody = True

    def generate_with_melody(self, texts: list[str], melody: np.ndarray, rate: int, duration: float,
                             **kwargs: Any) -> Any:
        self.calls.append({"melody": melody, "rate": rate, "texts": texts, "duration": duration})
        return self.model.generate(texts, duration, **kwargs)


def make_app(model: Any, data_dir: Path, **settings: Any) -> Any:
    from musiclm.server.app import ServerSettings, create_app

    return create_app(model, ServerSettings(data_dir=data_dir, **settings))


def client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://localhost")


def wait_state(client: Any, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
               timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}; last: {status}")


def wav_bytes(seconds: float = 1.0, rate: int = 24_000, freq: float = 440.0, fmt: str = "WAV") -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format=fmt)
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    return wav, rate
