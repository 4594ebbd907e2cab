"""``SemanticTokenizer``: audio -> semantic tokens at exactly 25 per second (MusicLM's first-stage vocabulary).

The tokens are the nearest k-means centroid of each frame's features at one intermediate layer of the
self-supervised model (:mod:`musiclm.semantic.model`). A tokenizer folder holds ``config.yaml`` (a
:class:`SemanticTokenizerConfig`) and ``semantic.safetensors`` (fp16 weights of the first ``layer`` blocks and
the ``kmeans.centroids``); loading never unpickles.

Token count (the one rule every caller can rely on): audio of ``T`` samples at rate ``sr`` gives
``ceil(25 * T / sr)`` tokens, i.e. ``ceil(T / 960)`` at 24 kHz. Token ``i`` describes the 40 ms starting at
``i / 25`` seconds. Other rates are resampled to 24 kHz first.

Inputs: ``[T]`` or ``[B, T]`` numpy arrays or tensors (with optional per-item ``lengths`` in samples; padded
positions of the output are ``PAD_TOKEN``), or a list of 1-D signals of any lengths. Float audio is taken as
is (full scale = 1.0); integer PCM arrays are scaled to full scale = 1.0. Empty or non-finite
audio raises :class:`~musiclm.errors.AudioError`; silence is valid music and gets ordinary tokens. Inputs
longer than ``chunk_seconds`` are tokenized in windows of that length with ``context_seconds`` of context
on each side (attention cost stays linear in the duration); windows are placed on a fixed grid from the
start and every layer ignores padding, so a padded batch gives the same tokens as its items one by one (the
features agree to float rounding, about 1e-6).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from musiclm import __version__
from musiclm.audio import load_audio, resample
from musiclm.config import load_yaml, save_yaml
from musiclm.device import resolve_device
from musiclm.errors import AudioError, MusicLMError
from musiclm.fileio import atomic_path
from musiclm.semantic.config import SemanticModelConfig
from musiclm.semantic.io import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS
from musiclm.semantic.model import SemanticModel, truncate
from musiclm.semantic.targets import fit_kmeans, nearest_centroid, subsample_rows
from musiclm.train.checkpoint import CheckpointError, read_safetensors

log = logging.getLogger("musiclm.semantic")

PAD_TOKEN = -1
"""Output value at frames beyond an item's length in a padded batch."""

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


@dataclass
class SemanticTokenizerConfig:
    """What a tokenizer folder's ``config.yaml`` holds."""

    model: SemanticModelConfig = field(default_factory=SemanticModelConfig)  # num_layers == layer
    layer: int = 4
    num_clusters: int = 512
    chunk_seconds: float = 30.0
    context_seconds: float = 5.0
    source: str = ""  # where the weights came from (run folder and step)

    def validate(self) -> None:
        if self.layer != self.model.num_layers:
            raise MusicLMError(f"tokenizer layer {self.layer} must equal model.num_layers {self.model.num_layers}")
        if self.num_clusters < 2 or self.chunk_seconds <= 0 or self.context_seconds < 0:
            raise MusicLMError("need num_clusters >= 2, chunk_seconds > 0 and context_seconds >= 0")


