"""Play a :class:`~musiclm.data.piece.Piece` through FluidSynth into 24 kHz mono float32 audio.

One :class:`Renderer` per process keeps a single FluidSynth synthesizer with its soundfonts loaded and
renders piece after piece on it (channels and effects are reset in between). A render schedules the
piece's MIDI events (notes, control changes incl. the sustain pedal, pitch bends) in time order and
pulls float samples straight into a NumPy buffer between them. FluidSynth applies events at its 64-sample
block boundaries, so event timing is exact to 64 samples (2.7 ms at 24 kHz).

Mixing (per-part gains by role, reverb and chorus, output peak level) is chosen per clip by
:func:`random_mix`; :func:`check_audio` rejects clips that are silent, clipped or not finite.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi

from musiclm import SAMPLE_RATE
from musiclm.data.piece import Piece
from musiclm.data.soundfonts import SoundFont, find_soundfonts
from musiclm.errors import MusicLMError

log = logging.getLogger(__name__)

DRUM_CHANNEL = 9
"""General MIDI percussion channel (0-based); every channel ``c`` with ``c % 16 == 9`` is a drum channel."""
DRUM_BANK = 128
DEFAULT_MAX_CHANNELS = 64
PREROLL_SECONDS = 1.0
"""How much music before a window's start is rendered (and dropped) so that it enters mid-phrase."""
TAIL_SECONDS = 1.0
"""Release and reverb tail kept after the last note when rendering a whole piece."""
FADE_OUT_SECONDS = 0.08
FADE_IN_SECONDS = 0.005
SILENCE_PEAK = 1e-4
"""Raw synthesizer peak (-80 dBFS) below which a rendered window counts as silence, not music."""

# Controllers the renderer owns (bank select, reverb and chorus sends, reset-all-controllers) are dropped
# from the piece; volume (7) is scaled by the part's gain; everything else is passed through.
_DROPPED_CONTROLLERS = frozenset({0, 32, 91, 93, 121})
_VOLUME_CC = 7
_SUSTAIN_CC = 64
_PEDAL_LOOKBACK_SECONDS = 2.0  # notes released this long before a window and held by the pedal still sound
_DEFAULT_VOLUME = 100
_REVERB_CC = 91
_CHORUS_CC = 93

_BLOCK = 64  # FluidSynth's internal block size; events take effect on block edges
_FLUSH_SAMPLES = 8192  # silence rendered after a reset to check that nothing still sounds
_MAX_RESETS = 6
_WARM_VELOCITIES = tuple(range(1, 128, 6))
_WARM_KEYS = 16
_FLUID_WARN = 2  # FluidSynth log level

# Event kinds, in the order they are applied when they fall on the same sample.
_CONTROL, _BEND, _NOTE_OFF, _NOTE_ON = 0, 1, 2, 3


class FluidSynthUnavailableError(MusicLMError):
    """pyfluidsynth or the FluidSynth library cannot be loaded."""


def _load_fluidsynth() -> Any:
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise FluidSynthUnavailableError(
            f"FluidSynth is not available ({exc}); install the Debian package libfluidsynth3 "
            "and the Python package pyfluidsynth"
        ) from exc
    return fluidsynth


_RESTYPES = {
    "fluid_synth_set_gain": None,
    "fluid_synth_get_sfont_by_id": ctypes.c_void_p,
    "fluid_sfont_get_preset": ctypes.c_void_p,
}


