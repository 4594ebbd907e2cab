"""``PitchContour``: the dominant pitch class of every semantic frame, a frame-rate melody condition.

The melody tokens of the paper describe 4 s windows; the semantic tokens run at 25 per second. To let the
semantic stage follow a tune note by note, it can also take a *pitch contour* aligned with its own frames:
for every 40 ms frame, the strongest pitch class of an STFT chromagram (0-11, C to B), or :data:`SILENT`
where the frame is more than ``silence_db`` below the loudest frame of the clip. This is the signal
MusicGen's melody model is conditioned on (an argmax chromagram) and the one its melody metric
(:func:`musiclm.eval.adherence.chroma_similarity`) compares, computed with the same window (0.17 s) and hop.

The same extractor runs on the training clips (a full mix: the condition is what dominates it) and, at
inference, on the user's hum, whistle or recording, so training and use see the same kind of input. It has
no weights: its :meth:`fingerprint` names its settings, so a token store and a stage agree on them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from musiclm.errors import AudioError

PITCH_CLASSES = 12
SILENT = PITCH_CLASSES
"""Contour value of a frame without melody (too quiet)."""
CONTOUR_VALUES = PITCH_CLASSES + 1
"""Distinct contour values: 12 pitch classes and :data:`SILENT`."""


@dataclass(frozen=True)
class PitchContour:
    """Argmax-chroma contour at ``frame_rate`` frames per second (see the module docstring)."""

    frame_rate: int = 25
    window_seconds: float = 0.17
    silence_db: float = -40.0

    def __post_init__(self) -> None:
        if self.frame_rate < 1 or self.window_seconds <= 0 or not self.silence_db < 0:
            raise ValueError("PitchContour needs frame_rate >= 1, window_seconds > 0 and silence_db < 0")

    def identity(self) -> dict[str, Any]:
        """Settings and fingerprint (what a token store records)."""
        return {**asdict(self), "values": CONTOUR_VALUES, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        text = json.dumps({"kind": "argmax-chroma", **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def frames(self, samples: int, sample_rate: int) -> int:
        """Contour frames of ``samples`` samples: one per started frame (as the semantic tokenizer counts)."""
        hop = self._hop(sample_rate)
        return max(1, -(-samples // hop))

    def _hop(self, sample_rate: int) -> int:
        hop = sample_rate / self.frame_rate
        if abs(hop - round(hop)) > 1e-9:
            raise AudioError(f"a {self.frame_rate} Hz contour needs a sample rate divisible by it, got {sample_rate}")
        return int(round(hop))

    @torch.no_grad()
    def __call__(self, wavs: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """``[samples]`` or ``[B, samples]`` audio -> int8 contour ``[B, frames]`` (values 0-12)."""
        from musiclm.features import chroma_and_rms

        wav = torch.as_tensor(np.asarray(wavs, dtype=np.float32) if not isinstance(wavs, torch.Tensor) else wavs)
        wav = wav.float().reshape(1, -1) if wav.dim() == 1 else wav.float()
        if wav.dim() != 2 or wav.shape[1] == 0:
            raise AudioError(f"expected audio [samples] or [batch, samples], got {tuple(wav.shape)}")
        if not bool(torch.isfinite(wav).all()):
            raise AudioError("the audio contains NaN or infinite samples")
        hop = self._hop(sample_rate)
        n_fft = int(2 ** np.round(np.log2(self.window_seconds * sample_rate)))
        frames = self.frames(wav.shape[1], sample_rate)
        chroma, rms = chroma_and_rms(wav, sample_rate, n_fft, hop)  # [B, 12, >= frames], [B, >= frames]
        contour = chroma.argmax(dim=1)[:, :frames]
        rms = rms[:, :frames]
        gate = 10.0 ** (self.silence_db / 20.0) * rms.amax(dim=1, keepdim=True).clamp_min(1e-12)
        contour = torch.where(rms > gate, contour, torch.full_like(contour, SILENT))
        if contour.shape[1] < frames:  # a tail shorter than half a window: repeat the last frame
            contour = torch.cat([contour, contour[:, -1:].expand(-1, frames - contour.shape[1])], dim=1)
        return contour.numpy().astype(np.int8)


def loop_contour(contour: np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, n]`` contour repeated from its start (as a melody loops) and cut to ``[B, frames]`` (long)."""
    values = torch.as_tensor(np.asarray(contour)).long()
    if values.dim() != 2 or values.shape[1] == 0:
        raise AudioError(f"expected a contour [batch, frames], got {tuple(values.shape)}")
    loops = -(-frames // values.shape[1])
    return values.repeat(1, loops)[:, :frames]
