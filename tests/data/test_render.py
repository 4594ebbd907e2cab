"""Soundfont discovery, FluidSynth rendering, mixing and clip quality checks."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pretty_midi
import pytest

from musiclm.data.piece import ClipLabels, Part, Piece
from musiclm.data.render import (
    FluidSynthUnavailableError,
    MixSettings,
    Renderer,
    allocate_channels,
    check_audio,
    default_mix,
    instrument_roles,
    random_mix,
    render_piece,
)
from musiclm.data.soundfonts import (
    ENV_VAR,
    NoSoundFontError,
    SoundFont,
    choose_soundfont,
    find_soundfonts,
    soundfont_is_playable,
)

SR = 24_000


# ----------------------------------------------------------------------------------------------- helpers


def make_piece(notes: dict[tuple[int, bool, str], list[tuple[int, float, float]]], piece_id: str = "test") -> Piece:
    """A Piece from {(program, is_drum, role): [(pitch, start, end), ...]}."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    parts = []
    for (program, is_drum, role), part_notes in notes.items():
        inst = pretty_midi.Instrument(program, is_drum=is_drum, name=role)
        inst.notes = [pretty_midi.Note(100, pitch, start, end) for pitch, start, end in part_notes]
        midi.instruments.append(inst)
        parts.append(Part(role, 0 if is_drum else program, is_drum, role))
    labels = ClipLabels(
        genre="test", parts=parts, bpm=120.0, key="A", mode="minor", meter="4/4", mood=["calm"],
        energy="low", dynamics="moderate", texture="sparse",
    )  # fmt: skip
    return Piece(piece_id, midi, labels, [], [], [], [], [])


def piano_and_drum() -> Piece:
    """Piano A4 at 0.5-1.5 s and C5 held 1.5-4.0 s, a kick drum at 1.0 s."""
    return make_piece({(0, False, "lead"): [(69, 0.5, 1.5), (72, 1.5, 4.0)], (0, True, "drums"): [(36, 1.0, 1.1)]})


def rms_db(wav: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(wav, dtype=np.float64) ** 2) + 1e-20))


def spectrum_peak_hz(wav: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=8 * len(wav)))
    freqs = np.fft.rfftfreq(8 * len(wav), 1 / SR)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(spectrum[band])])


@pytest.fixture(scope="module")
def fonts() -> list[SoundFont]:
    try:
        return find_soundfonts()
    except NoSoundFontError as exc:
        pytest.skip(f"no General MIDI soundfont installed: {exc}")


@pytest.fixture(scope="module")
def font(fonts: list[SoundFont]) -> SoundFont:
    """The smallest font (fast to load), preferring TimGM6mb."""
    return next((f for f in fonts if f.name == "TimGM6mb"), fonts[0])


@pytest.fixture(scope="module")
def renderer():
    try:
        with Renderer(SR) as shared:
            yield shared
    except FluidSynthUnavailableError as exc:
        pytest.skip(str(exc))


def render(renderer: Renderer, piece: Piece, font: SoundFont, start: float, seconds: float | None, seed: int = 0):
    return renderer.render(piece, font, np.random.default_rng(seed), start, seconds)


# ----------------------------------------------------------------------------------------------- soundfonts


def test_discovery_finds_a_general_midi_soundfont(fonts):
    assert fonts
    assert len({f.name for f in fonts}) == len(fonts)
    for f in fonts:
        assert f.path.is_file() and f.format in ("sf2", "sf3") and f.licence


def test_env_var_adds_fonts_and_overrides_known_ones(tmp_path, monkeypatch, font):
    extra = tmp_path / "MyBand.sf2"
    extra.symlink_to(font.path)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "Other.sf2").symlink_to(font.path)
    override = tmp_path / "FluidR3_GM.sf2"
    override.symlink_to(font.path)
    monkeypatch.setenv(ENV_VAR, f"{extra}:{folder}:{override}:{tmp_path / 'missing.sf2'}")
    found = {f.name: f for f in find_soundfonts()}
    assert found["MyBand"].path == extra and "unknown" in found["MyBand"].licence
    assert found["Other"].path == folder / "Other.sf2"
    assert found["FluidR3_GM"].path == override and "MIT" in found["FluidR3_GM"].licence
    only = find_soundfonts(include_system=False)
    assert {f.name for f in only} == {"MyBand", "Other", "FluidR3_GM"}


