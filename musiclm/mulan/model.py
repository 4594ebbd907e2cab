"""MuLan: an audio tower and a text tower projecting into one L2-normalised space, with a learned temperature.

A plain ``nn.Module`` that knows nothing of files or training loops. ``forward(wav, texts)`` is the training
call (one window per audio row); :meth:`MuLanModel.embed_audio_long` is the paper's clip embedding: the mean
of the embeddings of 10 s windows taken every 1 s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.audio import SILENCE_PEAK
from musiclm.errors import AudioError
from musiclm.mulan.audio_tower import AudioTower, window_starts
from musiclm.mulan.config import MuLanConfig
from musiclm.mulan.text_tower import TextTower


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class MuLanModel(nn.Module):
    """Joint music-text embedding model."""

    def __init__(self, config: MuLanConfig):
        super().__init__()
        self.config = config
        self.audio = AudioTower(config.audio, config.embed_dim)
        self.text = TextTower(config.text, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped to ``max_logit_scale`` (1 / temperature)."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def encode_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` (one window each) -> unit vectors ``[B, embed_dim]``."""
        return F.normalize(self.audio(wav).float(), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit vectors ``[B, embed_dim]``."""
        return F.normalize(self.text(texts).float(), dim=-1)

    def forward(self, wav: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training call: (audio embeddings, text embeddings, similarity scale)."""
        return self.encode_audio(wav), self.encode_text(texts), self.scale()

    # ------------------------------------------------------------------------------------ long audio
    def audio_windows(self, wav: torch.Tensor) -> torch.Tensor:
        """One signal ``[samples]`` -> gain-normalised log-mel windows ``[W, mels, frames]`` (silent ones dropped).

        Audio shorter than ``min_seconds`` is looped up to it. The log-mel of the whole signal is computed once
        and cut into ``window_seconds`` windows every ``window_stride_seconds``; windows whose waveform is
        silent (peak at or below :data:`musiclm.audio.SILENCE_PEAK`) are left out of the mean. All-silent audio
        raises :class:`~musiclm.errors.AudioError`.
        """
        cfg = self.config.audio
        if wav.dim() != 1 or wav.numel() == 0:
            raise AudioError(f"expected a non-empty 1-D signal, got shape {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise AudioError("audio contains NaN or infinite samples")
        min_samples = int(round(cfg.min_seconds * cfg.sample_rate))
        if wav.numel() < min_samples:
            wav = wav.repeat(-(-min_samples // wav.numel()))[:min_samples]
        hop = cfg.hop_length
        mel = self.audio.frontend(wav.unsqueeze(0))[0]  # [mels, frames]: centred, one frame per hop
        mel = mel[:, : max(1, wav.numel() // hop)]  # drop the frame centred past the end
        window = cfg.window_frames
        stride = max(1, int(round(cfg.window_stride_seconds * cfg.frame_rate)))
        peaks = []
        windows = []
        for start in window_starts(mel.shape[-1], window, stride):
            piece = mel[:, start : start + window]
            peaks.append(float(wav[start * hop : (start + piece.shape[-1]) * hop].abs().max()))
            windows.append(piece)
        keep = [i for i, p in enumerate(peaks) if p > SILENCE_PEAK]
        if not keep:
            raise AudioError("audio is all silent; MuLan has nothing to describe")
        stacked = torch.stack([windows[i] for i in keep])
        return (stacked - stacked.mean(dim=(1, 2), keepdim=True)) / 4.0

    @torch.no_grad()
    def embed_audio_long(self, signals: list[torch.Tensor], window_batch: int = 16) -> torch.Tensor:
        """Signals of any lengths (at ``audio.sample_rate``) -> unit clip embeddings ``[B, embed_dim]``.

        Each clip's embedding is the mean of its windows' unit embeddings, normalised again. Windows of all
        clips are encoded together in batches of ``window_batch`` (windows of one length per batch).
        """
        per_clip = [self.audio_windows(s.to(self.device).float()) for s in signals]
        groups: dict[int, list[tuple[int, int]]] = {}
        for clip, windows in enumerate(per_clip):
            for w in range(windows.shape[0]):
                groups.setdefault(windows.shape[-1], []).append((clip, w))
        out = [torch.zeros(self.config.embed_dim, device=self.device) for _ in per_clip]
        for refs in groups.values():
            for i in range(0, len(refs), window_batch):
                chunk = refs[i : i + window_batch]
                mels = torch.stack([per_clip[c][w] for c, w in chunk])
                emb = F.normalize(self.audio.encode_mel(mels).float(), dim=-1)
                for (clip, _), row in zip(chunk, emb):
                    out[clip] = out[clip] + row
        return F.normalize(torch.stack(out), dim=-1)
