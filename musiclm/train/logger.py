"""Training logs: TensorBoard scalars/audio/figures and a progress bar (rank 0 only)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("musiclm.train")


class TrainLogger:
    """Writes TensorBoard events under ``<run>/tensorboard`` and drives a tqdm progress bar on stderr.

    On ranks other than 0 every method is a no-op, so recipes can log unconditionally.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True):
        self.enabled = enabled
        self._writer = None
        self._bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=start_step)
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is None:
            return
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)

    def audio(self, tag: str, wav: np.ndarray, sample_rate: int, step: int) -> None:
        """Log a mono clip (``[samples]``, float in [-1, 1]) to TensorBoard."""
        if self._writer is None:
            return
        clip = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
        self._writer.add_audio(tag, clip, step, sample_rate=sample_rate)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """Log a matplotlib figure (closed afterwards)."""
        if self._writer is None:
            return
        self._writer.add_figure(tag, figure, step, close=True)

    def text(self, tag: str, text: str, step: int) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def advance(self, steps: int, postfix: dict[str, float] | None = None) -> None:
        if self._bar is None:
            return
        self._bar.update(steps)
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def message(self, text: str) -> None:
        """A line on stderr that does not break the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RateMeter:
    """Steps per second over the last logging interval."""

    def __init__(self) -> None:
        self._time = time.perf_counter()
        self._count = 0

    def tick(self, n: int = 1) -> None:
        self._count += n

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self._count / max(now - self._time, 1e-9)
        self._time, self._count = now, 0
        return rate
