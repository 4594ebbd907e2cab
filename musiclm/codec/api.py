"""``Codec``: the inference face of SoundStream (audio <-> acoustic tokens), loaded from fp16 safetensors.

A model folder holds ``config.yaml`` (a :class:`CodecConfig`) and ``codec.safetensors`` (fp16 weights with
weight normalisation folded in; training-only codebook statistics left out). Loading never unpickles.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn.utils import parametrize

from musiclm import __version__
from musiclm.audio import resample, validate_audio
from musiclm.codec.config import SPECTRAL_FIELDS, CodecConfig, CodecTrainingConfig
from musiclm.codec.model import SoundStream, folded_state_dict, remove_weight_norm
from musiclm.config import from_dict, load_yaml, save_yaml, to_dict
from musiclm.device import resolve_device
from musiclm.errors import AudioError, MusicLMError
from musiclm.fileio import atomic_path
from musiclm.train.checkpoint import CheckpointError, CheckpointManager, load_weights, read_safetensors
from musiclm.weights import weights_digest

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "codec.safetensors"
_TRAINING_ONLY = ("embed_avg", "cluster_size", "init_reservoir", "init_count", "warmup_batches_seen",
                  "unused_steps")
DEFAULT_CHUNK_SECONDS = 30.0
TOKEN_SIDE_PREFIXES = ("encoder.", "quantizer.")
DECODER_ONLY_FIELDS = ("decoder_channels",)

AudioInput = np.ndarray | torch.Tensor


def _inference_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a saved codec holds: weight normalisation folded in, training-only statistics left out."""
    return {k: v for k, v in folded_state_dict(model).items() if k.rsplit(".", 1)[-1] not in _TRAINING_ONLY}


def _fingerprint_config(config: CodecConfig) -> dict[str, Any]:
    """The config as fingerprints hash it: a SEANet codec leaves out the spectral architecture's fields, so
    its fingerprints are those recorded before the fields existed."""
    fields = to_dict(config)
    if config.architecture == "seanet":
        fields = {k: v for k, v in fields.items() if k not in SPECTRAL_FIELDS}
    return fields


def read_exported_weights(folder: str | os.PathLike[str]) -> tuple[CodecConfig, dict[str, torch.Tensor]]:
    """The config and float32 weights of an exported codec folder (weight normalisation folded in)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).exists() or not (folder / WEIGHTS_FILE).exists():
        raise MusicLMError(f"{folder}: not a codec model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
                           f"make one with `musiclm codec export RUN -o DIR`)")
    config = load_yaml(CodecConfig, folder / CONFIG_FILE)
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    return config, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _check_fits(model: SoundStream, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise unless ``tensors`` are exactly the saved weights of ``model`` (with or without weight norm)."""
    own = _inference_state(model)
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{where}: does not fit {CONFIG_FILE} (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}, wrong shape {wrong[:4]})")


@torch.no_grad()
def initialise_from_export(model: SoundStream, folder: str | os.PathLike[str]) -> None:
    """Load an exported codec's weights into a training ``model`` (weight-normalised convolutions get the
    weight's norm and direction back), so a run can fine-tune it; the configs must agree."""
    config, tensors = read_exported_weights(folder)
    if to_dict(config) != to_dict(model.config):
        raise CheckpointError(f"init_from {folder}: its config differs from this run's model config "
                              f"(start the run with `--config {Path(folder) / CONFIG_FILE}` or the same --set)")
    _check_fits(model, tensors, str(Path(folder) / WEIGHTS_FILE))
    plain = {}
    for key, value in tensors.items():
        owner_name, _, leaf = key.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        if leaf == "weight" and parametrize.is_parametrized(owner, "weight"):
            owner.weight = value  # weight norm's right inverse: g = |w|, v = w
        else:
            plain[key] = value
    model.load_state_dict(plain, strict=False)


