"""Drum grooves written as step strings, section-aware variation, and fills into section changes.

A pattern is one string per drum sound over a bar (or two) of 16th-note steps: ``X`` accent, ``x`` normal,
``o`` soft, ``g`` ghost, ``.`` rest.
"""

from __future__ import annotations

import numpy as np

from musiclm.data.composer.common import Meter, Note, Section, velocity

KICK, RIM, SNARE, CLAP, SNARE2 = 36, 37, 38, 39, 40
FLOOR_TOM, LOW_TOM, MID_TOM, HIGH_TOM = 43, 45, 47, 50
HAT, PEDAL_HAT, OPEN_HAT = 42, 44, 46
CRASH, RIDE, RIDE_BELL, TAMBOURINE, COWBELL, CRASH2 = 49, 51, 53, 54, 56, 57
BONGO_HI, BONGO_LO, CONGA_MUTE, CONGA_OPEN, CONGA_LO = 60, 61, 62, 63, 64
TIMBALE_HI, TIMBALE_LO, CABASA, MARACAS, CLAVES, WOODBLOCK, TRIANGLE = 65, 66, 69, 70, 75, 76, 81

_LEVEL = {"X": 112.0, "x": 92.0, "o": 64.0, "g": 44.0}

Groove = dict[int, str]