def test_no_soundfont_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(NoSoundFontError, match="apt-get install fluid-soundfont-gm"):
        find_soundfonts(include_system=False)


def test_unplayable_sf3_is_skipped_with_a_reason(tmp_path, monkeypatch, caplog, renderer):
    broken = tmp_path / "Broken.sf3"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00sfbk" + bytes(64))
    assert soundfont_is_playable(broken)
    monkeypatch.setenv(ENV_VAR, str(broken))
    with caplog.at_level(logging.WARNING, logger="musiclm.data.soundfonts"):
        names = [f.name for f in find_soundfonts()]
    assert "Broken" not in names
    assert "skipping soundfont Broken" in caplog.text


def test_choose_soundfont_is_deterministic_and_weighted(fonts):
    picks = [choose_soundfont(fonts, np.random.default_rng(seed)).name for seed in range(20)]
    assert picks == [choose_soundfont(fonts, np.random.default_rng(seed)).name for seed in range(20)]
    heavy = [replace(fonts[0], weight=1.0), replace(fonts[0], name="never", weight=0.0)]
    assert {choose_soundfont(heavy, np.random.default_rng(s)).name for s in range(20)} == {fonts[0].name}


# ----------------------------------------------------------------------------------------------- rendering


def test_render_has_exact_length_level_and_timing(renderer, font):
    loud = make_piece({(48, False, "pad"): [(p, 0.0, 2.0) for p in (48, 55, 60, 64, 67)]})
    big_room = replace(default_mix(loud), reverb_room=0.9, reverb_level=1.0, reverb_sends=(127,))
    renderer.render(loud, font, np.random.default_rng(0), 0.0, 2.0, big_room)  # must not leak into the next
    piece = piano_and_drum()
    wav = render(renderer, piece, font, 0.0, 3.0)
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) == 3 * SR
    assert check_audio(wav, SR) is None
    assert -9.01 <= 20 * np.log10(np.abs(wav).max()) <= -4.99  # a low-energy piece's master level
    assert rms_db(wav[: int(0.45 * SR)]) < -80  # nothing before the first note
    assert rms_db(wav[int(0.55 * SR) : int(0.95 * SR)]) > -35
    assert spectrum_peak_hz(wav[int(0.55 * SR) : int(0.95 * SR)], 200, 2000) == pytest.approx(440, rel=0.02)
    assert piece.labels.soundfont == font.name


def test_window_inside_a_held_note_sounds_from_the_start(renderer, font):
    organ = make_piece({(19, False, "pad"): [(57, 0.0, 6.0)]})
    wav = render(renderer, organ, font, 3.0, 1.0)
    assert len(wav) == SR
    head, body = rms_db(wav[int(0.006 * SR) : int(0.03 * SR)]), rms_db(wav[int(0.2 * SR) : int(0.8 * SR)])
    assert head > body - 6  # already at full level: started before the window, not attacked at it
    assert spectrum_peak_hz(wav[: int(0.5 * SR)], 150, 400) == pytest.approx(220, rel=0.02)
    piano = render(renderer, piano_and_drum(), font, 2.5, 1.0)
    assert rms_db(piano[: int(0.05 * SR)]) > -40
    assert spectrum_peak_hz(piano[: int(0.5 * SR)], 300, 1500) == pytest.approx(523.25, rel=0.02)


def test_whole_piece_render_keeps_a_release_tail(renderer, font):
    piece = piano_and_drum()
    wav = renderer.render(piece, font, np.random.default_rng(0), tail=1.0)
    assert len(wav) == round((piece.seconds + 1.0) * SR)
    assert rms_db(wav[int(4.05 * SR) : int(4.3 * SR)]) > -76  # release tail after the note-off at 4.0 s