class _FluidAPI:
    """The few libfluidsynth calls the renderer makes, bound with exact ctypes signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, i, d, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_float
        signatures: dict[str, list[Any]] = {
            "fluid_synth_write_float": [vp, i, vp, i, i, vp, i, i],
            "fluid_synth_noteon": [vp, i, i, i],
            "fluid_synth_noteoff": [vp, i, i],
            "fluid_synth_cc": [vp, i, i, i],
            "fluid_synth_pitch_bend": [vp, i, i],
            "fluid_synth_program_select": [vp, i, i, i, i],
            "fluid_synth_set_channel_type": [vp, i, i],
            "fluid_synth_all_sounds_off": [vp, i],
            "fluid_synth_system_reset": [vp],
            "fluid_synth_set_gain": [vp, f],
            "fluid_synth_set_reverb": [vp, d, d, d, d],
            "fluid_synth_set_chorus": [vp, i, d, d, d, i],
            "fluid_synth_chorus_on": [vp, i, i],
            "fluid_synth_reverb_on": [vp, i, i],
            "fluid_synth_get_active_voice_count": [vp],
            "fluid_synth_pin_preset": [vp, i, i, i],
            "fluid_synth_get_sfont_by_id": [vp, i],
            "fluid_sfont_get_preset": [vp, i, i],
        }
        lib.fluid_set_log_function.argtypes = [i, vp, vp]
        lib.fluid_set_log_function.restype = vp
        self.set_log_function = lib.fluid_set_log_function
        optional = {"fluid_synth_set_sample_rate": [vp, f]}  # deprecated in FluidSynth 2.x, may vanish
        for name, argtypes in optional.items():
            func = getattr(lib, name, None)
            if func is not None:
                func.argtypes, func.restype = argtypes, None
            setattr(self, name.removeprefix("fluid_synth_"), func)
        for name, argtypes in signatures.items():
            func = getattr(lib, name, None)
            if func is None:
                raise FluidSynthUnavailableError(f"libfluidsynth lacks {name}; FluidSynth >= 2.2 is required")
            func.argtypes = argtypes
            func.restype = _RESTYPES.get(name, ctypes.c_int)
            setattr(self, name.removeprefix("fluid_synth_").removeprefix("fluid_"), func)


# --------------------------------------------------------------------------------------------- mixing

_ROLE_GAIN_DB = {  # (mean, spread) of a part's gain relative to the others
    "lead": (1.5, 1.0),
    "counter": (-1.0, 1.0),
    "chords": (-2.5, 1.0),
    "pad": (-5.0, 1.5),
    "bass": (0.0, 1.0),
    "drums": (0.0, 1.0),
    "percussion": (-3.0, 1.5),
}
_ROLE_REVERB_SEND = {  # CC91 range by role
    "lead": (30, 60),
    "counter": (30, 60),
    "chords": (35, 70),
    "pad": (50, 90),
    "bass": (0, 20),
    "drums": (10, 35),
    "percussion": (20, 45),
}
_ROLE_CHORUS_SEND = {  # CC93 range by role, when the clip has chorus at all
    "lead": (0, 30),
    "counter": (0, 40),
    "chords": (20, 60),
    "pad": (30, 70),
    "bass": (0, 0),
    "drums": (0, 0),
    "percussion": (0, 0),
}
_SPACIOUS_GENRES = ("ambient", "chorale", "choral", "classical", "baroque", "string_quartet", "cinematic", "orchestral")


@dataclass(frozen=True)
class MixSettings:
    """How one clip is mixed; every per-part tuple has one entry per ``piece.midi.instruments``."""

    gains_db: tuple[float, ...]
    reverb_sends: tuple[int, ...]  # CC91, 0-127
    chorus_sends: tuple[int, ...]  # CC93, 0-127
    reverb_room: float = 0.4  # 0-1
    reverb_damping: float = 0.4  # 0-1
    reverb_width: float = 0.8  # 0-100 (stereo width; mostly moot once mixed to mono)
    reverb_level: float = 0.5  # 0-1
    chorus_voices: int = 3  # 0 turns chorus off
    chorus_level: float = 1.0  # 0-10
    chorus_speed_hz: float = 0.3  # 0.1-5
    chorus_depth_ms: float = 6.0
    master_gain: float = 0.4  # FluidSynth synth.gain
    peak_dbfs: float = -1.5  # the output is peak-normalised to this level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def instrument_roles(piece: Piece) -> list[str]:
    """The role of each of ``piece.midi.instruments``, taken from ``piece.labels.parts``.

    Parts are matched to instruments in order when their counts agree, otherwise by drum flag and program;
    an unmatched instrument counts as "drums" or "chords".
    """
    instruments = piece.midi.instruments
    parts = piece.labels.parts
    if len(parts) == len(instruments):
        return [p.role for p in parts]
    unused = list(parts)
    roles = []
    for inst in instruments:
        match = next(
            (p for p in unused if p.is_drum == inst.is_drum and (inst.is_drum or p.program == inst.program)), None
        )
        if match is None:
            roles.append("drums" if inst.is_drum else "chords")
        else:
            unused.remove(match)
            roles.append(match.role)
    return roles


def default_mix(piece: Piece) -> MixSettings:
    """A neutral mix: all parts at 0 dB, moderate reverb, no chorus."""
    n = len(piece.midi.instruments)
    return MixSettings(gains_db=(0.0,) * n, reverb_sends=(40,) * n, chorus_sends=(0,) * n, chorus_voices=0)


MASTER_PEAK_DBFS: dict[str, tuple[float, float]] = {"low": (-9.0, -5.0), "medium": (-5.0, -2.0),
                                                    "high": (-2.0, -0.5)}
"""Output peak range by the piece's energy: calm pieces are mastered quieter, as released music is. One peak
level for every clip would leave loudness carrying nothing (and, with their lower crest factor, calm clips
measured louder than energetic ones in LUFS)."""


def random_mix(piece: Piece, rng: np.random.Generator) -> MixSettings:
    """A tasteful random mix for one clip: role-based part levels, a room, maybe chorus, and a peak level that
    follows the piece's energy (:data:`MASTER_PEAK_DBFS`)."""
    roles = instrument_roles(piece)
    genre = piece.labels.genre.lower()
    spacious = any(word in genre for word in _SPACIOUS_GENRES) or piece.labels.texture == "sparse"
    wetness = float(rng.uniform(0.5, 1.3 if spacious else 1.1))
    with_chorus = bool(rng.random() < 0.5)

    def send(ranges: dict[str, tuple[int, int]], role: str, scale: float) -> int:
        low, high = ranges.get(role, (20, 50))
        return int(np.clip(round(rng.uniform(low, high) * scale), 0, 127))

    gains, reverb_sends, chorus_sends = [], [], []
    for role in roles:
        mean, spread = _ROLE_GAIN_DB.get(role, (-1.0, 1.0))
        gains.append(round(float(mean + rng.uniform(-spread, spread)), 2))
        reverb_sends.append(send(_ROLE_REVERB_SEND, role, wetness))
        chorus_sends.append(send(_ROLE_CHORUS_SEND, role, 1.0) if with_chorus else 0)
    return MixSettings(
        gains_db=tuple(gains),
        reverb_sends=tuple(reverb_sends),
        chorus_sends=tuple(chorus_sends),
        reverb_room=float(rng.uniform(0.45, 0.85) if spacious else rng.uniform(0.1, 0.6)),
        reverb_damping=float(rng.uniform(0.15, 0.7)),
        reverb_width=float(rng.uniform(0.5, 1.0)),
        reverb_level=float(rng.uniform(0.4, 0.85) if spacious else rng.uniform(0.25, 0.7)),
        chorus_voices=int(rng.integers(3, 6)) if with_chorus else 0,
        chorus_level=float(rng.uniform(0.6, 2.0)),
        chorus_speed_hz=float(rng.uniform(0.2, 0.6)),
        chorus_depth_ms=float(rng.uniform(3.0, 9.0)),
        master_gain=float(rng.uniform(0.3, 0.6)),
        peak_dbfs=float(rng.uniform(*MASTER_PEAK_DBFS.get(piece.labels.energy, MASTER_PEAK_DBFS["medium"]))),
    )


