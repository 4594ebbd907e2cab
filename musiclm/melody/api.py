"""``MelodyModel``: the inference face of the melody embedding model and its melody-token quantiser.

A model folder holds ``config.yaml`` (a :class:`~musiclm.melody.config.MelodyConfig`) and
``melody.safetensors``: fp16 weights of the network and the fitted residual quantiser's codebooks. Loading
never unpickles. Like the other wrappers, a :class:`MelodyModel` rounds its weights to fp16 precision when
it is built, exactly as :meth:`MelodyModel.save` stores them, so a model and the same model saved and loaded
again give identical embeddings and identical tokens.

Windows: a melody is embedded in windows of ``window_seconds`` (4 s) starting every ``hop_seconds`` (3 s).
A trailing window is kept when at least half of it is real audio (the rest is zero-padded), so 8 s give
3 windows (0-4, 3-7, 6-10 s) and 10 s give 3 (0-4, 3-7, 6-10 s); :meth:`MelodyModel.num_windows` says how
many a length gives. A melody shorter than one window is *looped* (repeated from its start) to fill exactly
one window, so a 2.5 s hum gives one embedding of the hum heard about twice; melodies shorter than
``min_seconds`` (1 s) are refused.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from musiclm.audio import SILENCE_PEAK, load_audio, resample
from musiclm.config import from_dict, to_dict
from musiclm.device import resolve_device
from musiclm.errors import AudioError
from musiclm.melody.config import MelodyConfig, MelodyTrainingConfig
from musiclm.melody.model import MelodyEmbedder, window_count
from musiclm.mulan.quantizer import EmbeddingQuantizer, QuantizerError
from musiclm.train.checkpoint import CheckpointError, CheckpointManager, load_weights
from musiclm.weights import (
    RUN_QUANTIZER_FILE,
    RUN_QUANTIZER_REPORT,
    load_run_quantizer,
    load_with_quantizer,
    round_fp16,
    save_with_quantizer,
    state_with_quantizer,
    weights_digest,
)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "melody.safetensors"
QUANTIZER_FILE = RUN_QUANTIZER_FILE  # in a run folder: the quantiser fitted after training
QUANTIZER_REPORT = RUN_QUANTIZER_REPORT

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


class MelodyModel:
    """Embed melodies into 192-d unit vectors per 4 s window and turn them into melody tokens."""

    def __init__(self, model: MelodyEmbedder, quantizer: EmbeddingQuantizer | None = None,
                 device: str | torch.device = "cpu"):
        model = copy.deepcopy(model).cpu().float()
        round_fp16(model)
        self.model = model.eval().requires_grad_(False)
        self.config: MelodyConfig = model.config
        self.quantizer = None
        if quantizer is not None:
            if quantizer.codebooks.shape[2] != self.config.embed_dim:
                raise QuantizerError(f"the quantiser is for {quantizer.codebooks.shape[2]}-d embeddings, the model "
                                     f"makes {self.config.embed_dim}-d ones")
            self.quantizer = copy.deepcopy(quantizer).cpu().float()
            round_fp16(self.quantizer)
            self.config = copy.deepcopy(self.config)
            self.config.quantizer.num_quantizers = self.quantizer.num_quantizers
            self.config.quantizer.codebook_size = self.quantizer.codebook_size
        self.source: str | None = None
        self.checkpoint_step: int | None = None  # the training step, when loaded from a run
        self.device = torch.device("cpu")
        self.to(device)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def sample_rate(self) -> int:
        return self.config.frontend.sample_rate

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def window_seconds(self) -> float:
        return self.config.window_seconds

    @property
    def hop_seconds(self) -> float:
        return self.config.hop_seconds

    @property
    def num_quantizers(self) -> int:
        return self.config.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size if self.quantizer is not None else self.config.quantizer.codebook_size

    def num_windows(self, seconds: float) -> int:
        """Windows (embeddings, token rows) that ``seconds`` of audio give."""
        samples = max(int(round(seconds * self.sample_rate)), self.config.window_samples)
        return window_count(samples, self.config)

    def to(self, device: str | torch.device) -> MelodyModel:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model.to(self.device)
        if self.quantizer is not None:
            self.quantizer.to(self.device)
        return self

    def fingerprint(self) -> str:
        """A short hash of the weights, the quantiser and the config (keys token caches)."""
        return weights_digest(to_dict(self.config), self._state())

    # -------------------------------------------------------------------------------------- embeddings
    def _prepare(self, wav: AudioInput, sample_rate: int | None) -> list[torch.Tensor]:
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        if rate <= 0:
            raise AudioError(f"sample rate must be positive, got {rate}")
        if isinstance(wav, np.ndarray | torch.Tensor):
            array = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
            if array.ndim not in (1, 2):
                raise AudioError(f"expected melody audio [samples] or [batch, samples], got shape {array.shape}")
            signals = [array] if array.ndim == 1 else list(array)
        else:
            signals = [s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s) for s in wav]
        prepared = []
        for i, signal in enumerate(signals):
            name = "melody" if len(signals) == 1 else f"melody {i}"
            signal = np.asarray(signal, dtype=np.float32)
            if signal.ndim != 1:
                raise AudioError(f"{name}: expected 1-D audio, got shape {signal.shape}")
            if signal.size == 0:
                raise AudioError(f"{name}: zero-length audio")
            if not np.isfinite(signal).all():
                raise AudioError(f"{name}: audio contains NaN or infinite samples")
            if float(np.abs(signal).max()) <= SILENCE_PEAK:
                raise AudioError(f"{name}: audio is all silent")
            seconds = signal.size / rate
            if seconds < self.config.min_seconds:
                raise AudioError(f"{name}: {seconds:.2f} s is too short for a melody (at least "
                                 f"{self.config.min_seconds:g} s)")
            if rate != self.sample_rate:
                signal = resample(signal, rate, self.sample_rate)
            window = self.config.window_samples
            if signal.size < window:  # loop a short melody to fill one window
                signal = np.tile(signal, -(-window // signal.size))[:window]
            prepared.append(torch.from_numpy(np.ascontiguousarray(signal)))
        return prepared

    @torch.no_grad()
    def embed(self, wav: AudioInput, sample_rate: int | None = None, window_batch: int = 64) -> torch.Tensor:
        """Melody audio -> unit window embeddings ``[B, windows, embed_dim]`` (float32, CPU).

        ``wav`` is one signal ``[samples]``, a batch ``[B, samples]`` or a list of signals at ``sample_rate``
        (default: the model's, 24 kHz; other rates are resampled). Signals in one call must give the same
        number of windows. Empty, non-finite, all-silent or too short audio raises
        :class:`~musiclm.errors.AudioError`.
        """
        signals = self._prepare(wav, sample_rate)
        if not signals:
            return torch.zeros(0, 0, self.embed_dim)
        counts = [window_count(len(s), self.config) for s in signals]
        if len(set(counts)) > 1:
            raise AudioError(f"these melodies give different numbers of windows ({sorted(set(counts))}); "
                             "embed them one call each")
        count = counts[0]
        need = (count - 1) * self.config.hop_samples + self.config.window_samples
        batch = torch.zeros(len(signals), max(need, max(len(s) for s in signals)))
        for i, signal in enumerate(signals):
            batch[i, : len(signal)] = signal
        db = self.model.features(batch.to(self.device))
        windows = torch.cat([self.model.windows(row, count) for row in db])
        emb = torch.cat([self.model.embed_features(windows[i : i + window_batch])
                         for i in range(0, len(windows), window_batch)])
        return emb.float().cpu().view(len(signals), count, self.embed_dim)

    def embed_file(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """A melody file -> ``[1, windows, embed_dim]``; errors name the file."""
        wav, _ = load_audio(path, self.sample_rate)
        try:
            return self.embed(wav)
        except AudioError as exc:
            raise AudioError(f"{path}: {exc}") from None

    # ------------------------------------------------------------------------------------------ tokens
    def _require_quantizer(self) -> EmbeddingQuantizer:
        if self.quantizer is None:
            raise QuantizerError("this melody model has no fitted quantiser (run `musiclm melody fit-quantizer RUN` "
                                 "and export again)")
        return self.quantizer

    def tokens_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Window embeddings ``[..., embed_dim]`` -> melody tokens ``[..., num_quantizers]`` (int64)."""
        quantizer = self._require_quantizer()
        if embeddings.shape[-1] != self.embed_dim:
            raise QuantizerError(f"expected embeddings [..., {self.embed_dim}], got {tuple(embeddings.shape)}")
        flat = embeddings.reshape(-1, self.embed_dim).to(self.device)
        tokens = quantizer.encode(flat) if len(flat) else torch.zeros(0, self.num_quantizers, dtype=torch.long)
        return tokens.cpu().view(*embeddings.shape[:-1], self.num_quantizers)

    def tokens(self, wav: AudioInput, sample_rate: int | None = None) -> torch.Tensor:
        """Melody audio -> tokens ``[B, windows, num_quantizers]`` (int64 in ``[0, codebook_size)``)."""
        self._require_quantizer()
        return self.tokens_from_embeddings(self.embed(wav, sample_rate))

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[..., levels]`` -> quantised embeddings ``[..., embed_dim]`` (sum of the chosen codewords)."""
        quantizer = self._require_quantizer()
        flat = tokens.reshape(-1, tokens.shape[-1])
        return quantizer.decode(flat).cpu().view(*tokens.shape[:-1], self.embed_dim)

    def with_quantizer(self, quantizer: EmbeddingQuantizer) -> MelodyModel:
        """A copy of this model with ``quantizer`` attached."""
        out = MelodyModel(self.model, quantizer, self.device)
        out.source = self.source
        out.checkpoint_step = self.checkpoint_step
        return out

    # -------------------------------------------------------------------------------------------- I/O
    def _state(self) -> dict[str, torch.Tensor]:
        return state_with_quantizer(self.model, self.quantizer)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and fp16 ``melody.safetensors`` into ``folder`` (atomically, file by file)."""
        return save_with_quantizer(folder, self.model, self.quantizer, self.config, WEIGHTS_FILE, "melody")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> MelodyModel:
        """Load a folder written by :meth:`save` (or ``musiclm melody export``)."""
        model, quantizer = load_with_quantizer(folder, MelodyConfig, MelodyEmbedder, WEIGHTS_FILE, "melody model")
        out = cls(model, quantizer, device)
        out.source = str(folder)
        return out

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], prefer_ema: bool = True, device: str | torch.device = "cpu",
                 with_quantizer: bool = True) -> MelodyModel:
        """The latest checkpoint of a ``musiclm melody train`` run (EMA weights when present and preferred),
        with the run's fitted quantiser when there is one."""
        run_dir = Path(run_dir)
        config = run_config(run_dir)
        checkpoint = CheckpointManager(run_dir).latest()
        assert checkpoint is not None  # run_config checked it
        model = MelodyEmbedder(config.model)
        ema = checkpoint.path / "ema-melody.safetensors"
        path = ema if prefer_ema and ema.exists() else checkpoint.path / "model-melody.safetensors"
        load_weights(model, path)
        quantizer = load_run_quantizer(run_dir, checkpoint.step, "musiclm melody fit-quantizer") if with_quantizer \
            else None
        out = cls(model, quantizer, device)
        out.source = str(path)
        out.checkpoint_step = int(checkpoint.step)
        return out



def run_config(run_dir: str | os.PathLike[str]) -> MelodyTrainingConfig:
    """The training config stored in a run's latest checkpoint."""
    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint (is this a `musiclm melody train` run folder?)")
    recipe = checkpoint.state().get("recipe_config", {})
    if checkpoint.state().get("recipe") != "MelodyRecipe" or "config" not in recipe:
        raise CheckpointError(f"{checkpoint.path}: not a melody-model checkpoint")
    return from_dict(MelodyTrainingConfig, recipe["config"])