def test_sustain_pedal_before_a_window_keeps_notes_ringing(renderer, font):
    pedalled = make_piece({(0, False, "chords"): [(60, 0.0, 0.2), (64, 0.0, 0.2)]})
    pedalled.midi.instruments[0].control_changes = [
        pretty_midi.ControlChange(64, 127, 0.0),
        pretty_midi.ControlChange(64, 0, 4.0),
    ]
    window = render(renderer, pedalled, font, 2.5, 0.5)  # the keys were released 2.3 s earlier
    assert check_audio(window, SR) is None
    pedalled.midi.instruments[0].control_changes[1].time = 0.3
    assert "silent" in check_audio(render(renderer, pedalled, font, 2.5, 0.5), SR)


def test_a_window_without_music_is_zeros_not_amplified_noise(renderer, font):
    wav = render(renderer, piano_and_drum(), font, 10.0, 1.0)
    assert not wav.any()


def test_missing_drum_kit_falls_back_to_the_standard_kit(renderer, fonts):
    piece = make_piece({(0, True, "drums"): [(38, 0.1, 0.2), (42, 0.5, 0.6)]})
    mix = default_mix(piece)
    for font in sorted(fonts, key=lambda f: f.format != "sf2")[:2]:
        standard = renderer.render(piece, font, np.random.default_rng(0), 0.0, 1.0, mix)
        piece.midi.instruments[0].program = 127  # no General MIDI font has a kit there
        fallback = renderer.render(piece, font, np.random.default_rng(0), 0.0, 1.0, mix)
        piece.midi.instruments[0].program = 0
        assert check_audio(fallback, SR) is None
        np.testing.assert_allclose(fallback, standard, rtol=0, atol=1e-6)


def test_render_is_deterministic_for_a_seed(renderer, font):
    piece = piano_and_drum()
    first = render(renderer, piece, font, 0.0, 2.0, seed=3)
    render(renderer, make_piece({(33, False, "bass"): [(40, 0.0, 1.0)]}), font, 0.0, 1.0, seed=9)
    again = render(renderer, piece, font, 0.0, 2.0, seed=3)
    other = render(renderer, piece, font, 0.0, 2.0, seed=4)
    # Equal up to float rounding (FluidSynth's reverb keeps a residue near -150 dBFS between pieces).
    np.testing.assert_allclose(first, again, rtol=0, atol=1e-6)
    fresh = Renderer(SR).render(piece, font, np.random.default_rng(3), 0.0, 2.0)
    np.testing.assert_allclose(first, fresh, rtol=0, atol=1e-6)
    assert not np.allclose(first, other)


def test_two_soundfonts_sound_different(renderer, fonts):
    if len(fonts) < 2:
        pytest.skip("only one soundfont installed")
    piece = piano_and_drum()
    mix = default_mix(piece)
    two = sorted(fonts, key=lambda f: f.format != "sf2")[:2]  # .sf2 first: no decoding, faster
    a, b = (renderer.render(piece, f, np.random.default_rng(0), 0.0, 3.0, mix) for f in two)
    spec_a, spec_b = (np.log10(np.abs(np.fft.rfft(x[int(0.5 * SR) : int(1.5 * SR)])) + 1e-6) for x in (a, b))
    assert np.mean(np.abs(spec_a - spec_b)) * 20 > 3.0  # mean log-spectral difference in dB


def test_more_instruments_than_channels_all_sound(font):
    notes = {
        (program, False, "chords"): [(60 + k % 12, 0.2 * k, 0.2 * k + 0.15)] for k, program in enumerate(range(20))
    }
    notes[(0, True, "drums")] = [(38, 4.0, 4.1)]
    piece = make_piece(notes)
    with Renderer(SR, max_channels=16) as small:
        wav = small.render(piece, font, np.random.default_rng(0), 0.0, 4.5, default_mix(piece))
    for k in range(21):
        assert rms_db(wav[int((0.2 * k + 0.02) * SR) : int((0.2 * k + 0.12) * SR)]) > -45, f"part {k} is silent"


