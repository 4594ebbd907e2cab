"""The style table: what each style may choose for tempo, meter, mode, harmony, band, grooves and phrasing.

Writers are named by string (see :mod:`musiclm.data.composer.accompaniment`); a chords program of ``-1``
means "the lead instrument plays its own accompaniment" (the piano's left hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MelodySpec:
    """How a style's lead line moves."""

    density: float = 1.0  # mean notes per felt beat
    leap: float = 0.3  # tendency to leap rather than step (0-1)
    legato: float = 0.9  # sounding fraction of each note's length (0.5 staccato .. 1.0 legato)
    phrase_bars: int = 4  # phrase length: 2 or 4 bars
    syncopation: float = 0.2  # tendency to start notes off the beat (0-1)


@dataclass(frozen=True)
class StyleSpec:
    """One style of the composer and the choices it allows."""

    name: str
    tempo: tuple[float, float]  # felt beats per minute (dotted quarters in 6/8)
    meters: dict[str, float]
    modes: dict[str, float]
    idiom: str  # progression pool, see progressions.POOLS
    colours: dict[str, float]  # chord colours: triad / seventh / extended / power / sus
    form: str  # form template, see form.FORMS
    lead: tuple[int, ...]
    chords: tuple[tuple[int, str], ...]  # (program, comping writer); program -1 = same as the lead
    bass: tuple[tuple[int, str], ...] = ()
    bass_chance: float = 1.0
    pad: tuple[int, ...] = ()
    pad_chance: float = 0.0
    counter: tuple[int, ...] = ()
    counter_chance: float = 0.0
    counter_kinds: tuple[str, ...] = ("harmony", "guide")
    grooves: tuple[str, ...] = ()  # drum grooves; empty: no drum kit
    drum_chance: float = 1.0
    kits: tuple[int, ...] = (0,)
    percussion: tuple[str, ...] = ()
    percussion_chance: float = 0.0
    timpani_chance: float = 0.0
    swing: tuple[float, float] = (0.5, 0.5)  # range of the long fraction of a swung pair
    swing_unit: float = 1.0  # 1.0 swung eighths, 0.5 swung sixteenths
    melody: MelodySpec = field(default_factory=MelodySpec)
    humanize_ms: float = 8.0  # timing jitter (standard deviation)
    loudness: float = 90.0  # base MIDI velocity
    quantized_drums: bool = False  # machine-tight drums (electronic styles)


def _spec(**kwargs) -> StyleSpec:
    return StyleSpec(**kwargs)


