"""``MuLan``: the inference face of the joint music-text embedding and its conditioning-token quantiser.

A model folder holds ``config.yaml`` (a :class:`MuLanConfig`) and ``mulan.safetensors``: fp16 weights of the
audio tower, the text projection (and fine-tuned text layers, if any), the temperature and the fitted
quantiser codebooks. The text backbone stays in its installed package and is not copied. Loading never
unpickles.

Like the codec wrapper, a :class:`MuLan` rounds every weight to fp16 precision when it is built, exactly as
:meth:`MuLan.save` stores it, so a model and the same model saved and loaded again give identical embeddings
and identical tokens.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from musiclm.audio import load_audio, resample
from musiclm.config import from_dict, to_dict
from musiclm.device import resolve_device
from musiclm.errors import AudioError
from musiclm.mulan.config import MuLanConfig, MuLanTrainingConfig
from musiclm.mulan.model import MuLanModel
from musiclm.mulan.quantizer import EmbeddingQuantizer, QuantizerError
from musiclm.mulan.text_tower import check_texts
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
WEIGHTS_FILE = "mulan.safetensors"
QUANTIZER_FILE = RUN_QUANTIZER_FILE  # in a run folder: the quantiser fitted after training
QUANTIZER_REPORT = RUN_QUANTIZER_REPORT
AUDIO_SIDE_PREFIXES = ("model.audio.", "quantizer.")
"""The tensors of a model folder that audio embeddings and audio tokens depend on."""

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


class MuLan:
    """Embed text and audio into MuLan's 128-d space and turn embeddings into conditioning tokens."""

    def __init__(self, model: MuLanModel, quantizer: EmbeddingQuantizer | None = None,
                 device: str | torch.device = "cpu"):
        model = copy.deepcopy(model).cpu().float()
        round_fp16(model)
        self.model = model.eval().requires_grad_(False)
        self.config: MuLanConfig = model.config
        self.quantizer = quantizer
        if quantizer is not None:
            self.quantizer = copy.deepcopy(quantizer).cpu().float()
            round_fp16(self.quantizer)
            self.config = copy.deepcopy(self.config)
            self.config.quantizer.codebook_size = self.quantizer.codebook_size
            self.config.quantizer.num_quantizers = self.quantizer.num_quantizers
        self.source: str | None = None
        self.checkpoint_step: int | None = None  # the training step, when loaded from a run
        self.device = torch.device("cpu")
        self.to(device)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    @property
    def num_quantizers(self) -> int:
        return self.config.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size if self.quantizer is not None else self.config.quantizer.codebook_size

    @property
    def temperature(self) -> float:
        return float(1.0 / self.model.scale())

    def to(self, device: str | torch.device) -> MuLan:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model.to(self.device)
        if self.quantizer is not None:
            self.quantizer.to(self.device)
        return self

    def fingerprint(self) -> str:
        """A short hash of all weights (both towers), the quantiser and the config."""
        return weights_digest(to_dict(self.config), self._state())

    def token_fingerprint(self) -> str:
        """A short hash of what audio embeddings and audio tokens depend on: the audio tower, the embedding
        size and the quantiser. Token stores, embedding caches and generation stages record this one, so a
        MuLan whose text side was retuned (``musiclm mulan tune-text``) keeps them all valid."""
        state = {k: v for k, v in self._state().items() if k.startswith(AUDIO_SIDE_PREFIXES)}
        config = {"audio": to_dict(self.config.audio), "embed_dim": self.config.embed_dim,
                  "quantizer": to_dict(self.config.quantizer)}
        return weights_digest(config, state)

    def matches_fingerprint(self, recorded: str) -> bool:
        """Whether ``recorded`` (from a token store or a stage) names this MuLan's audio side: its
        :meth:`token_fingerprint`, or the whole-model :meth:`fingerprint` that older stores recorded."""
        return recorded == self.token_fingerprint() or recorded == self.fingerprint()

    # --------------------------------------------------------------------------------------- embeddings
    @torch.no_grad()
    def embed_text(self, texts: str | Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Texts -> unit embeddings ``[B, embed_dim]`` (float32, CPU).

        An empty text raises :class:`~musiclm.mulan.text_tower.TextError`; overlong text is truncated with a
        warning. An empty list gives ``[0, embed_dim]``.
        """
        texts = check_texts([texts] if isinstance(texts, str) else list(texts))
        if not texts:
            return torch.zeros(0, self.embed_dim)
        rows = [self.model.encode_text(texts[i : i + batch_size]).float().cpu()
                for i in range(0, len(texts), batch_size)]
        return torch.cat(rows)

    @torch.no_grad()
    def embed_audio(self, wav: AudioInput, sample_rate: int | None = None, window_batch: int = 16) -> torch.Tensor:
        """Audio -> unit embeddings ``[B, embed_dim]`` (float32, CPU): the mean over 10 s windows, 1 s stride.

        ``wav`` is one signal ``[samples]``, a batch ``[B, samples]`` or a list of signals of any lengths, at
        ``sample_rate`` (default: the model's, 24 kHz; other rates are resampled). Silent windows are left out
        of the mean; all-silent, empty or non-finite audio raises :class:`~musiclm.errors.AudioError`.
        """
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        if isinstance(wav, np.ndarray | torch.Tensor):
            array = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
            if array.ndim not in (1, 2):
                raise AudioError(f"expected [samples] or [batch, samples], got shape {array.shape}")
            signals = [array] if array.ndim == 1 else list(array)
        else:
            signals = [s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s) for s in wav]
        prepared = []
        for i, signal in enumerate(signals):
            signal = np.asarray(signal, dtype=np.float32)
            if signal.ndim != 1:
                raise AudioError(f"signal {i}: expected 1-D audio, got shape {signal.shape}")
            if signal.size == 0:
                raise AudioError(f"signal {i}: zero-length audio")
            if rate != self.sample_rate:
                signal = resample(signal, rate, self.sample_rate)
            prepared.append(torch.from_numpy(np.ascontiguousarray(signal)))
        if not prepared:
            return torch.zeros(0, self.embed_dim)
        try:
            return self.model.embed_audio_long(prepared, window_batch=window_batch).float().cpu()
        except AudioError as exc:
            if len(prepared) == 1:
                raise
            raise AudioError(f"one of {len(prepared)} signals: {exc}") from None

    def embed_files(self, paths: Sequence[str | os.PathLike[str]], batch: int = 8) -> torch.Tensor:
        """Audio files -> unit embeddings ``[B, embed_dim]`` (errors name the file)."""
        out = []
        for start in range(0, len(paths), batch):
            signals = []
            for path in paths[start : start + batch]:
                wav, _ = load_audio(path, self.sample_rate)
                signals.append(wav)
            out.append(self.embed_audio(signals))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    # ------------------------------------------------------------------------------------------ tokens
    def tokens(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Unit embeddings ``[B, embed_dim]`` -> conditioning tokens ``[B, num_quantizers]`` (int64)."""
        if self.quantizer is None:
            raise QuantizerError("this MuLan has no fitted quantiser (run `musiclm mulan fit-quantizer RUN` "
                                 "and export again)")
        return self.quantizer.encode(embeddings.to(self.device)).cpu()

    def text_tokens(self, texts: str | Sequence[str]) -> torch.Tensor:
        return self.tokens(self.embed_text(texts))

    def audio_tokens(self, wav: AudioInput, sample_rate: int | None = None) -> torch.Tensor:
        return self.tokens(self.embed_audio(wav, sample_rate))

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> quantised embeddings ``[B, embed_dim]``."""
        if self.quantizer is None:
            raise QuantizerError("this MuLan has no fitted quantiser")
        return self.quantizer.decode(tokens).cpu()

    def with_quantizer(self, quantizer: EmbeddingQuantizer) -> MuLan:
        """A copy of this model with ``quantizer`` attached."""
        out = MuLan(self.model, quantizer, self.device)
        out.source = self.source
        out.checkpoint_step = self.checkpoint_step
        return out

    # -------------------------------------------------------------------------------------------- I/O
    def _state(self) -> dict[str, torch.Tensor]:
        return state_with_quantizer(self.model, self.quantizer)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and fp16 ``mulan.safetensors`` into ``folder`` (atomically, file by file)."""
        return save_with_quantizer(folder, self.model, self.quantizer, self.config, WEIGHTS_FILE, "mulan")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> MuLan:
        """Load a folder written by :meth:`save` (or ``musiclm mulan export``)."""
        model, quantizer = load_with_quantizer(folder, MuLanConfig, MuLanModel, WEIGHTS_FILE, "MuLan model")
        out = cls(model, quantizer, device)
        out.source = str(folder)
        return out

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], prefer_ema: bool = True,
                 device: str | torch.device = "cpu", with_quantizer: bool = True) -> MuLan:
        """The latest checkpoint of a ``musiclm mulan train`` run (EMA weights when present and preferred),
        with the run's fitted quantiser when there is one."""
        run_dir = Path(run_dir)
        config = run_config(run_dir)
        checkpoint = CheckpointManager(run_dir).latest()
        if checkpoint is None:
            raise CheckpointError(f"{run_dir}: no complete checkpoint")
        model = MuLanModel(config.model)
        ema = checkpoint.path / "ema-mulan.safetensors"
        path = ema if prefer_ema and ema.exists() else checkpoint.path / "model-mulan.safetensors"
        load_weights(model, path)
        quantizer = load_run_quantizer(run_dir, checkpoint.step, "musiclm mulan fit-quantizer") if with_quantizer \
            else None
        out = cls(model, quantizer, device)
        out.source = str(path)
        out.checkpoint_step = int(checkpoint.step)
        return out



def run_config(run_dir: str | os.PathLike[str]) -> MuLanTrainingConfig:
    """The training config stored in a run's latest checkpoint."""
    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint (is this a `musiclm mulan train` run folder?)")
    recipe = checkpoint.state().get("recipe_config", {})
    if "config" not in recipe:
        raise CheckpointError(f"{checkpoint.path}: not a MuLan checkpoint (no recipe config)")
    return from_dict(MuLanTrainingConfig, recipe["config"])