def test_render_piece_uses_a_shared_renderer(font):
    piece = piano_and_drum()
    wav = render_piece(piece, font, np.random.default_rng(1), start=0.25, seconds=0.5)
    assert len(wav) == SR // 2 and piece.labels.soundfont == font.name


def test_invalid_requests_are_rejected(renderer, font):
    piece = piano_and_drum()
    with pytest.raises(ValueError, match="start"):
        render(renderer, piece, font, -1.0, 1.0)
    with pytest.raises(ValueError, match="mix has settings for 1 parts"):
        renderer.render(piece, font, np.random.default_rng(0), 0.0, 1.0, MixSettings((0.0,), (0,), (0,)))


# ----------------------------------------------------------------------------------------------- mixing


def test_channel_allocation_puts_drums_on_channel_nine():
    instruments = [pretty_midi.Instrument(p) for p in range(20)] + [
        pretty_midi.Instrument(0, is_drum=True),
        pretty_midi.Instrument(25, is_drum=True),
    ]
    channels = allocate_channels(instruments, 64)
    assert sorted(c.number for c in channels if c.is_drum) == [9, 25]
    assert all(c.number % 16 != 9 for c in channels if not c.is_drum)
    assert sorted(i for c in channels for i in c.instruments) == list(range(22))
    assert len({c.number for c in channels}) == 22
    merged = allocate_channels([*instruments, pretty_midi.Instrument(3)], 16)
    assert len(merged) == 16 and sorted(i for c in merged for i in c.instruments) == list(range(23))
    assert any({3, 22} <= set(c.instruments) for c in merged)  # same program shares a channel


def test_random_mix_is_sensible_and_reproducible():
    piece = make_piece(
        {(0, False, "lead"): [], (48, False, "pad"): [], (33, False, "bass"): [], (0, True, "drums"): []}
    )
    assert instrument_roles(piece) == ["lead", "pad", "bass", "drums"]
    for seed in range(30):
        mix = random_mix(piece, np.random.default_rng(seed))
        assert mix == random_mix(piece, np.random.default_rng(seed))
        assert -9.0 <= mix.peak_dbfs <= -5.0  # a low-energy piece is mastered quieter
        lead, pad, bass, drums = mix.gains_db
        assert lead > pad and bass > pad and drums > pad
        assert mix.reverb_sends[1] > mix.reverb_sends[2]  # pads wetter than bass
        assert 0.0 <= mix.reverb_room <= 1.0 and 0.0 <= mix.reverb_level <= 1.0
        assert mix.chorus_sends[2] == mix.chorus_sends[3] == 0


def test_master_level_follows_the_energy():
    piece = make_piece({(0, False, "lead"): [], (0, True, "drums"): []})
    peaks = {}
    for energy in ("low", "medium", "high"):
        piece.labels.energy = energy
        peaks[energy] = [random_mix(piece, np.random.default_rng(seed)).peak_dbfs for seed in range(20)]
    assert max(peaks["low"]) <= min(peaks["medium"]) and max(peaks["medium"]) <= min(peaks["high"])
    assert max(peaks["high"]) <= -0.5


# ----------------------------------------------------------------------------------------------- quality


def test_check_audio_catches_bad_clips(sine):
    good = sine(440, 2.0, SR, 0.5)
    assert check_audio(good, SR) is None
    assert "silent" in check_audio(np.zeros(SR, np.float32), SR)
    assert "silent" in check_audio(good * 1e-4, SR)
    half = good.copy()
    half[SR // 2 :] = 0
    assert "mostly silent" in check_audio(half, SR)
    clipped = np.clip(good * 3, -1, 1)
    assert "clipped" in check_audio(clipped, SR)
    spikes = good.copy()
    spikes[:3] = 1.0
    assert check_audio(spikes, SR) is None  # a tiny count is tolerated
    nan = good.copy()
    nan[100] = np.nan
    assert "NaN" in check_audio(nan, SR)
    inf = good.copy()
    inf[5] = np.inf
    assert "inf" in check_audio(inf, SR)
    assert check_audio(np.zeros(0, np.float32), SR) == "empty"