# ------------------------------------------------------------------------------------ channels, events


@dataclass
class _Channel:
    number: int
    is_drum: bool
    program: int
    instruments: list[int]


def allocate_channels(instruments: list[pretty_midi.Instrument], max_channels: int) -> list[_Channel]:
    """Give every instrument a MIDI channel: drums on 9 (then 25, 41, ...), the rest on the others.

    When there are more instruments than channels, instruments with the same program (or drum kit) share
    a channel; if that is still too many, the remaining ones share channels round-robin.
    """
    drum_numbers = [c for c in range(max_channels) if c % 16 == DRUM_CHANNEL]
    melodic_numbers = [c for c in range(max_channels) if c % 16 != DRUM_CHANNEL]
    channels: list[_Channel] = []
    for is_drum, numbers in ((True, drum_numbers), (False, melodic_numbers)):
        members = [i for i, inst in enumerate(instruments) if inst.is_drum == is_drum]
        if not members:
            continue
        if not numbers:
            raise ValueError(f"max_channels={max_channels} leaves no {'drum' if is_drum else 'melodic'} channel")
        groups: list[list[int]] = [[i] for i in members]
        if len(groups) > len(numbers):
            by_program: dict[int, list[int]] = {}
            for i in members:
                by_program.setdefault(instruments[i].program, []).append(i)
            groups = list(by_program.values())
        merged: list[list[int]] = [[] for _ in range(min(len(groups), len(numbers)))]
        for k, group in enumerate(groups):
            merged[k % len(merged)].extend(group)
        for number, group in zip(numbers, merged):
            channels.append(_Channel(number, is_drum, instruments[group[0]].program, sorted(group)))
    return channels


