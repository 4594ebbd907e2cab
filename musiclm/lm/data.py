"""Training sequences of a stage, cut from a token store: random windows laid out by the stage's layout.

An item is ``{"tokens": [L], "labels": [L], "index": i}``: the window's condition and targets (shifted by one
for next-token prediction), padded to the stage's full window length; condition and padding positions carry
the label :data:`~musiclm.lm.layout.IGNORE`. A stage with a pitch contour also gets ``"aligned"`` ``[L]``:
each position's contour id (:meth:`~musiclm.lm.layout.StageLayout.contour_ids`; 0 where none).
Condition dropout (null MuLan tokens) is drawn here, per item,
from ``(seed, epoch, index)``, so a resumed run sees the same sequences.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from musiclm.errors import MusicLMError
from musiclm.lm.layout import IGNORE, PAD, TokenSpaces
from musiclm.lm.stage_config import StageConfig


class TokenClips(Protocol):
    """What a stage dataset reads: per-clip tokens (a :class:`musiclm.tokenstore.TokenStore` provides it)."""

    def __len__(self) -> int: ...

    def codes(self, index: int) -> np.ndarray: ...  # [levels, frames] acoustic codes (50 Hz)

    def semantic(self, index: int) -> np.ndarray: ...  # [frames] semantic tokens (25 Hz)

    def mulan_tokens(self, index: int) -> np.ndarray: ...  # [Q] MuLan audio tokens

    # optional: melody(index) -> [windows, levels] with has_melody; contour(index) -> [frames] with has_contour


class StageDataError(MusicLMError):
    """The token store cannot feed this stage."""


def token_spaces_of(info: dict[str, Any], fine_levels: int | None = None) -> TokenSpaces:
    """The :class:`TokenSpaces` of a token store's ``store.json`` description."""
    try:
        levels = int(info["codec"]["levels"])
        coarse = int(info["codec"].get("coarse_levels", 4))
        spaces = TokenSpaces(
            mulan_levels=int(info["mulan"].get("num_quantizers", info["mulan"].get("levels"))),
            mulan_codebook=int(info["mulan"]["codebook_size"]),
            semantic_clusters=int(info["semantic"]["num_clusters"]),
            acoustic_codebook=int(info["codec"]["codebook_size"]), coarse_levels=coarse,
            fine_levels=levels - coarse if fine_levels is None else fine_levels,
            semantic_rate=int(round(float(info["semantic"]["token_rate"]))),
            acoustic_rate=int(round(float(info["codec"]["frame_rate"]))))
    except (KeyError, TypeError, ValueError) as exc:
        raise StageDataError(f"the token store description lacks {exc}") from exc
    if spaces.acoustic_levels > levels:
        raise StageDataError(f"the store holds {levels} RVQ levels, the stage wants {spaces.acoustic_levels}")
    return spaces


