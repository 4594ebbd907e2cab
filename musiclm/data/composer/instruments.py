"""General MIDI instrument names, playable ranges and drum kits."""

from __future__ import annotations

GM_NAMES: tuple[str, ...] = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano (rhodes)", "electric piano (fm)", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone", "tubular bells", "dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ", "accordion", "harmonica",
    "bandoneon",
    "nylon-string acoustic guitar", "steel-string acoustic guitar", "jazz electric guitar",
    "clean electric guitar", "muted electric guitar", "overdriven electric guitar", "distorted electric guitar",
    "guitar harmonics",
    "acoustic upright bass", "electric bass (finger)", "electric bass (pick)", "fretless bass", "slap bass",
    "slap bass (bright)", "synth bass", "synth bass (analog)",
    "violin", "viola", "cello", "contrabass", "tremolo strings", "pizzicato strings", "orchestral harp",
    "timpani",
    "string ensemble", "slow string ensemble", "synth strings", "synth strings (soft)", "choir aahs",
    "voice oohs", "synth choir", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet", "french horn", "brass section", "synth brass",
    "synth brass (soft)",
    "soprano saxophone", "alto saxophone", "tenor saxophone", "baritone saxophone", "oboe", "english horn",
    "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square wave synth lead", "sawtooth synth lead", "calliope synth lead", "chiff synth lead",
    "charang synth lead", "voice synth lead", "fifths synth lead", "bass and lead synth",
    "new age synth pad", "warm synth pad", "polysynth pad", "choir synth pad", "bowed synth pad",
    "metallic synth pad", "halo synth pad", "sweep synth pad",
    "rain effect", "soundtrack effect", "crystal effect", "atmosphere effect", "brightness effect",
    "goblins effect", "echoes effect", "sci-fi effect",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock", "taiko drum", "melodic tom", "synth drum",
    "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring", "helicopter", "applause",
    "gunshot",
)
"""Human names of the 128 General MIDI programs, indexed by program number."""

DRUM_KITS: dict[int, str] = {
    0: "drum kit",
    8: "room drum kit",
    16: "power drum kit",
    24: "electronic drum kit",
    25: "TR-808 drum machine",
    32: "jazz drum kit",
    40: "brush drum kit",
    48: "orchestral percussion",
}
"""Drum kits (bank 128 presets present in every bundled GM soundfont) and their human names."""

_FAMILY_RANGE = {  # program // 8 -> (lowest, highest) comfortable sounding pitch
    0: (36, 96), 1: (55, 96), 2: (40, 88), 3: (40, 84), 4: (28, 55), 5: (36, 96), 6: (36, 84), 7: (48, 82),
    8: (58, 90), 9: (50, 86), 10: (55, 88), 11: (55, 88), 12: (40, 84), 13: (48, 84), 14: (60, 88),
    15: (40, 84),
}
_PROGRAM_RANGE = {
    40: (55, 96), 41: (48, 84), 42: (36, 72), 43: (28, 55), 45: (36, 84), 46: (36, 91), 47: (36, 57),
    56: (54, 84), 57: (40, 72), 58: (28, 58), 59: (54, 82), 60: (41, 77), 61: (48, 82),
    64: (56, 87), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 81), 70: (34, 72),
    71: (50, 89),
    72: (74, 102), 73: (60, 96), 74: (60, 91), 75: (60, 91), 78: (64, 96), 79: (60, 88),
    104: (48, 79), 105: (48, 79), 108: (60, 88), 109: (55, 79), 110: (55, 91), 114: (55, 84),
    22: (57, 84), 21: (53, 89), 23: (48, 84), 11: (53, 89), 12: (45, 84), 13: (65, 96), 9: (72, 105),
    8: (60, 96), 10: (60, 96), 14: (60, 77),
}


def program_name(program: int) -> str:
    """The human name of a GM program."""
    return GM_NAMES[program]


def program_range(program: int) -> tuple[int, int]:
    """The comfortable sounding range (lowest, highest MIDI pitch) of a GM program."""
    return _PROGRAM_RANGE.get(program, _FAMILY_RANGE[program // 8])


def kit_name(kit: int) -> str:
    """The human name of a GM drum kit preset."""
    return DRUM_KITS.get(kit, "drum kit")