def _volume_for(gain_db: float, value: int = _DEFAULT_VOLUME) -> int:
    """CC7 value giving ``gain_db`` relative to ``value`` (FluidSynth's volume curve is 40·log10(v/127))."""
    return int(np.clip(round(value * 10.0 ** (gain_db / 40.0)), 0, 127))


def _pedal_held_since(inst: pretty_midi.Instrument, t0: float) -> float:
    """When the sustain pedal went down if it is still down at ``t0``, else ``t0``."""
    held_since = t0
    for cc in sorted(
        (c for c in inst.control_changes if c.number == _SUSTAIN_CC and c.time < t0), key=lambda c: c.time
    ):
        if cc.value >= 64 and held_since >= t0:
            held_since = cc.time
        elif cc.value < 64:
            held_since = t0
    return max(held_since, t0 - _PEDAL_LOOKBACK_SECONDS)


def _note_events(inst: pretty_midi.Instrument, number: int, t0: float, t1: float, sample_rate: int) -> np.ndarray:
    """Note-on/off rows for one instrument within [t0, t1); notes sounding at ``t0`` start at sample 0.

    Notes released shortly before ``t0`` but still held by the sustain pedal start at ``t0`` as well.
    """
    if not inst.notes:
        return np.zeros((0, 5))
    note = np.array([(n.start, n.end, n.pitch, n.velocity) for n in inst.notes], dtype=np.float64)
    start, end = note[:, 0], note[:, 1]
    sounding_after = min(t0, _pedal_held_since(inst, t0))
    keep = (start < t1) & (end > sounding_after) & (note[:, 3] > 0) & (end > start)
    on = np.round((np.maximum(start[keep], t0) - t0) * sample_rate)
    off = np.maximum(np.round((end[keep] - t0) * sample_rate), on + 1)  # always after its note-on
    pitch, velocity = note[keep, 2], np.clip(note[keep, 3], 1, 127)
    n, channel = len(on), np.full(len(on), number)
    note_on = np.stack([on, np.full(n, _NOTE_ON), channel, pitch, velocity], 1)
    note_off = np.stack([off, np.full(n, _NOTE_OFF), channel, pitch, np.zeros(n)], 1)
    return np.concatenate([note_on, note_off[off < round((t1 - t0) * sample_rate)]])