STYLES: dict[str, StyleSpec] = {
    s.name: s
    for s in [
        _spec(name="classical_piano", tempo=(66, 132), meters={"4/4": 3, "3/4": 2, "6/8": 1},
              modes={"major": 3, "minor": 2}, idiom="classical", colours={"triad": 1}, form="classical",
              lead=(0, 0, 1), chords=((-1, "alberti"), (-1, "alberti"), (-1, "arpeggio"), (-1, "oompah")),
              melody=MelodySpec(density=1.5, leap=0.3, legato=0.9), humanize_ms=10, loudness=80),
        _spec(name="baroque", tempo=(72, 120), meters={"4/4": 3, "3/4": 2}, modes={"major": 3, "minor": 2},
              idiom="classical", colours={"triad": 3, "seventh": 1}, form="classical",
              lead=(40, 68, 73, 74, 56), chords=((6, "arpeggio"), (6, "block"), (19, "block"), (48, "pulse")),
              bass=((42, "walking"), (70, "walking"), (43, "walking")),
              counter=(40, 73, 68, 71), counter_chance=0.6, counter_kinds=("harmony",),
              melody=MelodySpec(density=2.2, leap=0.35, legato=0.8), humanize_ms=6, loudness=82),
        _spec(name="string_quartet", tempo=(60, 126), meters={"4/4": 3, "3/4": 2, "6/8": 1},
              modes={"major": 3, "minor": 2}, idiom="classical", colours={"triad": 3, "seventh": 1},
              form="classical", lead=(40,), chords=((41, "arpeggio"), (41, "block"), (41, "pulse")),
              bass=((42, "root_fifth"), (42, "whole"), (42, "walking")),
              counter=(40,), counter_chance=0.9, counter_kinds=("harmony", "guide"),
              melody=MelodySpec(density=1.3, leap=0.3, legato=0.95), humanize_ms=12, loudness=78),
        _spec(name="orchestral", tempo=(64, 120), meters={"4/4": 3, "3/4": 1, "6/8": 1},
              modes={"minor": 3, "major": 2, "lydian": 1}, idiom="cinematic", colours={"triad": 3, "sus": 1},
              form="cinematic", lead=(60, 56, 73, 68, 48, 40, 71),
              chords=((48, "ostinato"), (48, "block"), (49, "block"), (44, "ostinato"), (45, "pulse")),
              bass=((43, "whole"), (43, "root_fifth"), (58, "whole")),
              pad=(52, 49, 89, 61), pad_chance=0.7, counter=(60, 57, 71, 73, 42), counter_chance=0.7,
              grooves=("cinematic",), drum_chance=0.6, kits=(48,), timpani_chance=0.6,
              melody=MelodySpec(density=0.8, leap=0.45, legato=0.98), humanize_ms=12, loudness=88),
        _spec(name="jazz_trio", tempo=(96, 200), meters={"4/4": 5, "3/4": 1}, modes={"major": 3, "minor": 2},
              idiom="jazz", colours={"seventh": 2, "extended": 2}, form="jazz", lead=(0, 0, 11, 26),
              chords=((0, "swing_comp"),), bass=((32, "walking"),), grooves=("swing", "brush"),
              kits=(32, 40), swing=(0.6, 0.68), melody=MelodySpec(density=1.7, leap=0.35, legato=0.85,
                                                                   syncopation=0.45),
              humanize_ms=12, loudness=82),
        _spec(name="swing_big_band", tempo=(126, 210), meters={"4/4": 1}, modes={"major": 4, "minor": 1},
              idiom="jazz", colours={"seventh": 2, "extended": 1}, form="jazz", lead=(56, 65, 66, 71, 57),
              chords=((61, "stabs"), (0, "swing_comp"), (26, "pulse")), bass=((32, "walking"),),
              counter=(57, 66, 65, 56, 67), counter_chance=0.8, counter_kinds=("harmony", "stabs"),
              grooves=("swing",), kits=(32, 0), swing=(0.6, 0.68),
              melody=MelodySpec(density=1.4, leap=0.35, legato=0.8, syncopation=0.5), humanize_ms=10,
              loudness=98),
        _spec(name="blues", tempo=(66, 120), meters={"4/4": 1}, modes={"blues": 4, "minor": 1}, idiom="blues",
              colours={"seventh": 1}, form="blues", lead=(29, 27, 22, 66, 0, 26),
              chords=((0, "pulse"), (16, "block"), (27, "strum"), (0, "swing_comp")),
              bass=((33, "boogie"), (32, "walking"), (33, "walking")), grooves=("shuffle",), kits=(0, 8),
              swing=(0.64, 0.7), melody=MelodySpec(density=1.1, leap=0.3, legato=0.8, phrase_bars=2,
                                                    syncopation=0.4),
              humanize_ms=10, loudness=90),
        _spec(name="rock", tempo=(96, 150), meters={"4/4": 1}, modes={"major": 3, "mixolydian": 1, "minor": 2},
              idiom="rock", colours={"power": 2, "triad": 1}, form="song", lead=(29, 30, 27, 18, 81),
              chords=((30, "power8"), (29, "power8"), (25, "strum"), (27, "strum")),
              bass=((33, "eighths"), (34, "eighths")), pad=(18, 16), pad_chance=0.3,
              grooves=("rock", "rock_drive"), kits=(0, 16, 8), percussion=("tambourine",),
              percussion_chance=0.2, melody=MelodySpec(density=1.2, leap=0.3, legato=0.85),
              humanize_ms=6, loudness=100),
        _spec(name="metal", tempo=(120, 190), meters={"4/4": 1}, modes={"minor": 3, "phrygian": 2},
              idiom="metal", colours={"power": 1}, form="song", lead=(30, 29, 81),
              chords=((30, "chug"), (30, "power8")), bass=((34, "chug"), (34, "eighths")),
              grooves=("metal", "rock_drive"), kits=(16,),
              melody=MelodySpec(density=1.6, leap=0.35, legato=0.8), humanize_ms=4, loudness=110),
        _spec(name="punk", tempo=(160, 210), meters={"4/4": 1}, modes={"major": 3, "minor": 1}, idiom="punk",
              colours={"power": 1}, form="song", lead=(29, 30), chords=((29, "power8"), (30, "power_sustain")),
              bass=((34, "eighths"),), grooves=("punk",), kits=(0, 16),
              melody=MelodySpec(density=1.0, leap=0.25, legato=0.85, phrase_bars=2), humanize_ms=6,
              loudness=112),
        _spec(name="funk", tempo=(92, 118), meters={"4/4": 1}, modes={"dorian": 3, "mixolydian": 2, "minor": 1},
              idiom="funk", colours={"seventh": 1, "extended": 1}, form="song", lead=(61, 65, 66, 56, 81, 4),
              chords=((28, "scratch"), (7, "clav"), (27, "scratch"), (4, "stabs")),
              bass=((36, "syncopated"), (37, "syncopated"), (33, "syncopated")),
              counter=(61, 56, 66), counter_chance=0.5, counter_kinds=("stabs",),
              grooves=("funk",), kits=(0, 8), percussion=("congas", "tambourine"), percussion_chance=0.4,
              swing=(0.5, 0.56), swing_unit=0.5,
              melody=MelodySpec(density=1.4, leap=0.3, legato=0.6, phrase_bars=2, syncopation=0.6),
              humanize_ms=5, loudness=98),
        _spec(name="disco", tempo=(112, 128), meters={"4/4": 1}, modes={"minor": 2, "major": 2, "dorian": 1},
              idiom="disco", colours={"seventh": 1, "triad": 1}, form="song", lead=(48, 62, 73, 81, 65),
              chords=((27, "scratch"), (4, "stabs"), (0, "pulse")), bass=((33, "octave"), (38, "octave")),
              pad=(48, 50, 49), pad_chance=0.8, grooves=("disco",), kits=(0, 24),
              percussion=("tambourine", "shaker", "congas"), percussion_chance=0.5,
              melody=MelodySpec(density=1.2, leap=0.3, legato=0.85, syncopation=0.35), humanize_ms=4,
              loudness=100),
        _spec(name="house", tempo=(118, 128), meters={"4/4": 1}, modes={"minor": 3, "dorian": 1, "major": 2},
              idiom="electronic", colours={"seventh": 2, "extended": 1}, form="edm", lead=(81, 80, 0, 4, 62),
              chords=((0, "stabs"), (4, "stabs"), (90, "block"), (89, "block")),
              bass=((38, "offbeat"), (39, "offbeat"), (38, "syncopated")), pad=(89, 88, 90, 94), pad_chance=0.6,
              grooves=("house",), kits=(24, 25), percussion=("shaker",), percussion_chance=0.6,
              melody=MelodySpec(density=1.0, leap=0.3, legato=0.7, phrase_bars=2, syncopation=0.5),
              humanize_ms=0, loudness=100, quantized_drums=True),
        _spec(name="techno", tempo=(124, 140), meters={"4/4": 1}, modes={"minor": 3, "phrygian": 1, "dorian": 1},
              idiom="electronic", colours={"triad": 1, "sus": 1}, form="edm", lead=(81, 87, 84, 80),
              chords=((81, "stabs"), (90, "block"), (95, "block")), bass=((39, "rolling"), (38, "offbeat")),
              pad=(95, 91, 89), pad_chance=0.6, grooves=("techno",), kits=(24, 25),
              melody=MelodySpec(density=2.0, leap=0.2, legato=0.5, phrase_bars=2, syncopation=0.3),
              humanize_ms=0, loudness=102, quantized_drums=True),
        _spec(name="drum_and_bass", tempo=(168, 178), meters={"4/4": 1}, modes={"minor": 1},
              idiom="electronic", colours={"extended": 1, "seventh": 1}, form="edm", lead=(4, 80, 81, 73, 0),
              chords=((89, "block"), (4, "block"), (88, "block"), (50, "block")),
              bass=((38, "sub"), (39, "sub")), pad=(89, 91, 94), pad_chance=0.7, grooves=("breakbeat",),
              kits=(0, 24, 8), melody=MelodySpec(density=0.6, leap=0.35, legato=0.95),
              humanize_ms=2, loudness=100, quantized_drums=True),
        _spec(name="hip_hop", tempo=(80, 98), meters={"4/4": 1}, modes={"minor": 3, "dorian": 2}, idiom="hiphop",
              colours={"seventh": 1, "triad": 1}, form="song", lead=(73, 80, 11, 10, 0, 4),
              chords=((4, "block"), (0, "stabs"), (48, "block"), (5, "block")),
              bass=((38, "hiphop"), (33, "hiphop"), (39, "hiphop")), grooves=("boom_bap", "trap"),
              kits=(25, 0), swing=(0.52, 0.6), swing_unit=0.5,
              melody=MelodySpec(density=1.0, leap=0.3, legato=0.8, phrase_bars=2, syncopation=0.4),
              humanize_ms=4, loudness=96),
        _spec(name="lofi", tempo=(66, 90), meters={"4/4": 1}, modes={"major": 2, "dorian": 2, "minor": 1},
              idiom="lofi", colours={"extended": 2, "seventh": 1}, form="song", lead=(4, 11, 0, 73, 59, 26),
              chords=((4, "block"), (0, "block"), (26, "arpeggio"), (5, "block")),
              bass=((33, "hiphop"), (32, "root_fifth"), (35, "whole")), pad=(89, 88), pad_chance=0.4,
              grooves=("lofi",), kits=(0, 40, 25), swing=(0.56, 0.62), swing_unit=0.5,
              melody=MelodySpec(density=0.9, leap=0.3, legato=0.9, phrase_bars=2, syncopation=0.4),
              humanize_ms=15, loudness=70),
        _spec(name="soul", tempo=(64, 100), meters={"4/4": 1}, modes={"major": 2, "minor": 1, "dorian": 1},
              idiom="soul", colours={"seventh": 2, "extended": 1}, form="song", lead=(65, 66, 56, 85, 4),
              chords=((4, "pulse"), (4, "block"), (0, "gospel")), bass=((33, "syncopated"), (33, "root_fifth")),
              pad=(48, 49), pad_chance=0.6, counter=(61, 56, 57), counter_chance=0.4,
              counter_kinds=("stabs", "guide"), grooves=("boom_bap", "lofi"), kits=(0,),
              swing=(0.5, 0.58), swing_unit=0.5,
              melody=MelodySpec(density=1.0, leap=0.3, legato=0.85, syncopation=0.45), humanize_ms=8,
              loudness=86),
        _spec(name="reggae", tempo=(66, 90), meters={"4/4": 1}, modes={"major": 2, "minor": 2}, idiom="reggae",
              colours={"triad": 3, "seventh": 1}, form="song", lead=(22, 56, 65, 81, 26),
              chords=((27, "skank"), (28, "skank"), (16, "skank")), pad=(16, 17), pad_chance=0.4,
              bass=((33, "one_drop"), (34, "one_drop")), grooves=("one_drop",), kits=(0, 8),
              swing=(0.52, 0.58), swing_unit=0.5,
              melody=MelodySpec(density=0.9, leap=0.3, legato=0.8, phrase_bars=2, syncopation=0.4),
              humanize_ms=8, loudness=90),
        _spec(name="bossa_nova", tempo=(110, 140), meters={"4/4": 1}, modes={"major": 3, "minor": 2},
              idiom="bossa", colours={"seventh": 2, "extended": 2}, form="song", lead=(73, 66, 65, 11, 0, 71),
              chords=((24, "bossa_comp"), (0, "bossa_comp")), bass=((32, "bossa"), (33, "bossa")),
              grooves=("bossa",), drum_chance=0.8, kits=(40, 0, 32), percussion=("shaker", "cabasa"),
              percussion_chance=0.3, melody=MelodySpec(density=1.1, leap=0.3, legato=0.9, syncopation=0.5),
              humanize_ms=10, loudness=70),
        _spec(name="latin", tempo=(100, 126), meters={"4/4": 1}, modes={"minor": 3, "major": 2}, idiom="latin",
              colours={"triad": 1, "seventh": 1}, form="song", lead=(56, 57, 73, 0, 65),
              chords=((0, "montuno"),), bass=((33, "tumbao"), (32, "tumbao")),
              counter=(57, 56, 66), counter_chance=0.6, counter_kinds=("harmony", "stabs"),
              grooves=("latin",), drum_chance=0.7, kits=(0,), percussion=("congas", "bongos", "clave"),
              percussion_chance=0.9, melody=MelodySpec(density=1.2, leap=0.3, legato=0.8, syncopation=0.5),
              humanize_ms=6, loudness=95),
        _spec(name="tango", tempo=(112, 130), meters={"4/4": 1}, modes={"minor": 4, "major": 1}, idiom="tango",
              colours={"triad": 2, "seventh": 1}, form="song", lead=(23, 21, 40, 48),
              chords=((0, "stabs"), (0, "pulse")), bass=((43, "tango"), (32, "tango")),
              counter=(40, 23), counter_chance=0.5, counter_kinds=("harmony", "guide"),
              melody=MelodySpec(density=1.4, leap=0.35, legato=0.75, syncopation=0.35), humanize_ms=10,
              loudness=92),
        _spec(name="country", tempo=(88, 140), meters={"4/4": 4, "3/4": 1, "2/4": 0.5},
              modes={"major": 4, "mixolydian": 1},
              idiom="country", colours={"triad": 1}, form="song", lead=(110, 22, 27, 105, 25),
              chords=((25, "strum"), (25, "fingerpick"), (105, "fingerpick")),
              bass=((33, "root_fifth"), (32, "root_fifth")), counter=(110, 27, 22), counter_chance=0.4,
              counter_kinds=("guide",), grooves=("train", "country"), kits=(0, 40),
              melody=MelodySpec(density=1.1, leap=0.3, legato=0.85), humanize_ms=8, loudness=90),
        _spec(name="folk", tempo=(76, 126), meters={"4/4": 3, "3/4": 2, "6/8": 2, "2/4": 1},
              modes={"major": 3, "minor": 2, "dorian": 1, "mixolydian": 1}, idiom="folk", colours={"triad": 1},
              form="song", lead=(73, 22, 74, 110, 40, 21, 78, 75),
              chords=((25, "strum"), (25, "fingerpick"), (24, "fingerpick"), (46, "arpeggio")),
              bass=((32, "root_fifth"),), bass_chance=0.5, grooves=("folk_light",), drum_chance=0.3,
              percussion=("tambourine", "shaker"), percussion_chance=0.4,
              melody=MelodySpec(density=1.1, leap=0.3, legato=0.85), humanize_ms=12, loudness=78),
        _spec(name="celtic", tempo=(96, 124), meters={"6/8": 3, "4/4": 2, "3/4": 1, "2/4": 0.5},
              modes={"dorian": 2, "mixolydian": 2, "major": 2, "minor": 1}, idiom="celtic", colours={"triad": 1},
              form="tune", lead=(110, 72, 73, 109, 21, 40, 75),
              chords=((25, "strum"), (46, "arpeggio"), (24, "strum")), bass=((32, "root_fifth"),),
              bass_chance=0.4, counter=(73, 110, 72), counter_chance=0.4, counter_kinds=("harmony",),
              grooves=("jig",), drum_chance=0.6, percussion=("bodhran",), percussion_chance=0.3,
              melody=MelodySpec(density=2.8, leap=0.4, legato=0.75), humanize_ms=8, loudness=88),
        _spec(name="march", tempo=(104, 124), meters={"2/4": 2, "4/4": 2, "6/8": 1},
              modes={"major": 4, "minor": 1}, idiom="march", colours={"triad": 1}, form="march",
              lead=(56, 72, 71, 73, 60), chords=((60, "oompah"), (57, "oompah"), (61, "oompah")),
              bass=((58, "oompah"),), counter=(57, 60, 71), counter_chance=0.7, counter_kinds=("harmony",),
              grooves=("march",), kits=(0, 48), melody=MelodySpec(density=1.3, leap=0.35, legato=0.7),
              humanize_ms=6, loudness=100),
        _spec(name="waltz", tempo=(120, 180), meters={"3/4": 1}, modes={"major": 3, "minor": 2}, idiom="waltz",
              colours={"triad": 3, "seventh": 1}, form="waltz", lead=(40, 48, 73, 21, 0, 71),
              chords=((48, "oompah"), (45, "oompah"), (0, "oompah"), (21, "oompah")),
              bass=((42, "oompah"), (43, "oompah"), (32, "oompah"), (58, "oompah")),
              grooves=("waltz",), drum_chance=0.35, kits=(40, 0), percussion=("triangle",),
              percussion_chance=0.2, melody=MelodySpec(density=1.0, leap=0.35, legato=0.95),
              humanize_ms=10, loudness=84),
        _spec(name="ambient", tempo=(60, 84), meters={"4/4": 3, "3/4": 1},
              modes={"lydian": 2, "major": 2, "minor": 1, "dorian": 1}, idiom="ambient",
              colours={"sus": 1, "extended": 2}, form="ambient", lead=(11, 8, 10, 108, 79, 75, 14, 0),
              chords=((88, "block"), (89, "block"), (92, "block"), (94, "block"), (95, "block"),
                      (46, "arpeggio")),
              pad=(91, 52, 53, 49, 88, 89, 94), pad_chance=0.9, bass=((38, "whole"), (35, "whole"), (43, "whole")),
              bass_chance=0.5, percussion=("shaker",), percussion_chance=0.25,
              melody=MelodySpec(density=0.5, leap=0.4, legato=1.0), humanize_ms=15, loudness=62),
        _spec(name="chiptune", tempo=(120, 170), meters={"4/4": 1}, modes={"major": 3, "minor": 2},
              idiom="chiptune", colours={"triad": 1}, form="song", lead=(80, 81),
              chords=((80, "arp16"), (81, "arp16")), bass=((80, "arp_bass"), (38, "arp_bass"), (81, "octave")),
              grooves=("chiptune",), kits=(24,), melody=MelodySpec(density=1.6, leap=0.35, legato=0.7),
              humanize_ms=0, loudness=90, quantized_drums=True),
        _spec(name="synthwave", tempo=(84, 118), meters={"4/4": 1}, modes={"minor": 3, "dorian": 1},
              idiom="synthwave", colours={"triad": 2, "seventh": 1}, form="song", lead=(81, 80, 87, 62),
              chords=((90, "block"), (81, "arpeggio"), (62, "stabs")), bass=((39, "octave"), (38, "eighths")),
              pad=(90, 89, 95), pad_chance=0.8, grooves=("synthwave",), kits=(24, 25),
              melody=MelodySpec(density=1.0, leap=0.3, legato=0.85), humanize_ms=1, loudness=96,
              quantized_drums=True),
        _spec(name="gospel", tempo=(66, 108), meters={"4/4": 3, "6/8": 2}, modes={"major": 4, "minor": 1},
              idiom="gospel", colours={"seventh": 2, "triad": 1}, form="song", lead=(52, 53, 0, 16),
              chords=((0, "gospel"), (16, "block"), (19, "block")), pad=(16, 19, 52), pad_chance=0.7,
              bass=((33, "walking"), (33, "root_fifth")), grooves=("gospel",), kits=(0,),
              percussion=("handclaps",), percussion_chance=0.5, swing=(0.58, 0.66),
              melody=MelodySpec(density=0.9, leap=0.35, legato=0.95), humanize_ms=10, loudness=92),
    ]
}
"""Every style the composer knows, by name."""
