"""The self-supervised music model behind the semantic tokens (HuBERT / w2v-BERT style masked prediction).

24 kHz audio -> log-mel at 100 frames/s -> a convolutional feature encoder that folds every 4 mel frames
into one 40 ms frame (25 frames/s) -> a convolutional relative position embedding -> a pre-norm Transformer
encoder -> one linear head per target codebook. Masked frames are replaced by a learned embedding before the
position embedding and the Transformer, which must then predict their discrete targets from the context.

Frames: an input of ``T`` samples gives exactly ``ceil(T / frame_hop)`` frames (``frame_hop`` = 960 at 24 kHz);
frame ``i`` is built from the mel frames centred on samples ``960 i + 240 j`` (``j`` = 0..3).

Padding: every layer that mixes frames (the two 100 Hz convolutions, the position convolution, attention)
sees zeros or nothing beyond each item's own length, so a padded batch gives, up to float rounding, the same
features as running its items one by one.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.features import LogMel
from musiclm.semantic.config import SemanticModelConfig

MEL_OFFSET = 4.0
MEL_SCALE = 4.0
"""Fixed affine normalisation of natural-log mel power (silence at log(1e-5) = -11.5 maps to about -1.9)."""


def frames_for(samples: int, frame_hop: int) -> int:
    """Output frames for ``samples`` input samples: ``ceil(samples / frame_hop)``."""
    return -(-int(samples) // frame_hop)


def valid_mask(frames: torch.Tensor, total: int) -> torch.Tensor:
    """``[B, total]`` booleans, True where the frame index is below each item's frame count."""
    return torch.arange(total, device=frames.device).unsqueeze(0) < frames.unsqueeze(1)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + GELU feed-forward, with a key padding mask."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.attn_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, frames, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.attn_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, frames, dim)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SemanticModel(nn.Module):
    """Masked-prediction encoder; :meth:`hidden_states` gives the per-layer features the tokens come from."""

    def __init__(self, config: SemanticModelConfig, heads: bool = True):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.mel = LogMel(c.sample_rate, c.n_fft, c.mel_hop, c.n_mels, c.f_min, c.f_max)
        self.conv1 = nn.Conv1d(c.n_mels, c.conv_channels, 3, padding=1)
        self.conv2 = nn.Conv1d(c.conv_channels, c.conv_channels, 3, padding=1)
        self.fold = nn.Conv1d(c.conv_channels, c.conv_channels, c.mel_per_frame, stride=c.mel_per_frame)
        self.feature_norm = nn.LayerNorm(c.conv_channels)
        self.feature_proj = nn.Linear(c.conv_channels, c.d_model)
        self.feature_dropout = nn.Dropout(c.dropout)
        self.mask_embedding = nn.Parameter(torch.empty(c.d_model).uniform_(-0.5, 0.5))
        self.pos_conv = nn.Conv1d(c.d_model, c.d_model, c.pos_conv_kernel, padding=c.pos_conv_kernel // 2,
                                  groups=c.pos_conv_groups)
        self.pos_norm = nn.LayerNorm(c.d_model)
        self.layers = nn.ModuleList(
            TransformerBlock(c.d_model, c.num_heads, c.ffn_dim, c.dropout) for _ in range(c.num_layers)
        )
        self.has_heads = heads
        if heads:
            self.final_norm = nn.LayerNorm(c.d_model)
            self.heads = nn.ModuleList(nn.Linear(c.d_model, k) for k in c.target_sizes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        std = math.sqrt(4.0 / (self.config.pos_conv_kernel * self.config.d_model / self.config.pos_conv_groups))
        nn.init.normal_(self.pos_conv.weight, std=std)
        nn.init.zeros_(self.pos_conv.bias)

    # ------------------------------------------------------------------------------------------ framing
    def num_frames(self, samples: int) -> int:
        """``ceil(samples / frame_hop)``: 25 frames per second of 24 kHz audio."""
        return frames_for(samples, self.config.frame_hop)

    def _frame_counts(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            return torch.full((wav.shape[0],), self.num_frames(wav.shape[-1]), dtype=torch.long, device=wav.device)
        lengths = torch.as_tensor(lengths, device=wav.device).long()
        return (lengths + self.config.frame_hop - 1) // self.config.frame_hop

    # ------------------------------------------------------------------------------------------ encoder
    def frame_features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]`` audio -> (``[B, N, d_model]`` frame features, ``[B, N]`` validity), N = ceil(T / hop).

        Samples beyond ``lengths`` (per item) are ignored: they are zeroed before the STFT.
        """
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        c = self.config
        counts = self._frame_counts(wav, lengths)
        total = self.num_frames(wav.shape[-1])
        wav = F.pad(wav.float(), (0, total * c.frame_hop - wav.shape[-1]))
        if lengths is not None:
            limit = torch.as_tensor(lengths, device=wav.device).long()[:, None]
            wav = wav * (torch.arange(wav.shape[-1], device=wav.device)[None, :] < limit)
        mel = (self.mel(wav)[..., : total * c.mel_per_frame] + MEL_OFFSET) / MEL_SCALE  # [B, n_mels, 4N]
        mel_ok = valid_mask(counts * c.mel_per_frame, mel.shape[-1]).unsqueeze(1).to(mel.dtype)
        x = F.gelu(self.conv1(mel * mel_ok)) * mel_ok
        x = F.gelu(self.conv2(x)) * mel_ok
        x = F.gelu(self.fold(x)).transpose(1, 2)  # [B, N, C]
        x = self.feature_proj(self.feature_norm(x))
        return x, valid_mask(counts, total)

    def hidden_states(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None, max_layer: int | None = None
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-layer features: ``states[0]`` enters the first block, ``states[l]`` leaves block ``l``.

        ``mask`` ([B, N] booleans) marks frames replaced by the mask embedding (training only). Stops after
        ``max_layer`` blocks when given. Returns the states (each ``[B, N, d_model]``) and the validity mask.
        """
        x, valid = self.frame_features(wav, lengths)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = self.feature_dropout(x)
        keep = valid.unsqueeze(-1).to(x.dtype)
        x = x * keep
        x = self.pos_norm(x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2))
        states = [x]
        last = len(self.layers) if max_layer is None else max_layer
        if not 0 <= last <= len(self.layers):
            raise ValueError(f"max_layer must be within [0, {len(self.layers)}], got {max_layer}")
        for block in self.layers[:last]:
            x = block(x, valid)
            states.append(x)
        return states, valid

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Target logits (one ``[B, N, K_j]`` per codebook) and the ``[B, N]`` validity mask."""
        if not self.has_heads:
            raise RuntimeError("this model was built without prediction heads (a tokenizer's truncated encoder)")
        states, valid = self.hidden_states(wav, lengths, mask)
        final = self.final_norm(states[-1])
        return [head(final) for head in self.heads], valid


def truncated_config(config: SemanticModelConfig, layer: int) -> SemanticModelConfig:
    """The config of the first ``layer`` blocks of a model (what a tokenizer keeps)."""
    if not 1 <= layer <= config.num_layers:
        raise ValueError(f"layer must be within [1, {config.num_layers}], got {layer}")
    return replace(config, num_layers=layer)


def truncate(model: SemanticModel, layer: int) -> SemanticModel:
    """A copy of ``model`` with only its first ``layer`` blocks and no heads (for tokenization)."""
    small = SemanticModel(truncated_config(model.config, layer), heads=False)
    own = small.state_dict()
    small.load_state_dict({k: v for k, v in model.state_dict().items() if k in own}, strict=True)
    return small


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def span_mask(frames: int, mask_prob: float, mask_length: int, generator: torch.Generator | None = None,
              valid_frames: int | None = None) -> torch.Tensor:
    """``[frames]`` booleans: spans of ``mask_length`` starting at each frame with ``mask_prob`` (at least one).

    Only the first ``valid_frames`` frames are ever masked.
    """
    valid_frames = frames if valid_frames is None else min(valid_frames, frames)
    mask = torch.zeros(frames, dtype=torch.bool)
    if valid_frames <= 0:
        return mask
    starts = torch.rand(valid_frames, generator=generator) < mask_prob
    if not bool(starts.any()):
        starts[int(torch.randint(valid_frames, (1,), generator=generator))] = True
    for start in torch.nonzero(starts).flatten().tolist():
        mask[start : min(start + mask_length, valid_frames)] = True
    return mask