def _collect_events(
    piece: Piece, channels: list[_Channel], gains_db: list[float], t0: float, t1: float, sample_rate: int
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Events inside [t0, t1) as an int64 array of rows (sample, kind, channel, a, b), sorted by time.

    Also returns the controller state in force at ``t0`` as (channel, controller, value) triples
    (controller -1 is the pitch bend). Note-offs at or after ``t1`` are dropped.
    """
    rows: list[np.ndarray] = []
    state: list[tuple[int, int, int]] = []
    for channel in channels:
        gain_db = float(np.mean([gains_db[i] for i in channel.instruments]))
        last: dict[int, tuple[float, int]] = {}  # controller (-1: pitch bend) -> (time, value) before t0
        for index in channel.instruments:
            inst = piece.midi.instruments[index]
            rows.append(_note_events(inst, channel.number, t0, t1, sample_rate))
            changes = [
                (cc.time, cc.number, _volume_for(gain_db, cc.value) if cc.number == _VOLUME_CC else cc.value)
                for cc in inst.control_changes
                if cc.number not in _DROPPED_CONTROLLERS
            ]
            changes += [(bend.time, -1, bend.pitch) for bend in inst.pitch_bends]
            controls = []
            for time, number, value in changes:
                if time >= t1:
                    continue
                if time < t0:
                    if number not in last or last[number][0] <= time:
                        last[number] = (time, value)
                else:
                    kind, a, b = (_BEND, value, 0) if number < 0 else (_CONTROL, number, value)
                    controls.append((round((time - t0) * sample_rate), kind, channel.number, a, b))
            if controls:
                rows.append(np.array(controls, dtype=np.float64))
        state.extend((channel.number, number, value) for number, (_, value) in sorted(last.items()))
    events = np.concatenate([np.zeros((0, 5)), *rows]).astype(np.int64)
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    return events, state


# -------------------------------------------------------------------------------------------- renderer


class Renderer:
    """One FluidSynth synthesizer, with the soundfonts it has loaded, that renders piece after piece.

    Create one per worker process (loading soundfonts is the slow part) and reuse it; not thread-safe.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        *,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        polyphony: int = 384,
    ) -> None:
        fluidsynth = _load_fluidsynth()
        self.sample_rate = int(sample_rate)
        self.max_channels = int(max_channels)
        self.polyphony = int(polyphony)
        self._synth = fluidsynth.Synth(
            gain=0.4,
            samplerate=float(self.sample_rate),
            channels=self.max_channels,
            **{
                "synth.polyphony": int(polyphony),
                "synth.dynamic-sample-loading": 1,
                "synth.cpu-cores": 1,
                "synth.reverb.active": 1,
                "synth.chorus.active": 1,
            },
        )
        self._api = _FluidAPI(fluidsynth._fl)
        self._handle = self._synth.synth
        self._fonts: dict[Path, int] = {}
        self._presets: dict[tuple[int, bool, int], tuple[int, int]] = {}  # (sfid, drum, program) -> bank, preset
        self._samples_written = 0  # FluidSynth renders 64-sample blocks; renders must start on a block edge
        self._pid = os.getpid()
        self.last_mix: MixSettings | None = None
        """The mix of the latest render (drawn by :func:`random_mix` when none was given)."""

    # -- lifecycle
    def close(self) -> None:
        """Free the synthesizer and its soundfonts."""
        if self._synth is not None:
            self._synth.delete()
            self._synth = None
            self._fonts.clear()
            self._presets.clear()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- soundfonts
    def load(self, soundfont: SoundFont | str | os.PathLike[str]) -> int:
        """Load a soundfont once (later calls are free) and return its FluidSynth id."""
        if self._synth is None:
            raise RuntimeError("this Renderer is closed")
        path = Path(soundfont.path if isinstance(soundfont, SoundFont) else soundfont).resolve()
        if path not in self._fonts:
            if not path.is_file():
                raise FileNotFoundError(f"soundfont {path} does not exist")
            sfid = self._synth.sfload(str(path))
            if sfid < 0:
                raise MusicLMError(f"FluidSynth cannot load soundfont {path}")
            self._fonts[path] = sfid
        return self._fonts[path]

    # -- rendering
    def render(
        self,
        piece: Piece,
        soundfont: SoundFont | str | os.PathLike[str],
        rng: np.random.Generator,
        start: float = 0.0,
        seconds: float | None = None,
        mix: MixSettings | None = None,
        *,
        preroll: float = PREROLL_SECONDS,
        tail: float = TAIL_SECONDS,
    ) -> np.ndarray:
        """Render ``[start, start + seconds)`` of ``piece`` as mono float32 at ``self.sample_rate``.

        ``seconds=None`` renders to the end of the piece plus ``tail`` seconds of release. The output has
        exactly ``round(seconds * sample_rate)`` samples, fades out over its last 80 ms, and is
        peak-normalised to ``mix.peak_dbfs`` (``mix`` defaults to :func:`random_mix` drawn from ``rng``).
        Sets ``piece.labels.soundfont`` to the soundfont's name.
        """
        if os.getpid() != self._pid:
            raise RuntimeError("a Renderer cannot be shared across processes; create one per worker")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if seconds is None:
            seconds = max(piece.seconds - start, 0.0) + tail
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        if mix is None:
            mix = random_mix(piece, rng)
        instruments = piece.midi.instruments
        if not len(mix.gains_db) == len(mix.reverb_sends) == len(mix.chorus_sends) == len(instruments):
            raise ValueError(f"mix has settings for {len(mix.gains_db)} parts, the piece has {len(instruments)}")
        sfid = self.load(soundfont)
        self.last_mix = mix

        sr = self.sample_rate
        t0 = max(0.0, start - max(preroll, 0.0))  # render from here, drop everything before ``start``
        skip = round((start - t0) * sr)
        total = skip + round(seconds * sr)
        channels = allocate_channels(instruments, self.max_channels)
        self._prepare_presets(channels, sfid)
        self._reset()
        self._apply_mix(mix)
        for channel in channels:
            self._setup_channel(channel, sfid, mix)
        events, state = _collect_events(piece, channels, list(mix.gains_db), t0, t0 + total / sr, sr)
        stereo = self._play(events, state, total)

        wav = stereo[skip:].mean(axis=1, dtype=np.float32)
        piece.labels.soundfont = soundfont.name if isinstance(soundfont, SoundFont) else Path(soundfont).stem
        return _finish(wav, sr, mix.peak_dbfs, fade_in=start > 0)

    def _play(self, events: np.ndarray, state: list[tuple[int, int, int]], total: int) -> np.ndarray:
        """Apply ``state``, then dispatch ``events`` in order, pulling ``total`` stereo frames around them."""
        api, synth = self._api, self._handle
        for number, controller, value in state:
            if controller < 0:
                api.pitch_bend(synth, number, min(max(value + 8192, 0), 16383))
            else:
                api.cc(synth, number, controller, value)
        stereo = np.zeros((total, 2), dtype=np.float32)
        base, frame_bytes = stereo.ctypes.data, stereo.strides[0]
        write, noteon, noteoff, cc, bend = api.write_float, api.noteon, api.noteoff, api.cc, api.pitch_bend
        position = 0
        try:
            for sample, kind, channel, a, b in [*events.tolist(), (total, -1, 0, 0, 0)]:
                if sample > position:  # pull the samples up to this event straight into the buffer
                    left = base + position * frame_bytes
                    write(synth, sample - position, left, 0, 2, left, 1, 2)
                    position = sample
                if kind == _NOTE_ON:
                    noteon(synth, channel, a, b)
                elif kind == _NOTE_OFF:
                    noteoff(synth, channel, a)
                elif kind == _CONTROL:
                    cc(synth, channel, a, b)
                elif kind == _BEND:
                    bend(synth, channel, min(max(a + 8192, 0), 16383))
        finally:
            self._samples_written += position
        return stereo

    def _reset(self) -> None:
        """Bring the synthesizer back to the state of a new one, so that no piece leaks into the next.

        Besides resetting channels and voices this (1) finishes FluidSynth's current 64-sample block so
        that event timing is the same in every render, (2) clears the gain memory of every voice slot,
        (3) flushes reverb and chorus (a system reset empties them only partly: a tail re-emerges about
        0.1 s later, so it is repeated until a stretch of silence comes out clean) and (4) restarts the
        effects' modulators, so that rendering a piece gives the same samples whatever came before.
        """
        api, synth = self._api, self._handle
        flush = np.zeros((_FLUSH_SAMPLES, 2), dtype=np.float32)
        partial = -self._samples_written % _BLOCK
        if partial:
            api.write_float(synth, partial, flush.ctypes.data, 0, 2, flush.ctypes.data, 1, 2)
        self._samples_written = 0
        self._zero_voice_slots()
        for _ in range(_MAX_RESETS):
            api.all_sounds_off(synth, -1)
            api.write_float(synth, _BLOCK, flush.ctypes.data, 0, 2, flush.ctypes.data, 1, 2)
            api.system_reset(synth)
            api.write_float(synth, _FLUSH_SAMPLES, flush.ctypes.data, 0, 2, flush.ctypes.data, 1, 2)
            if api.get_active_voice_count(synth) == 0 and float(np.abs(flush).max()) < 1e-7:
                break
        if api.set_sample_rate is not None:  # re-creates the effects' state, modulator phases included
            api.set_sample_rate(synth, float(self.sample_rate))

    @contextmanager
    def _quiet_warnings(self) -> Iterator[None]:
        """Mute FluidSynth's "failed to allocate a synthesis process" warnings while slots are filled."""
        previous = self._api.set_log_function(_FLUID_WARN, None, None)
        try:
            yield
        finally:
            self._api.set_log_function(_FLUID_WARN, previous, None)

    def _zero_voice_slots(self) -> None:
        """Leave every voice slot with zero output gain, as in a new synthesizer.

        FluidSynth ramps a new voice's first block from the gain its slot had when last used, so which
        slot a note gets (which depends on earlier pieces) would change the audio slightly. Filling all
        slots with voices at synth gain 0 for one block makes every slot start from zero again.
        """
        api, synth = self._api, self._handle
        scratch = np.zeros((_BLOCK, 2), dtype=np.float32)
        api.all_sounds_off(synth, -1)
        api.write_float(synth, _BLOCK, scratch.ctypes.data, 0, 2, scratch.ctypes.data, 1, 2)
        api.set_gain(synth, 0.0)
        with self._quiet_warnings():
            for channel in range(self.max_channels):
                for pitch in range(128):
                    api.noteon(synth, channel, pitch, 100)
                    if api.get_active_voice_count(synth) >= self.polyphony:
                        break
                else:
                    continue
                break
        api.write_float(synth, _BLOCK, scratch.ctypes.data, 0, 2, scratch.ctypes.data, 1, 2)
        api.all_sounds_off(synth, -1)
        api.write_float(synth, _BLOCK, scratch.ctypes.data, 0, 2, scratch.ctypes.data, 1, 2)

    def _apply_mix(self, mix: MixSettings) -> None:
        api, synth = self._api, self._handle
        api.set_gain(synth, float(mix.master_gain))
        api.reverb_on(synth, -1, 1)
        api.set_reverb(synth, mix.reverb_room, mix.reverb_damping, mix.reverb_width, mix.reverb_level)
        api.chorus_on(synth, -1, int(mix.chorus_voices > 0))
        if mix.chorus_voices > 0:
            api.set_chorus(synth, int(mix.chorus_voices), mix.chorus_level, mix.chorus_speed_hz, mix.chorus_depth_ms, 0)

    def _prepare_presets(self, channels: list[_Channel], sfid: int) -> None:
        """Find, pin and warm up the presets that ``channels`` need and this renderer has not used yet.

        Pinning keeps a preset's samples in memory (with dynamic sample loading FluidSynth would drop
        them at the next reset and load, for .sf3 decode, them again). Warming plays every key of the
        preset once: FluidSynth tunes a sample's voice handling on its first use, so without it the first
        render with a preset would differ slightly from later ones.
        """
        api, synth = self._api, self._handle
        scratch = np.zeros((_BLOCK, 2), dtype=np.float32)
        for channel in channels:
            key = (sfid, channel.is_drum, channel.program)
            if key in self._presets:
                continue
            bank = DRUM_BANK if channel.is_drum else 0
            program = self._available_program(sfid, bank, channel.program)
            api.set_channel_type(synth, channel.number, int(channel.is_drum))
            api.program_select(synth, channel.number, sfid, bank, program)
            api.pin_preset(synth, sfid, bank, program)
            with self._quiet_warnings():
                for velocity in _WARM_VELOCITIES:
                    for low in range(0, 128, _WARM_KEYS):  # a few keys at a time: stay within the polyphony
                        for pitch in range(low, low + _WARM_KEYS):
                            api.noteon(synth, channel.number, pitch, velocity)
                        api.write_float(synth, _BLOCK, scratch.ctypes.data, 0, 2, scratch.ctypes.data, 1, 2)
                        api.all_sounds_off(synth, channel.number)
                        api.write_float(synth, _BLOCK, scratch.ctypes.data, 0, 2, scratch.ctypes.data, 1, 2)
            self._presets[key] = (bank, program)

    def _available_program(self, sfid: int, bank: int, program: int) -> int:
        """``program`` if the soundfont has it in ``bank``, else the first of its family, else 0."""
        api = self._api
        sfont = api.get_sfont_by_id(self._handle, sfid)
        candidates = (program, 0) if bank == DRUM_BANK else (program, program // 8 * 8, 0)
        for candidate in candidates:
            if api.sfont_get_preset(sfont, bank, candidate):
                if candidate != program:
                    log.info("soundfont %d has no bank %d program %d; using %d", sfid, bank, program, candidate)
                return candidate
        raise MusicLMError(f"soundfont {sfid} has no preset in bank {bank} for program {program} or a fallback")

    def _setup_channel(self, channel: _Channel, sfid: int, mix: MixSettings) -> None:
        api, synth, number = self._api, self._handle, channel.number
        bank, program = self._presets[(sfid, channel.is_drum, channel.program)]
        api.set_channel_type(synth, number, int(channel.is_drum))
        api.program_select(synth, number, sfid, bank, program)
        members = channel.instruments
        gain_db = float(np.mean([mix.gains_db[i] for i in members]))
        api.cc(synth, number, _VOLUME_CC, _volume_for(gain_db))
        api.cc(synth, number, _REVERB_CC, round(float(np.mean([mix.reverb_sends[i] for i in members]))))
        api.cc(synth, number, _CHORUS_CC, round(float(np.mean([mix.chorus_sends[i] for i in members]))))


def _finish(wav: np.ndarray, sample_rate: int, peak_dbfs: float, *, fade_in: bool) -> np.ndarray:
    """Fade the edges, then scale to the target peak.

    A window whose raw peak is below ``SILENCE_PEAK`` (only effect residue, no music) becomes all zeros
    instead of being amplified, so that :func:`check_audio` rejects it as silent.
    """
    n = len(wav)
    fade_out = min(n, round(FADE_OUT_SECONDS * sample_rate))
    if fade_out > 0:
        wav[n - fade_out :] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32) ** 2
    if fade_in:
        fade = min(n, round(FADE_IN_SECONDS * sample_rate))
        wav[:fade] *= np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if n else 0.0
    if not np.isfinite(peak):
        return wav
    if peak < SILENCE_PEAK:
        return np.zeros_like(wav)
    wav *= np.float32(10.0 ** (min(peak_dbfs, -0.1) / 20.0) / peak)
    return wav