class Codec:
    """Encode audio to RVQ codes ``[B, levels, frames]`` (int64 in ``[0, codebook_size)``) and back.

    Built from a trained :class:`SoundStream`, the wrapper keeps its own copy with weight normalisation
    folded and every weight rounded to fp16 precision, exactly as :meth:`save` stores it, so a codec and
    the same codec saved and loaded again give identical codes.
    """

    def __init__(self, model: SoundStream, device: str | torch.device = "cpu"):
        plain = remove_weight_norm(SoundStream(model.config))
        plain.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                               for k, v in folded_state_dict(model).items()})
        model = plain
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
            model.quantizer.initialized.fill_(True)
        self.model = model.eval().requires_grad_(False)
        self.source: str | None = None  # where the weights came from, when known
        self.device = torch.device("cpu")
        self.to(device)

    # --------------------------------------------------------------------------------------- facts
    @property
    def config(self) -> CodecConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def levels_for(self, bitrate: float | None = None, levels: int | None = None) -> int:
        """RVQ levels for ``bitrate`` kbps (1.5/3/6 -> 3/6/12) or an explicit ``levels``."""
        if levels is not None:
            if not 1 <= levels <= self.num_quantizers:
                raise MusicLMError(f"levels must be within [1, {self.num_quantizers}], got {levels}")
            return levels
        if bitrate is None:
            return self.num_quantizers
        return self.config.levels_for_bitrate(bitrate)

    def to(self, device: str | torch.device) -> Codec:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model.to(self.device)
        return self

    # -------------------------------------------------------------------------------------- fingerprints
    def fingerprint(self) -> str:
        """A short hash of the whole codec: config and weights (the same before and after save/load)."""
        return weights_digest(_fingerprint_config(self.config), _inference_state(self.model))

    def token_fingerprint(self) -> str:
        """A short hash of what the codes depend on: the encoder, the quantiser and their config. Token
        stores and acoustic stages record this one, so a codec whose decoder was retrained
        (``decoder_only``) keeps them all valid."""
        state = {k: v for k, v in _inference_state(self.model).items() if k.startswith(TOKEN_SIDE_PREFIXES)}
        config = {k: v for k, v in _fingerprint_config(self.config).items() if k not in DECODER_ONLY_FIELDS}
        return weights_digest(config, state)

    def matches_fingerprint(self, recorded: str) -> bool:
        """Whether ``recorded`` (from a token store or a stage) names this codec's codes: its
        :meth:`token_fingerprint`, or the whole-codec :meth:`fingerprint` that older stores recorded."""
        return recorded == self.token_fingerprint() or recorded == self.fingerprint()

    # --------------------------------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and fp16 ``codec.safetensors`` into ``folder`` (atomically, each)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
                   for k, v in _inference_state(self.model).items()}
        meta = {"format": "musiclm-codec", "musiclm_version": __version__}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        save_yaml(self.config, folder / CONFIG_FILE)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> Codec:
        """Load a folder written by :meth:`save` (or ``musiclm codec export``)."""
        config, tensors = read_exported_weights(folder)
        model = remove_weight_norm(SoundStream(config))
        _check_fits(model, tensors, str(Path(folder) / WEIGHTS_FILE))
        model.load_state_dict(tensors, strict=False)
        return cls(model, device)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], device: str | torch.device = "cpu",
                 prefer_ema: bool = True) -> Codec:
        """The latest checkpoint of a training run: its EMA weights when present and ``prefer_ema`` (with the
        raw run's codebooks), else the raw weights."""
        checkpoint = CheckpointManager(run_dir).latest()
        if checkpoint is None:
            raise CheckpointError(f"{run_dir}: no checkpoint found (is this a `musiclm codec train` run folder?)")
        state = checkpoint.state()
        recipe_config = dict(state.get("recipe_config") or {})
        if "model" not in recipe_config:
            raise CheckpointError(f"{checkpoint.path}: not a codec training checkpoint (no model config)")
        recipe_config.pop("corpora", None)
        config = from_dict(CodecTrainingConfig, recipe_config)
        model = SoundStream(config.model)
        raw = checkpoint.path / "model-codec.safetensors"
        ema = checkpoint.path / "ema-codec.safetensors"
        model_file = ema if prefer_ema and ema.exists() else raw
        load_weights(model, model_file)
        if model_file == ema:
            # weight-averaged codebooks are no codebooks (the average of a re-seeded code and its successor is
            # no code at all), and codebooks are running averages of the latents already: use the raw ones
            quantizer_state = SoundStream(config.model)
            load_weights(quantizer_state, raw)
            model.quantizer.load_state_dict(quantizer_state.quantizer.state_dict())
        codec = cls(model, device)
        codec.source = f"{model_file} (step {checkpoint.step})"
        return codec

    # ------------------------------------------------------------------------------------ encoding
    def _prepare(self, wav: AudioInput, sample_rate: int | None) -> torch.Tensor:
        """[T] / [B, T] / [B, C, T] audio at any rate -> float32 [B, T] at the codec rate on its device."""
        if isinstance(wav, torch.Tensor):
            array = wav.detach().float().cpu().numpy() if (sample_rate not in (None, self.sample_rate)) else None
            tensor = wav.detach().float()
        else:
            array = np.asarray(wav, dtype=np.float32)
            tensor = None
        source = array if array is not None else tensor
        if source.ndim not in (1, 2, 3):
            raise AudioError(f"expected audio shaped [samples], [batch, samples] or [batch, channels, samples], "
                             f"got {tuple(source.shape)}")
        if source.shape[-1] == 0 or math.prod(source.shape) == 0:
            raise AudioError("zero-length audio")
        if array is not None:
            validate_audio(array, allow_silent=True)
            if array.ndim == 3:
                array = array.mean(axis=1)
            if sample_rate not in (None, self.sample_rate):
                array = resample(array, int(sample_rate), self.sample_rate)
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        else:
            if not torch.isfinite(tensor).all():
                raise AudioError("audio contains NaN or infinite samples")
            if tensor.dim() == 3:
                tensor = tensor.mean(dim=1)
        if tensor.dim() == 1:
            tensor = tensor.unsqueeze(0)
        return tensor.to(self.device)

    def resampled_length(self, samples: int, sample_rate: int | None) -> int:
        """Samples at the codec rate that ``samples`` at ``sample_rate`` become."""
        if sample_rate in (None, self.sample_rate):
            return samples
        return int(round(samples * self.sample_rate / sample_rate))

    def _context_frames(self) -> int:
        return self.model.receptive_field_frames()

    @torch.inference_mode()
    def encode(self, wav: AudioInput, sample_rate: int | None = None, bitrate: float | None = 6.0,
               levels: int | None = None, chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> torch.Tensor:
        """Codes ``[B, levels, ceil(T / hop)]`` (int64) of ``[T]``, ``[B, T]`` or ``[B, C, T]`` audio.

        Audio at another ``sample_rate`` is resampled, several channels averaged. Long inputs are encoded
        in chunks of ``chunk_seconds`` with enough context either side that the codes do not depend on the
        chunking (the encoders have a finite reach; SEANet's is causal).
        """
        n_levels = self.levels_for(bitrate, levels)
        audio = self._prepare(wav, sample_rate)
        hop = self.hop_length
        frames = -(-audio.shape[-1] // hop)
        chunk = max(1, int(chunk_seconds * self.frame_rate))
        if frames <= chunk:
            return self.model.encode(audio, n_levels)
        context, ahead = self._context_frames(), self.model.lookahead_frames()
        pieces = []
        for start in range(0, frames, chunk):
            begin = max(0, start - context)
            segment = audio[..., begin * hop : (start + chunk + ahead) * hop]
            codes = self.model.encode(segment, n_levels)
            pieces.append(codes[..., start - begin : start - begin + chunk])
        return torch.cat(pieces, dim=-1)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor | np.ndarray, length: int | None = None,
               chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> torch.Tensor:
        """Audio ``[B, frames * hop]`` (float32, codec rate) of codes ``[B, levels, frames]`` or
        ``[levels, frames]``; any number of leading levels; cut to ``length`` samples when given."""
        codes = torch.as_tensor(np.asarray(codes) if isinstance(codes, np.ndarray) else codes)
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3 or codes.shape[-1] == 0:
            raise MusicLMError(f"codes must be [batch, levels, frames] with frames > 0, got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise MusicLMError(f"codes must be integers, got {codes.dtype}")
        if not 1 <= codes.shape[1] <= self.num_quantizers:
            raise MusicLMError(f"codes have {codes.shape[1]} levels; this codec has 1 to {self.num_quantizers}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise MusicLMError(f"codes must lie within [0, {self.codebook_size}), "
                               f"got [{int(codes.min())}, {int(codes.max())}]")
        codes = codes.long().to(self.device)
        frames = codes.shape[-1]
        chunk = max(1, int(chunk_seconds * self.frame_rate))
        if frames <= chunk:
            audio = self.model.decode(codes)
        else:
            context, ahead = self._context_frames(), self.model.lookahead_frames()
            hop, pieces = self.hop_length, []
            for start in range(0, frames, chunk):
                begin = max(0, start - context)
                out = self.model.decode(codes[..., begin : start + chunk + ahead])
                pieces.append(out[..., (start - begin) * hop : (start - begin + chunk) * hop])
            audio = torch.cat(pieces, dim=-1)
        if length is not None:
            if length < 1:
                raise MusicLMError(f"length must be positive, got {length}")
            audio = audio[..., :length]
        return audio.float()

    def roundtrip(self, wav: AudioInput, sample_rate: int | None = None, bitrate: float | None = 6.0,
                  levels: int | None = None) -> np.ndarray:
        """Encode and decode; mono float32 ``[T]`` or ``[B, T]`` at the input's rate and length."""
        source = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
        length = source.shape[-1]
        codes = self.encode(source, sample_rate, bitrate, levels)
        out = self.decode(codes, self.resampled_length(length, sample_rate)).cpu().numpy()
        if sample_rate not in (None, self.sample_rate):
            out = resample(out, self.sample_rate, int(sample_rate))
            out = np.pad(out, [(0, 0), (0, max(0, length - out.shape[-1]))])[..., :length]
        return out[0] if source.ndim == 1 else out

    def bitrate_kbps(self, levels: int) -> float:
        return self.config.bitrate_for_levels(levels)
