"""PyTorch datasets over corpus folders (the manifest contract in :mod:`musiclm.data.manifest`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from musiclm import SAMPLE_RATE
from musiclm.audio import resample
from musiclm.data.manifest import ClipRecord, ManifestError, read_manifest


class ClipDataset(Dataset):
    """Random crops of the clips of one or more corpus folders.

    Item ``i`` is a pure function of ``(seed, epoch, i)``, so training resumes exactly; the engine calls
    :meth:`set_epoch` so that every epoch sees different crops. Returns ``{"wav": [samples], "index": i}``
    plus ``caption`` when ``with_text``.
    """

    def __init__(
        self,
        corpora: str | os.PathLike[str] | list[str | os.PathLike[str]],
        split: str | None = "train",
        crop_seconds: float | None = None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        with_text: bool = False,
    ):
        roots = corpora if isinstance(corpora, list) else [corpora]
        self.items: list[tuple[Path, ClipRecord]] = []
        for root in roots:
            self.items += [(Path(root), r) for r in read_manifest(root, split)]
        if not self.items:
            raise ManifestError(f"no clips in split {split!r} of {', '.join(map(str, roots))}")
        self.crop_seconds, self.sample_rate, self.seed = crop_seconds, sample_rate, seed
        self.with_text = with_text
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        root, record = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        path = root / record.path
        info = sf.info(str(path))
        rate = int(info.samplerate)
        if self.crop_seconds is None:
            start, frames = 0, int(info.frames)
        else:
            frames = min(int(round(self.crop_seconds * rate)), int(info.frames))
            start = int(rng.integers(0, int(info.frames) - frames + 1))
        wav, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        wav = wav.mean(axis=1)
        if rate != self.sample_rate:
            wav = resample(wav, rate, self.sample_rate)
        if self.crop_seconds is not None:
            want = int(round(self.crop_seconds * self.sample_rate))
            wav = np.pad(wav[:want], (0, max(0, want - len(wav))))
        item: dict[str, Any] = {"wav": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
                                "index": index}
        if self.with_text:
            item["caption"] = record.caption or ""
        return item
