"""musiclm: offline-first text-to-music at 24 kHz (MuLan, semantic tokens, SoundStream)."""

__version__ = "0.1.0"

SAMPLE_RATE = 24_000
"""The sample rate of every audio signal inside the system and of all audio it writes."""

__all__ = ["SAMPLE_RATE", "__version__"]
