"""MuLan: the joint music-text embedding that conditions MusicLM, and its conditioning-token quantiser.

Generators train on audio alone, conditioned on the MuLan AUDIO embedding of each clip; at inference the
MuLan TEXT embedding of the prompt takes its place. Both pass through the same fitted quantiser
(12 residual levels), saved with the model. See :class:`musiclm.mulan.api.MuLan`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MuLan", "MuLanConfig", "MuLanTrainingConfig"]


def __getattr__(name: str) -> Any:
    """Lazy exports: importing the package (the CLI does) does not load torch."""
    if name == "MuLan":
        from musiclm.mulan.api import MuLan

        return MuLan
    if name in ("MuLanConfig", "MuLanTrainingConfig"):
        from musiclm.mulan import config

        return getattr(config, name)
    raise AttributeError(f"module 'musiclm.mulan' has no attribute {name!r}")
