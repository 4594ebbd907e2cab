"""SoundStream: the neural audio codec whose residual-VQ codes are MusicLM's acoustic tokens.

24 kHz mono, 50 frames/s (stride 480), 12 RVQ levels of 1024 codes (6 kbps; 1.5 and 3 kbps with the first 3
or 6 levels); levels 1-4 are the "coarse" tokens, 5-12 the "fine" ones. :class:`~musiclm.codec.api.Codec` is
the inference API; :mod:`musiclm.codec.recipe` trains one on the shared engine.

Importing the package is cheap (the config module registers presets); the model is imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Codec", "CodecConfig", "CodecTrainingConfig"]


def __getattr__(name: str) -> Any:
    if name == "Codec":
        from musiclm.codec.api import Codec

        return Codec
    if name in ("CodecConfig", "CodecTrainingConfig"):
        from musiclm.codec import config

        return getattr(config, name)
    raise AttributeError(f"module 'musiclm.codec' has no attribute {name!r}")
