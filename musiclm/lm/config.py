"""Configuration of the decoder-only Transformer shared by the three MusicLM generation stages.

A stage (semantic, coarse acoustic, fine acoustic) is a token layout plus one :class:`TransformerConfig`;
the stage recipes embed this config in their own training configs. :data:`TRANSFORMER_PRESETS` holds the two
sizes: ``small`` (trains and samples on a CPU) and ``paper`` (MusicLM: 24 layers, 16 heads, d 1024, FFN 4096).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musiclm.config import from_dict
from musiclm.errors import ConfigError


@dataclass
class TransformerConfig:
    """Pre-norm decoder-only Transformer with rotary (relative) positions and a tied output head."""

    vocab_size: int = 4096  # input embedding and output logits size (one shared vocabulary per stage)
    dim: int = 256
    depth: int = 6
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_seq_len: int = 4096  # longest sequence (prefix + generated) a cache is allocated for / validated against
    rope_base: float = 10000.0
    tie_embeddings: bool = True
    aligned_vocab: int = 0  # >0: a second embedding table, added position by position (a frame-aligned condition)
    prefix_modulation: int = 0  # >0: the first this-many tokens (a global condition) also modulate every block
    modulation_rank: int = 32  # width of the bottleneck between that condition and the blocks' scales and shifts

    def validate(self) -> None:
        for name in ("vocab_size", "dim", "depth", "heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.aligned_vocab, bool) or not isinstance(self.aligned_vocab, int) or self.aligned_vocab < 0:
            raise ConfigError(f"aligned_vocab must be an integer >= 0, got {self.aligned_vocab!r}")
        for name in ("prefix_modulation", "modulation_rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.prefix_modulation and self.modulation_rank < 1:
            raise ConfigError("prefix_modulation needs modulation_rank >= 1")
        if self.prefix_modulation > self.max_seq_len:
            raise ConfigError(f"prefix_modulation ({self.prefix_modulation}) exceeds max_seq_len ({self.max_seq_len})")
        if self.vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.dim % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide dim ({self.dim})")
        if self.head_dim % 2:
            raise ConfigError(f"the head dimension dim / heads = {self.head_dim} must be even for rotary positions")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be within [0, 1), got {self.dropout}")
        if not self.rope_base > 1.0:
            raise ConfigError(f"rope_base must be > 1, got {self.rope_base}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized: about 5M parameters in the blocks (+ dim x vocab for the tied embedding).
    "small": {"dim": 256, "depth": 6, "heads": 4, "ffn_dim": 1024, "dropout": 0.1},
    # MusicLM's stages: 24 layers, 16 heads, d 1024, FFN 4096, dropout 0.1 (about 300M parameters in the blocks).
    "paper": {"dim": 1024, "depth": 24, "heads": 16, "ffn_dim": 4096, "dropout": 0.1},
}
"""Named sizes of the stage Transformer; any other field keeps its :class:`TransformerConfig` default."""


def transformer_config(preset: str = "small", **overrides: Any) -> TransformerConfig:
    """A validated :class:`TransformerConfig` of ``preset`` with ``overrides`` (field=value) applied.

    Unknown presets, unknown fields and wrongly typed values raise :class:`ConfigError`.
    """
    if preset not in TRANSFORMER_PRESETS:
        raise ConfigError(f"no transformer preset {preset!r}; known: {', '.join(sorted(TRANSFORMER_PRESETS))}")
    return from_dict(TransformerConfig, {**TRANSFORMER_PRESETS[preset], **overrides})