def token_count(samples: int, sample_rate: int, token_rate: int = 25) -> int:
    """``ceil(token_rate * samples / sample_rate)``, in exact integer arithmetic."""
    if samples < 0 or sample_rate <= 0:
        raise ValueError("samples must be >= 0 and sample_rate > 0")
    return -(-int(samples) * token_rate // int(sample_rate))


def round_to_fp16(model: torch.nn.Module) -> torch.nn.Module:
    """Round every float parameter and buffer to fp16 precision in place (kept as fp32), as saved."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


class SemanticTokenizer:
    """The first ``layer`` blocks of a trained semantic model plus ``K`` k-means centroids of that layer.

    Built from a model, the tokenizer keeps its own truncated copy with every weight (and the centroids)
    rounded to fp16 precision, exactly as :meth:`save` stores them, so a tokenizer and the same tokenizer
    saved and loaded again give identical tokens. Computation is fp32 on the chosen device.
    """

    def __init__(self, model: SemanticModel, centroids: torch.Tensor, layer: int, chunk_seconds: float = 30.0,
                 context_seconds: float = 5.0, device: str | torch.device = "cpu", source: str = ""):
        if centroids.dim() != 2 or centroids.shape[1] != model.config.d_model:
            raise MusicLMError(f"centroids must be [K, {model.config.d_model}], got {tuple(centroids.shape)}")
        encoder = truncate(copy.deepcopy(model).cpu().float(), layer)
        self.model = round_to_fp16(encoder).eval().requires_grad_(False)
        self.centroids = centroids.detach().cpu().half().float()
        self.config = SemanticTokenizerConfig(model=self.model.config, layer=layer,
                                              num_clusters=int(centroids.shape[0]), chunk_seconds=chunk_seconds,
                                              context_seconds=context_seconds, source=source)
        self.config.validate()
        self.device = torch.device("cpu")
        self.to(device)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    @property
    def frame_hop(self) -> int:
        return self.model.config.frame_hop

    @property
    def token_rate(self) -> int:
        return self.sample_rate // self.frame_hop

    @property
    def num_clusters(self) -> int:
        return self.config.num_clusters

    @property
    def layer(self) -> int:
        return self.config.layer

    def num_tokens(self, samples: int, sample_rate: int | None = None) -> int:
        """Tokens for ``samples`` samples at ``sample_rate`` (default 24 kHz): ``ceil(25 * samples / rate)``."""
        return token_count(samples, sample_rate or self.sample_rate, self.token_rate)

    def to(self, device: str | torch.device) -> SemanticTokenizer:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model.to(self.device)
        self.centroids = self.centroids.to(self.device)
        return self

    # ------------------------------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and fp16 ``semantic.safetensors`` (weights + ``kmeans.centroids``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
                   for k, v in self.model.state_dict().items()}
        tensors["kmeans.centroids"] = self.centroids.detach().cpu().half().contiguous()
        meta = {"format": "musiclm-semantic-tokenizer", "musiclm_version": __version__,
                "layer": str(self.layer), "num_clusters": str(self.num_clusters)}
        with atomic_path(folder / TOKENIZER_WEIGHTS) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        save_yaml(self.config, folder / TOKENIZER_CONFIG)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu"
                        ) -> SemanticTokenizer:
        """Load a folder written by :meth:`save` (or ``musiclm semantic export``)."""
        folder = Path(folder)
        if not (folder / TOKENIZER_CONFIG).exists() or not (folder / TOKENIZER_WEIGHTS).exists():
            raise MusicLMError(f"{folder}: not a semantic tokenizer folder (needs {TOKENIZER_CONFIG} and "
                               f"{TOKENIZER_WEIGHTS}; make one with `musiclm semantic export RUN -o DIR`)")
        config = load_yaml(SemanticTokenizerConfig, folder / TOKENIZER_CONFIG)
        try:
            config.validate()
        except MusicLMError as exc:
            raise MusicLMError(f"{folder / TOKENIZER_CONFIG}: {exc}") from None
        tensors = read_safetensors(folder / TOKENIZER_WEIGHTS)
        centroids = tensors.pop("kmeans.centroids", None)
        if centroids is None or tuple(centroids.shape) != (config.num_clusters, config.model.d_model):
            raise CheckpointError(f"{folder / TOKENIZER_WEIGHTS}: missing or misshapen kmeans.centroids")
        model = SemanticModel(config.model, heads=False)
        own = model.state_dict()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            raise CheckpointError(f"{folder / TOKENIZER_WEIGHTS}: does not fit {TOKENIZER_CONFIG} (missing "
                                  f"{missing[:4]}, unexpected {unexpected[:4]}, wrong shape {wrong[:4]})")
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
        return cls(model, centroids.float(), config.layer, config.chunk_seconds, config.context_seconds, device,
                   config.source)

    # ------------------------------------------------------------------------------------------ input
    def _prepare(self, wav: AudioInput, sample_rate: int | None, lengths: Sequence[int] | torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """-> (``[B, max_frames * hop]`` float32 audio at 24 kHz, zero beyond each item; lengths; frames)."""
        rate = int(sample_rate or self.sample_rate)
        if rate <= 0:
            raise AudioError(f"sample_rate must be positive, got {rate}")
        if isinstance(wav, list | tuple):
            if lengths is not None:
                raise MusicLMError("lengths is implied by a list of signals; pass one or the other")
            items = [_as_float_array(w) for w in wav]
            if not items:
                raise AudioError("no audio given (empty list)")
            if any(w.ndim != 1 for w in items):
                raise AudioError("a list input must hold 1-D signals [samples]")
        else:
            array = _as_float_array(wav)
            if array.ndim == 1:
                array = array[None, :]
            if array.ndim != 2:
                raise AudioError(f"expected audio shaped [samples] or [batch, samples], got {tuple(array.shape)}")
            if array.shape[0] == 0:
                raise AudioError("no audio given (batch of size 0)")
            if lengths is None:
                items = list(array)
            else:
                counts = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
                if len(counts) != array.shape[0] or any(n < 0 or n > array.shape[1] for n in counts):
                    raise MusicLMError(f"lengths must give one count within [0, {array.shape[1]}] per item")
                items = [row[:n] for row, n in zip(array, counts)]
        for index, item in enumerate(items):
            if item.shape[-1] == 0:
                raise AudioError(f"zero-length audio (item {index})")
            if not np.isfinite(item).all():
                raise AudioError(f"audio contains NaN or infinite samples (item {index})")
        frames = [self.num_tokens(item.shape[-1], rate) for item in items]
        hop = self.frame_hop
        if rate != self.sample_rate:
            converted = []
            for item, n in zip(items, frames):
                out = resample(item, rate, self.sample_rate)[: n * hop]
                converted.append(out)
            items = converted
        # Samples that count, at 24 kHz: ceil(length / hop) must give back the token count.
        counts = [min(max(item.shape[-1], (n - 1) * hop + 1), n * hop) for item, n in zip(items, frames)]
        batch = np.zeros((len(items), max(frames) * hop), dtype=np.float32)
        for row, (item, count) in enumerate(zip(items, counts)):
            batch[row, : min(count, item.shape[-1])] = item[:count]
        return (torch.from_numpy(batch).to(self.device), torch.tensor(counts, device=self.device), frames)

    # ------------------------------------------------------------------------------------------ tokens
    @torch.inference_mode()
    def _layer_features(self, audio: torch.Tensor, counts: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """``[B, max_frames, D]`` features of the tokenizer layer, windowed for long inputs."""
        hop = self.frame_hop
        total = max(frames)
        chunk = max(1, round(self.config.chunk_seconds * self.token_rate))
        context = max(0, round(self.config.context_seconds * self.token_rate))
        if total <= chunk:
            states, _ = self.model.hidden_states(audio, counts, max_layer=self.layer)
            return states[self.layer]
        out = audio.new_zeros(audio.shape[0], total, self.model.config.d_model)
        frame_counts = torch.tensor(frames, device=audio.device)
        for start in range(0, total, chunk):
            rows = torch.nonzero(frame_counts > start).flatten()
            begin, end = max(0, start - context), min(total, start + chunk + context)
            window = audio[rows, begin * hop : end * hop]
            window_counts = (counts[rows] - begin * hop).clamp(min=1, max=(end - begin) * hop)
            states, _ = self.model.hidden_states(window, window_counts, max_layer=self.layer)
            keep = min(chunk, total - start)
            out[rows, start : start + keep] = states[self.layer][:, start - begin : start - begin + keep]
        return out

    @torch.inference_mode()
    def features(self, wav: AudioInput, sample_rate: int | None = None,
                 lengths: Sequence[int] | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer features ``[B, frames, D]`` (float32) and the ``[B, frames]`` validity mask."""
        audio, counts, frames = self._prepare(wav, sample_rate, lengths)
        feats = self._layer_features(audio, counts, frames)
        counts_per_item = torch.tensor(frames, device=feats.device)
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < counts_per_item[:, None]
        return feats, valid

    @torch.inference_mode()
    def tokenize(self, wav: AudioInput, sample_rate: int | None = None,
                 lengths: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``[B, max_frames]`` (int64 in ``[0, K)``; ``PAD_TOKEN`` beyond each item's length).

        ``wav``: ``[T]`` / ``[B, T]`` array or tensor (``lengths``: valid samples per item) or a list of 1-D
        signals. ``sample_rate`` defaults to 24 kHz. A 1-D input gives ``[1, frames]``.
        """
        feats, valid = self.features(wav, sample_rate, lengths)
        tokens = nearest_centroid(feats, self.centroids)
        return torch.where(valid, tokens, torch.full_like(tokens, PAD_TOKEN))

    def tokenize_many(self, signals: Sequence[np.ndarray | torch.Tensor], sample_rate: int | None = None,
                      batch_size: int = 8) -> list[torch.Tensor]:
        """One 1-D token tensor per signal (batched ``batch_size`` at a time, padding removed)."""
        out: list[torch.Tensor] = []
        for start in range(0, len(signals), batch_size):
            group = list(signals[start : start + batch_size])
            tokens = self.tokenize(group, sample_rate)
            for row, signal in zip(tokens, group):
                out.append(row[: self.num_tokens(_as_float_array(signal).shape[-1], sample_rate)].cpu())
        return out

    def tokenize_file(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """Tokens ``[frames]`` of an audio file (decoded, downmixed, resampled; silence allowed)."""
        wav, rate = load_audio(path, sample_rate=None, allow_silent=True)
        return self.tokenize(wav, rate)[0]


def _as_float_array(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        return wav.detach().float().cpu().numpy()
    array = np.asarray(wav)
    if np.issubdtype(array.dtype, np.integer):  # PCM: full scale maps to [-1, 1)
        return array.astype(np.float32) / float(-np.iinfo(array.dtype).min)
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"audio must be numeric, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------- k-means
@torch.inference_mode()
def layer_features(model: SemanticModel, clips: Iterable[torch.Tensor], layer: int,
                   device: str | torch.device = "cpu") -> list[np.ndarray]:
    """``[frames, D]`` features of layer ``layer`` for each ``[T]`` clip (whole clips, one at a time)."""
    model = model.to(device).eval()
    out = []
    for wav in clips:
        states, _ = model.hidden_states(wav.to(device).float().unsqueeze(0), max_layer=layer)
        out.append(states[layer][0].float().cpu().numpy())
    return out


def fit_token_kmeans(model: SemanticModel, clips: Iterable[torch.Tensor], layer: int, clusters: int,
                     max_frames: int = 200_000, seed: int = 0, batch_size: int = 4096,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """``[clusters, D]`` centroids of layer ``layer`` features (of the fp16-rounded encoder) over ``clips``."""
    encoder = round_to_fp16(truncate(copy.deepcopy(model).cpu().float(), layer))
    feats = layer_features(encoder, clips, layer, device)
    if not feats:
        raise MusicLMError("no clips to fit the token k-means on")
    data = subsample_rows(np.concatenate(feats), max_frames, seed)
    log.info("fitting %d token clusters on %d frames of layer %d (%d clips)", clusters, data.shape[0], layer,
             len(feats))
    return torch.from_numpy(fit_kmeans(data, clusters, seed, batch_size))