class StageDataset(Dataset):
    """Random windows of ``config.stage`` over the clips of a token store."""

    def __init__(self, clips: TokenClips, config: StageConfig, seed: int = 0, condition_dropout: bool = True,
                 random_crops: bool = True):
        if len(clips) == 0:
            raise StageDataError("the token store has no clips for this split")
        self.clips, self.config, self.seed = clips, config, seed
        self.layout = config.layout()
        self.window = config.window_frames(self.layout)
        self.length = config.sequence_length(self.layout) - 1
        self.dropout = config.condition_dropout if condition_dropout else 0.0
        self.random_crops = random_crops
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def _start(self, available: int, rng: np.random.Generator, step: int = 1) -> int:
        slack = max(available - self.window, 0) // step
        if not self.random_crops or slack == 0:
            return 0
        return int(rng.integers(0, slack + 1)) * step

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        sequence, condition, start = self._window(index, rng)
        if self.layout.uses_mulan and self.dropout > 0 and rng.random() < self.dropout:
            sequence = self.layout.drop_condition(sequence[None], torch.tensor([True]))[0]
        labels = sequence.clone()
        labels[:condition] = IGNORE
        tokens = torch.full((self.length,), PAD, dtype=torch.long)
        target = torch.full((self.length,), IGNORE, dtype=torch.long)
        n = min(sequence.shape[0] - 1, self.length)
        tokens[:n] = sequence[:n]
        target[:n] = labels[1:n + 1]
        item = {"tokens": tokens, "labels": target, "index": int(index)}
        if self.config.tokens.contour_values:
            aligned = torch.zeros(self.length, dtype=torch.long)
            frames = (sequence.shape[0] - condition) // self.layout.levels
            contour = self._contour(index, start, frames, rng)
            ids = self.layout.contour_ids(contour, condition, frames, 1)[0]
            aligned[:min(ids.shape[0], self.length)] = ids[:self.length]
            item["aligned"] = aligned
        return item

    def _contour(self, index: int, start: int, frames: int, rng: np.random.Generator) -> torch.Tensor | None:
        """The pitch contour ``[1, frames]`` under a window's target frames ``start..start+frames`` (at the
        stage's frame rate: each semantic-rate value covers ``acoustic_per_semantic`` acoustic frames), or None on
        a ``contour_dropout`` share of the windows or when the store holds none; a contour shorter than the
        window repeats its last value."""
        if not getattr(self.clips, "has_contour", False) or rng.random() < self.config.contour_dropout:
            return None
        contour = np.asarray(self.clips.contour(index))  # type: ignore[attr-defined]
        if contour.shape[0] == 0 or frames < 1:
            return None
        per_value = 1 if self.config.stage == "semantic" else self.config.tokens.acoustic_per_semantic
        at = np.minimum((start + np.arange(frames)) // per_value, contour.shape[0] - 1)
        return torch.as_tensor(contour[at].astype(np.int64))[None]

    def _melody(self, index: int, start_frame: int, rng: np.random.Generator) -> torch.Tensor | None:
        """The melody tokens of a semantic window (None: null tokens) when the stage takes melody and the store
        holds it; absent on a ``melody_dropout`` share of the windows so text-only generation keeps working."""
        spaces = self.config.tokens
        if not spaces.melody_levels or not getattr(self.clips, "has_melody", False):
            return None
        if rng.random() < self.config.melody_dropout:
            return None
        rows = melody_rows(self.clips.melody(index), start_frame / spaces.semantic_rate, spaces.melody_slots,
                           spaces.melody_hop_seconds)
        return None if rows is None else torch.as_tensor(rows.astype(np.int64))[None]

    def sequence(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """The ``[condition + targets]`` id sequence of one window of clip ``index``, and the condition length."""
        sequence, condition, _ = self._window(index, rng)
        return sequence, condition

    def _window(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, int, int]:
        """:meth:`sequence` and the window's first target frame."""
        spaces = self.config.tokens
        stage = self.config.stage
        if stage == "semantic":
            semantic = np.asarray(self.clips.semantic(index))
            start = self._start(len(semantic), rng)
            window = torch.as_tensor(semantic[start:start + self.window].astype(np.int64))
            mulan = torch.as_tensor(np.asarray(self.clips.mulan_tokens(index)).astype(np.int64))[None]
            condition = self.layout.condition(mulan, self._melody(index, start, rng))
            targets = self.layout.encode_targets(window[None])
        else:
            codes = np.asarray(self.clips.codes(index))
            if codes.shape[0] < spaces.acoustic_levels:
                raise StageDataError(f"clip {index}: {codes.shape[0]} RVQ levels, need {spaces.acoustic_levels}")
            ratio = spaces.acoustic_per_semantic
            semantic = np.asarray(self.clips.semantic(index)) if stage == "coarse" else None
            available = codes.shape[1] if semantic is None else min(codes.shape[1], len(semantic) * ratio)
            available = available // ratio * ratio
            start = self._start(available, rng, ratio)
            stop = min(start + self.window, available)
            frames = torch.as_tensor(codes[:, start:stop].astype(np.int64)).T[None]  # [1, n, levels]
            if stage == "coarse":
                mulan = torch.as_tensor(np.asarray(self.clips.mulan_tokens(index)).astype(np.int64))[None]
                sem = torch.as_tensor(semantic[start // ratio:stop // ratio].astype(np.int64))[None]
                condition = self.layout.condition(mulan, sem)
                targets = self.layout.encode_targets(frames[..., :spaces.coarse_levels])
            else:
                condition = self.layout.condition(frames[..., :spaces.coarse_levels])
                targets = self.layout.encode_targets(frames[..., spaces.coarse_levels:spaces.acoustic_levels])
        return torch.cat([condition, targets], dim=1)[0], condition.shape[1], start


def melody_rows(melody: Any, start_seconds: float, slots: int, hop_seconds: float) -> Any:
    """The ``slots`` consecutive melody windows nearest a semantic window starting at ``start_seconds``
    (clamped to the clip) of melody tokens ``[..., windows, levels]`` (numpy or torch, one clip or a batch),
    or None when there are fewer windows than slots."""
    if melody.ndim < 2 or melody.shape[-2] < slots:
        return None
    first = max(0, min(int(round(start_seconds / hop_seconds)), melody.shape[-2] - slots))
    return melody[..., first:first + slots, :]


def collate_sequences(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack items of one stage (they share one padded length)."""
    batch = {"tokens": torch.stack([i["tokens"] for i in items]), "labels": torch.stack([i["labels"] for i in items]),
             "index": torch.tensor([i["index"] for i in items])}
    if items and "aligned" in items[0]:
        batch["aligned"] = torch.stack([i["aligned"] for i in items])
    return batch
