"""Exceptions whose message is meant for the user: the CLI prints them as a one-line cause."""


class MusicLMError(Exception):
    """Base class of every error the user can fix (bad input, missing file, bad config)."""


class AudioError(MusicLMError):
    """An audio file or signal cannot be used: missing, unreadable, empty, silent or non-finite."""


class ConfigError(MusicLMError):
    """A configuration is invalid; the message names the offending key."""


class DeviceError(MusicLMError):
    """The requested compute device is not available."""