_renderers: dict[int, Renderer] = {}


def default_renderer(sample_rate: int = SAMPLE_RATE) -> Renderer:
    """This process's shared :class:`Renderer` for ``sample_rate`` (created on first use)."""
    renderer = _renderers.get(sample_rate)
    if renderer is None or renderer._pid != os.getpid():
        renderer = _renderers[sample_rate] = Renderer(sample_rate)
    return renderer


def render_piece(
    piece: Piece,
    soundfont: SoundFont | str | os.PathLike[str] | None,
    rng: np.random.Generator,
    start: float = 0.0,
    seconds: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    mix: MixSettings | None = None,
) -> np.ndarray:
    """Render ``piece`` (or the window ``[start, start + seconds)``) to mono float32 numpy audio.

    Uses this process's shared :class:`Renderer`; ``soundfont=None`` takes the first one found.
    """
    font = find_soundfonts()[0] if soundfont is None else soundfont
    return default_renderer(sample_rate).render(piece, font, rng, start, seconds, mix)


# --------------------------------------------------------------------------------------- quality checks


def check_audio(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    min_rms_dbfs: float = -50.0,
    silent_frame_dbfs: float = -60.0,
    max_silent_fraction: float = 0.3,
    clip_level: float = 0.999,
    max_clipped: int = 4,
) -> str | None:
    """Why a rendered clip is unusable, or None when it is fine.

    Bad clips: empty, NaN/inf, overall RMS below ``min_rms_dbfs``, more than ``max_silent_fraction`` of its
    100 ms frames below ``silent_frame_dbfs``, or more than ``max_clipped`` samples at ``|x| >= clip_level``.
    """
    wav = np.asarray(wav)
    if wav.size == 0:
        return "empty"
    if not np.all(np.isfinite(wav)):
        return "contains NaN or inf samples"
    wav = wav.astype(np.float64, copy=False).reshape(-1)
    clipped = int(np.count_nonzero(np.abs(wav) >= clip_level))
    if clipped > max_clipped:
        return f"clipped ({clipped} samples at |x| >= {clip_level})"
    rms_db = 10.0 * np.log10(np.mean(wav**2) + 1e-20)
    if rms_db < min_rms_dbfs:
        return f"silent (RMS {rms_db:.1f} dBFS < {min_rms_dbfs:.0f} dBFS)"
    frame = max(1, round(0.1 * sample_rate))
    n_frames = len(wav) // frame
    if n_frames > 0:
        frames = wav[: n_frames * frame].reshape(n_frames, frame)
        frame_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
        silent = float(np.mean(frame_db < silent_frame_dbfs))
        if silent > max_silent_fraction:
            return f"mostly silent ({silent:.0%} of 100 ms frames below {silent_frame_dbfs:.0f} dBFS)"
    return None