GROOVES: dict[str, dict[str, Groove]] = {
    # 4/4 ---------------------------------------------------------------------------------------------
    "rock": {
        "4/4": {KICK: "x.......x.x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "rock_drive": {
        "4/4": {KICK: "x.....x.x.x.....", SNARE: "....X.......X...", HAT: "X.x.X.x.X.x.X.x."},
    },
    "metal": {
        "4/4": {KICK: "xxxxxxxxxxxxxxxx", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
    },
    "punk": {
        "4/4": {KICK: "x...x...x...x...", SNARE: "..X...X...X...X.", HAT: "x.x.x.x.x.x.x.x."},
    },
    "funk": {
        "4/4": {KICK: "x.....x...x..x..", SNARE: "....X..g.g..X..g", HAT: "xoxoxoxoxoxoxoxo"},
    },
    "disco": {
        "4/4": {KICK: "x...x...x...x...", SNARE: "....X.......X...", HAT: "x.o.x.o.x.o.x.o.",
                OPEN_HAT: "..x...x...x...x."},
    },
    "house": {
        "4/4": {KICK: "X...X...X...X...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x.",
                HAT: "o.o.o.o.o.o.o.o."},
    },
    "techno": {
        "4/4": {KICK: "X...X...X...X...", OPEN_HAT: "..x...x...x...x.", HAT: "gogogogogogogogo",
                RIM: "......x.....x..."},
    },
    "breakbeat": {
        "4/4": {KICK: "x.........x.....", SNARE: "....X..g.g..X...", HAT: "x.x.x.x.x.x.x.x.",
                RIDE: "................"},
    },
    "boom_bap": {
        "4/4": {KICK: "x......x..x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "trap": {
        "4/4": {KICK: "x......x..x.....", CLAP: "........X.......", HAT: "xxxxxxxxxoxoxxxx"},
    },
    "lofi": {
        "4/4": {KICK: "x......x.x......", RIM: "....x.......x...", HAT: "o.o.o.o.o.o.o.o."},
    },
    "one_drop": {
        "4/4": {KICK: "........X.......", RIM: "........X.......", HAT: "x.x.x.x.x.x.x.x."},
    },
    "bossa": {
        "4/4": {KICK: "x..xx..xx..xx..x", RIM: "x..x..x...x..x..", HAT: "o.o.o.o.o.o.o.o."},
    },
    "swing": {
        "4/4": {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...", KICK: "g...g...g...g..."},
        "3/4": {RIDE: "x...x.x.x.x.", PEDAL_HAT: "....x...x...", KICK: "g..........."},
    },
    "brush": {
        "4/4": {SNARE: "o.g.o.g.o.g.o.g.", PEDAL_HAT: "....x.......x...", KICK: "g.......g......."},
        "3/4": {SNARE: "o.g.o.g.o.g.", PEDAL_HAT: "....x...x...", KICK: "g..........."},
    },
    "shuffle": {
        "4/4": {KICK: "x.......x.......", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "train": {
        "4/4": {KICK: "x.......x.......", SNARE: "gxgXgxgXgxgXgxgX"},
        "3/4": {KICK: "x...........", SNARE: "....x...x..."},
    },
    "country": {
        "4/4": {KICK: "x.......x.......", RIM: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        "3/4": {KICK: "x...........", RIM: "....x...x...", HAT: "x.x.x.x.x.x."},
    },
    "gospel": {
        "4/4": {KICK: "x.....x.x.......", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x.",
                CLAP: "....x.......x..."},
        "6/8": {KICK: "x.....x.....", SNARE: "......X.....", HAT: "x.x.x.x.x.x.", CLAP: "......x....."},
    },
    "chiptune": {
        "4/4": {KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "synthwave": {
        "4/4": {KICK: "x...x...x...x...", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    },
    "cinematic": {
        "4/4": {KICK: "X.......x.......", CRASH2: "................", LOW_TOM: "x.....x.....x.x."},
        "3/4": {KICK: "X...........", LOW_TOM: "x.....x.x..."},
        "6/8": {KICK: "X.....x.....", LOW_TOM: "x.x.x.x.x.x."},
    },
    "march": {
        "4/4": {KICK: "x...x...x...x...", SNARE: "X.x.x.xxX.x.x.xx", CRASH2: "........x......."},
        "2/4": {KICK: "x...x...", SNARE: "X.xxx.x.", CRASH2: "....x..."},
        "6/8": {KICK: "x.....x.....", SNARE: "X.x.x.X.xxx.", CRASH2: "......x....."},
    },
    "waltz": {
        "3/4": {KICK: "x...........", SNARE: "....o...o...", HAT: "x...x...x..."},
    },
    "folk_light": {
        "4/4": {KICK: "x.......x.......", TAMBOURINE: "....x.......x..."},
        "3/4": {KICK: "x...........", TAMBOURINE: "....x...x..."},
        "6/8": {KICK: "x.....x.....", TAMBOURINE: "......x....."},
    },
    "jig": {
        "6/8": {LOW_TOM: "X.x.x.X.x.x.", FLOOR_TOM: "x.....x.....", TAMBOURINE: "..o.o...o.o."},
        "4/4": {LOW_TOM: "X.x.x.x.X.x.x.x.", FLOOR_TOM: "x.......x.......", TAMBOURINE: "..o...o...o...o."},
    },
    "latin": {
        "4/4": {KICK: "...x.......x....", TIMBALE_LO: "..........x..x..", COWBELL: "x...x...x...x...",
                HAT: "x.x.x.x.x.x.x.x."},
    },
    "generic": {
        "4/4": {KICK: "x.......x.......", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        "3/4": {KICK: "x...........", SNARE: "....x...x...", HAT: "x.x.x.x.x.x."},
        "6/8": {KICK: "x.....x.....", SNARE: "......X.....", HAT: "x.x.x.x.x.x."},
        "2/4": {KICK: "x.......", SNARE: "....X...", HAT: "x.x.x.x."},
    },
}
"""Main drum kit grooves by name and meter."""

PERCUSSION: dict[str, dict[str, Groove]] = {
    "shaker": {"4/4": {MARACAS: "xoooxoooxoooxooo"}, "3/4": {MARACAS: "xoooxoooxooo"},
               "6/8": {MARACAS: "xooxooxooxoo"}, "2/4": {MARACAS: "xoooxooo"}},
    "tambourine": {"4/4": {TAMBOURINE: "....x.......x..."}, "3/4": {TAMBOURINE: "....x...x..."},
                   "6/8": {TAMBOURINE: "......x....."}, "2/4": {TAMBOURINE: "....x..."}},
    "congas": {"4/4": {CONGA_MUTE: "o...o...o...o...", CONGA_OPEN: "......xx......xx", CONGA_LO: "..........x....."},
               "3/4": {CONGA_MUTE: "o...o...o...", CONGA_OPEN: "......xx...."},
               "6/8": {CONGA_MUTE: "o.o...o.o...", CONGA_OPEN: "....x.....x."}},
    "bongos": {"4/4": {BONGO_HI: "x.o.x.o.x.o.x.o.", BONGO_LO: "...x.......x...."},
               "3/4": {BONGO_HI: "x.o.x.o.x.o.", BONGO_LO: "...x........"}},
    "clave": {"4/4": {CLAVES: "x..x..x...x.x..."}, "3/4": {CLAVES: "x...x.x....."},
              "6/8": {CLAVES: "x.x.x..x.x.x"}},
    "handclaps": {"4/4": {CLAP: "....x.......x..."}, "6/8": {CLAP: "......x....."},
                  "3/4": {CLAP: "....x...x..."}},
    "bodhran": {"6/8": {LOW_TOM: "X.x.x.X.x.x."}, "4/4": {LOW_TOM: "X.x.x.x.X.x.x.x."},
                "3/4": {LOW_TOM: "X.x.x.x.x.x."}, "2/4": {LOW_TOM: "X.x.x.x."}},
    "triangle": {"4/4": {TRIANGLE: "x.......x......."}, "3/4": {TRIANGLE: "x..........."},
                 "6/8": {TRIANGLE: "x.....x....."}},
    "cabasa": {"4/4": {CABASA: "o.x.o.x.o.x.o.x."}, "3/4": {CABASA: "o.x.o.x.o.x."}},
}
"""Auxiliary percussion loops (role "percussion")."""

PERCUSSION_NAMES = {
    "shaker": "shaker", "tambourine": "tambourine", "congas": "congas", "bongos": "bongos",
    "clave": "claves", "handclaps": "hand claps", "bodhran": "frame drum", "triangle": "triangle",
    "cabasa": "cabasa",
}


def groove_for(name: str, meter: Meter, table: dict[str, dict[str, Groove]] = GROOVES) -> Groove:
    """The groove ``name`` in ``meter``, falling back to a generic groove of that meter."""
    by_meter = table.get(name, {})
    key = str(meter)
    if key in by_meter:
        return by_meter[key]
    if table is GROOVES:
        return GROOVES["generic"].get(key) or _stretched(GROOVES["generic"]["4/4"], meter)
    first = next(iter(by_meter.values()))
    return _stretched(first, meter)


def _stretched(groove: Groove, meter: Meter) -> Groove:
    """Cut or repeat a groove's step strings to the bar length of ``meter``."""
    steps = meter.steps
    return {note: (pattern * (steps // len(pattern) + 1))[:steps] for note, pattern in groove.items()}


def _vary(groove: Groove, intensity: float, section: Section) -> Groove:
    """Thin a groove in quiet sections and open it up in loud ones."""
    varied = dict(groove)
    if intensity < 0.45:
        for loud in (SNARE, CLAP):  # the backbeat moves to the rim (cross-stick)
            if loud in varied and RIM not in varied:
                varied[RIM] = varied.pop(loud).replace("X", "x")
        varied.pop(OPEN_HAT, None)
        if KICK in varied and "xxxxxxxx" in varied[KICK]:
            varied[KICK] = "x.......x......."[: len(varied[KICK])]
    elif intensity > 0.78 and HAT in varied and section.name in ("chorus", "drop", "climax", "solo"):
        varied[RIDE] = varied.pop(HAT)
    return varied


def write_groove(groove_name: str, meter: Meter, sections: list[Section], rng: np.random.Generator,
                 *, fills: bool = True, table: dict[str, dict[str, Groove]] = GROOVES,
                 swing_feel: bool = False) -> list[Note]:
    """Play a groove through the sections that have the "drums"/"percussion" role, with fills and crashes."""
    notes: list[Note] = []
    role = "drums" if table is GROOVES else "percussion"
    base = groove_for(groove_name, meter, table)
    step_q = 0.25
    for index, section in enumerate(sections):
        if role not in section.roles:
            continue
        groove = _vary(base, section.intensity, section) if role == "drums" else base
        for bar in range(section.bars):
            bar_start = section.start_q + bar * meter.bar_q
            last_bar = bar == section.bars - 1
            fill_from = meter.bar_q
            if role == "drums" and fills and last_bar and section.fill:
                fill_len = meter.beat_q * (2 if section.intensity > 0.6 and meter.beats_per_bar >= 4 else 1)
                if section.name in ("build", "buildup"):
                    fill_len = meter.bar_q
                fill_from = meter.bar_q - fill_len
                notes.extend(_fill(meter, bar_start + fill_from, fill_len, section.intensity, rng,
                                   swing_feel, roll=section.name in ("build", "buildup")))
            for note, pattern in groove.items():
                length = len(pattern)
                steps_in_bar = meter.steps
                for step in range(steps_in_bar):
                    char = pattern[(bar * steps_in_bar + step) % length]
                    if char == ".":
                        continue
                    offset = step * step_q
                    if offset >= fill_from - 1e-9 and note not in (RIDE, PEDAL_HAT):
                        continue  # the fill replaces the groove, only the ride and foot hi-hat keep time
                    level = _LEVEL[char]
                    if role == "drums" and note in (HAT, RIDE) and bar % 2 == 1 and step == meter.steps - 2 \
                            and section.intensity > 0.5 and not last_bar:
                        note_out = OPEN_HAT if note == HAT else RIDE_BELL
                    else:
                        note_out = note
                    vel = velocity(level, section.intensity)
                    start = bar_start + offset
                    notes.append(Note(start, start + 0.2, note_out, vel))
        if role == "drums" and index > 0 and section.intensity >= 0.5:
            previous = sections[index - 1]
            if previous.fill or section.intensity - previous.intensity > 0.15:
                notes.append(Note(section.start_q, section.start_q + 1.0, CRASH, velocity(110, section.intensity)))
                notes.append(Note(section.start_q, section.start_q + 0.2, KICK, velocity(105, section.intensity)))
        if role == "drums" and section.ending:
            end = section.end_q
            notes = [n for n in notes if n.start < end - meter.bar_q - 1e-9]
            notes.append(Note(end - meter.bar_q, end - meter.bar_q + 2.0, CRASH, velocity(104, section.intensity)))
            notes.append(Note(end - meter.bar_q, end - meter.bar_q + 0.2, KICK, velocity(104, section.intensity)))
    return notes


def _fill(meter: Meter, start: float, length: float, intensity: float, rng: np.random.Generator,
          swing_feel: bool, roll: bool) -> list[Note]:
    """A fill of ``length`` quarter notes: snare run, tom descent, mixed, or triplets in swung/compound feel."""
    kind = "roll" if roll else rng.choice(["snare", "toms", "mixed"], p=[0.3, 0.4, 0.3])
    triplet = (swing_feel or meter.compound) and not roll
    unit = 1.0 / 3.0 if triplet and not meter.compound else (0.5 if meter.compound else 0.25)
    if roll:
        unit = 0.25
    count = int(round(length / unit))
    toms = [HIGH_TOM, HIGH_TOM, MID_TOM, MID_TOM, LOW_TOM, LOW_TOM, FLOOR_TOM, FLOOR_TOM]
    notes = []
    for k in range(count):
        t = start + k * unit
        if roll and k < count // 2 and k % 2 == 1:
            continue  # the roll starts in eighths and doubles up
        progress = k / max(count - 1, 1)
        if kind in ("snare", "roll") or (kind == "mixed" and k < count // 2):
            drum = SNARE
        else:
            drum = toms[min(int(progress * len(toms)), len(toms) - 1)]
        level = 70 + 40 * progress if kind == "roll" else 84 + 20 * progress
        notes.append(Note(t, t + unit, drum, velocity(level, intensity)))
    notes.append(Note(start, start + unit, KICK, velocity(90, intensity)))
    return notes
