"""Discovery of the General MIDI soundfonts the renderer can play pieces through.

Known fonts are looked up where their Debian packages install them; ``MUSICLM_SOUNDFONTS`` (paths to
``.sf2``/``.sf3`` files or folders holding them, separated by ``os.pathsep``) adds fonts or replaces a
known one of the same name. ``.sf3`` files (Ogg-compressed samples) are kept only when this FluidSynth
build can actually decode them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musiclm.errors import MusicLMError

log = logging.getLogger(__name__)

ENV_VAR = "MUSICLM_SOUNDFONTS"
SOUNDFONT_SUFFIXES = (".sf2", ".sf3")
DEBIAN_PACKAGES = ("fluid-soundfont-gm", "musescore-general-soundfont", "timgm6mb-soundfont")


class NoSoundFontError(MusicLMError):
    """No usable General MIDI soundfont was found on this machine."""


@dataclass(frozen=True)
class SoundFont:
    """A General MIDI soundfont file and what may be said about it."""

    name: str  # stable short name, recorded in ClipLabels.soundfont
    path: Path
    licence: str
    weight: float = 1.0  # relative chance of being picked by choose_soundfont (sound quality)

    @property
    def format(self) -> str:
        return self.path.suffix.lower().lstrip(".")


@dataclass(frozen=True)
class _KnownFont:
    name: str
    paths: tuple[str, ...]  # first existing path wins
    licence: str
    weight: float
    aliases: tuple[str, ...] = ()  # file stems that mean this font in MUSICLM_SOUNDFONTS


def _pretty_midi_timgm6mb() -> str:
    """Path of the TimGM6mb.sf2 bundled inside the pretty_midi package ('' if pretty_midi is absent)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2")


_KNOWN_FONTS = (
    _KnownFont(
        "FluidR3_GM",
        ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
        "MIT, Frank Wen (Debian fluid-soundfont-gm)",
        weight=0.45,
        aliases=("fluidr3_gm", "fluidr3"),
    ),
    _KnownFont(
        "MuseScore_General",
        (
            "/usr/share/sounds/sf2/MuseScore_General.sf2",
            "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
            "/usr/share/sounds/sf3/MuseScore_General.sf3",
        ),
        "MIT, S. Christian Collins; some samples CC0 or public domain (Debian musescore-general-soundfont)",
        weight=0.4,
        aliases=("musescore_general", "musescore_general_full", "musescore_general_hq"),
    ),
    _KnownFont(
        "TimGM6mb",
        ("/usr/share/sounds/sf2/TimGM6mb.sf2", "<pretty_midi>"),
        "GPL-2, Tim Brechbill (Debian timgm6mb-soundfont, also bundled with pretty_midi)",
        weight=0.15,
        aliases=("timgm6mb",),
    ),
)


def _existing_path(paths: Sequence[str]) -> Path | None:
    for raw in paths:
        path = _pretty_midi_timgm6mb() if raw == "<pretty_midi>" else raw
        if path and Path(path).is_file():
            return Path(path)
    return None


def _env_paths(value: str) -> list[Path]:
    """Soundfont files named by a ``MUSICLM_SOUNDFONTS`` value (folders expand to the fonts inside)."""
    found: list[Path] = []
    for entry in filter(None, (e.strip() for e in value.split(os.pathsep))):
        path = Path(entry).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in SOUNDFONT_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            log.warning("%s names %s, which does not exist; ignored", ENV_VAR, path)
    return found


def _known_font_for_stem(stem: str) -> _KnownFont | None:
    key = stem.casefold()
    for known in _KNOWN_FONTS:
        if key == known.name.casefold() or key in known.aliases:
            return known
    return None


@functools.lru_cache(maxsize=32)
def _fluidsynth_plays(path: str, mtime_ns: int) -> str:
    """'' when FluidSynth loads ``path`` and sounds a piano note from it, else the reason why not."""
    del mtime_ns  # part of the cache key only: a replaced file is checked again
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        return f"FluidSynth is not available ({exc})"
    synth = fluidsynth.Synth(gain=0.5, samplerate=24000, **{"synth.dynamic-sample-loading": 1})
    try:
        sfid = synth.sfload(path)
        if sfid < 0:
            return "FluidSynth cannot load it"
        synth.program_select(0, sfid, 0, 0)
        synth.noteon(0, 60, 100)
        peak = int(np.abs(synth.get_samples(2400)).max())
        return "" if peak > 0 else "FluidSynth loads it but plays silence (no Ogg/Vorbis sample support?)"
    finally:
        synth.delete()


def soundfont_is_playable(path: str | os.PathLike[str]) -> str:
    """Check that this FluidSynth build plays ``path``; returns '' when it does, else the reason."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    return _fluidsynth_plays(str(path), path.stat().st_mtime_ns)


def find_soundfonts(*, include_system: bool = True, verify_sf3: bool = True) -> list[SoundFont]:
    """All usable General MIDI soundfonts, known Debian fonts first, then extras from ``MUSICLM_SOUNDFONTS``.

    A font in ``MUSICLM_SOUNDFONTS`` whose file stem names a known font (e.g. ``FluidR3_GM.sf2``) replaces
    it. ``.sf3`` files are skipped, with a logged reason, unless FluidSynth can decode them. Raises
    :class:`NoSoundFontError`, saying what to install, when none is found.
    """
    fonts: dict[str, SoundFont] = {}
    if include_system:
        for known in _KNOWN_FONTS:
            path = _existing_path(known.paths)
            if path is not None:
                fonts[known.name] = SoundFont(known.name, path, known.licence, known.weight)
    for path in _env_paths(os.environ.get(ENV_VAR, "")):
        known = _known_font_for_stem(path.stem)
        if known is not None:
            fonts[known.name] = SoundFont(known.name, path, known.licence, known.weight)
        else:
            fonts[path.stem] = SoundFont(path.stem, path, f"unknown (given in {ENV_VAR})", 1.0)
    usable = []
    for font in fonts.values():
        if font.format == "sf3" and verify_sf3:
            reason = soundfont_is_playable(font.path)
            if reason:
                log.warning("skipping soundfont %s (%s): %s", font.name, font.path, reason)
                continue
        usable.append(font)
    if not usable:
        raise NoSoundFontError(
            "no General MIDI soundfont found; install one with "
            f"`sudo apt-get install {' '.join(DEBIAN_PACKAGES)}` "
            f"or name .sf2 files in the {ENV_VAR} environment variable (separated by '{os.pathsep}')"
        )
    return usable


def get_soundfont(name: str, soundfonts: Sequence[SoundFont] | None = None) -> SoundFont:
    """The soundfont called ``name`` (case-insensitive) among ``soundfonts`` (default: all found)."""
    fonts = find_soundfonts() if soundfonts is None else soundfonts
    for font in fonts:
        if font.name.casefold() == name.casefold():
            return font
    raise NoSoundFontError(f"soundfont {name!r} not found; available: {', '.join(f.name for f in fonts)}")


def choose_soundfont(soundfonts: Sequence[SoundFont], rng: np.random.Generator) -> SoundFont:
    """Pick one soundfont at random, in proportion to the fonts' weights."""
    if not soundfonts:
        raise NoSoundFontError("no soundfont to choose from")
    weights = np.array([max(f.weight, 0.0) for f in soundfonts], dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    return soundfonts[int(rng.choice(len(soundfonts), p=weights / weights.sum()))]
