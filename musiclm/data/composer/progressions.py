"""Chord progression pools by idiom and mode (roman numerals, one token per bar, ``-`` splits a bar)."""

from __future__ import annotations

import re

POOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "pop": {
        "major": ("I V vi IV", "I vi IV V", "I IV vi V", "I IV V IV", "vi IV I V", "IV I V vi", "I iii IV V",
                  "IV V iii vi"),
        "minor": ("i bVI bIII bVII", "i iv bVII bIII", "i bVII bVI bVII", "bVI bVII i i", "i v bVI bVII",
                  "iv bVI bVII i"),
        "mixolydian": ("I bVII IV I", "I bVII I IV", "IV bVII I I"),
        "dorian": ("i IV i IV", "i ii bIII IV", "bIII IV i i"),
    },
    "rock": {
        "major": ("I IV V IV", "I V vi IV", "I bVII IV I", "I IV I V", "IV V I I", "vi IV V V"),
        "minor": ("i bVII bVI bVII", "i bVI bIII bVII", "i iv bVII i", "bVI bVII i i", "i bIII bVII iv"),
        "mixolydian": ("I bVII IV I", "I bVII I IV", "IV bVII I I", "I I bVII IV"),
    },
    "metal": {
        "minor": ("i bVI bVII i", "i i bVI bVII", "i iv bVI bV", "i bVII bVI bVII", "bVI bVII i i"),
        "phrygian": ("i bII i bII", "i bII bIII bII", "i i bII bVII", "bII i bVII i"),
    },
    "punk": {
        "major": ("I V vi IV", "I IV V IV", "I IV I V", "IV V I I", "vi IV I V"),
        "minor": ("i bVI bIII bVII", "i bVII bVI bVII", "bVI bVII i i"),
    },
    "funk": {
        "dorian": ("i7 i7 IV7 IV7", "i7 IV7 i7 IV7", "i7 i7 i7 IV7", "IV7 IV7 i7 i7", "bIIImaj7 IV7 i7 i7"),
        "mixolydian": ("I7 I7 IV7 I7", "I7 bVII7 IV7 I7", "I9 I9 IV9 IV9", "IV9 IV9 I9 I9"),
        "minor": ("i7 i7 iv7 v7", "i7 iv7 i7 bVII7", "bVImaj7 bVII7 i7 i7"),
    },
    "disco": {
        "major": ("Imaj7 vi7 ii7 V7", "I vi ii V", "IVmaj7 iii7 ii7 Imaj7", "ii7 V7 Imaj7 vi7"),
        "minor": ("i7 iv7 i7 iv7", "i bVII bVI bVII", "i7 bVII bVI v7", "bVI bVII i i"),
        "dorian": ("i7 IV7 i7 IV7", "i7 i7 IV7 IV7", "bIII IV i i"),
    },
    "electronic": {
        "minor": ("i bVI bIII bVII", "i i bVI bVII", "i bVII bVI bVII", "i iv i iv", "bVI bVII i i",
                  "i bVI iv bVII"),
        "major": ("I V vi IV", "vi IV I V", "I IV vi V", "IV V vi vi"),
        "dorian": ("i IV i IV", "i i IV IV", "i bVII IV i"),
        "phrygian": ("i bII i i", "i i bII bII", "i bII i bVII"),
    },
    "hiphop": {
        "minor": ("i i bVI bVII", "i iv bVI v", "i bVI bIII bVII", "i i iv iv", "bVI bVI i i"),
        "dorian": ("i IV i IV", "i7 IV7 i7 IV7", "i7 i7 IV7 IV7"),
        "major": ("Imaj7 vi7 ii7 V7", "IVmaj7 iii7 vi7 vi7"),
    },
    "lofi": {
        "major": ("Imaj7 vi7 ii7 V7", "Imaj7 iii7 vi7 IVmaj7", "IVmaj7 iii7 ii7 Imaj7", "ii7 V7 Imaj7 Imaj7",
                  "Imaj7 IVmaj7 iii7 vi7"),
        "minor": ("i7 iv7 bVII7 bIIImaj7", "i7 i7 iv7 iv7", "bVImaj7 bVII7 i7 i7", "i7 bVImaj7 iv7 v7"),
        "dorian": ("i7 IV7 i7 IV7", "i9 i9 IV9 IV9", "bIIImaj7 IV7 i7 i7"),
    },
    "reggae": {
        "major": ("I IV I IV", "I V IV V", "I vi IV V", "IV V I I", "I I IV V"),
        "minor": ("i iv i iv", "i bVII i bVII", "i bVI bVII i", "iv iv i i"),
    },
    "jazz": {
        "major": ("Imaj7 vi7 ii7 V7", "Imaj7 VI7 ii7 V7", "Imaj7 Imaj7 ii7 V7", "ii7 V7 Imaj7 VI7",
                  "iii7 VI7 ii7 V7", "IVmaj7 iv7 iii7 VI7", "I6 vi7 ii7 V7"),
        "minor": ("i7 i7 iihd7 V7", "i7 iv7 iihd7 V7", "iv7 bVII7 bIIImaj7 bVImaj7", "iihd7 V7 i7 i7",
                  "i6 bVI7 iihd7 V7"),
    },
    "bossa": {
        "major": ("Imaj7 Imaj7 II7 II7", "Imaj7 vi7 ii7 V7", "ii7 V7 Imaj7 IVmaj7", "IVmaj7 iv6 iii7 VI7",
                  "Imaj7 bIImaj7 Imaj7 bIImaj7"),
        "minor": ("i7 iv7 i7 V7", "i7 i7 iv7 iv7", "iihd7 V7 i7 i7", "bVImaj7 bVImaj7 iihd7 V7"),
    },
    "blues": {
        "blues": ("I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7", "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7",
                  "I7 IV7 I7 I7 IV7 IV7 I7 VI7 ii7 V7 I7 V7"),
        "minor": ("i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7", "i7 iv7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 i7"),
    },
    "gospel": {
        "major": ("I IV I V", "I vi ii V", "IV I ii V", "I I7 IV iv", "I iii IV V", "IV V iii vi"),
        "minor": ("i iv i V", "i bVI iv V", "iv v i i"),
    },
    "latin": {
        "minor": ("i iv V i", "i bVII bVI V", "i iv bVII bIII", "iv i V i", "i i V V"),
        "major": ("I IV V IV", "I V V I", "I vi ii V", "IV V I I"),
    },
    "tango": {
        "minor": ("i i V V", "i iv V i", "iv i V i", "i bVI V V", "i V7 i V7"),
        "major": ("I V V I", "I IV V I"),
    },
    "country": {
        "major": ("I I IV I", "I IV V I", "I IV I V", "I V IV I", "IV I V I", "I I V V"),
        "mixolydian": ("I bVII IV I", "I I bVII I"),
    },
    "folk": {
        "major": ("I IV I V", "I V IV I", "I IV V I", "I vi IV V", "IV I V I", "I V vi IV"),
        "minor": ("i bVII i bVII", "i iv i V", "i bVI bVII i", "bIII bVII i i", "i bVII bVI bVII"),
        "dorian": ("i bVII i IV", "i IV i bVII", "i i bVII bVII", "bIII bVII i i"),
        "mixolydian": ("I bVII I bVII", "I I bVII IV", "I bVII IV I"),
    },
    "celtic": {
        "dorian": ("i bVII i bVII", "i bVII i v", "i bIII bVII i", "i i bVII bVII", "bIII bVII i i"),
        "mixolydian": ("I bVII I bVII", "I I bVII IV", "I bVII IV I", "IV I bVII I"),
        "major": ("I IV I V", "I V IV I", "I I IV V", "IV I V I"),
        "minor": ("i bVII i bVII", "i bVII bVI bVII", "i iv bVII i"),
    },
    "classical": {
        "major": ("I IV V I", "I ii V I", "I vi IV V", "I V vi iii IV I IV V", "I IV viio iii vi ii V I",
                  "I V I V", "IV V I vi", "ii V I I"),
        "minor": ("i iv V i", "i iio V i", "i bVI iv V", "i iv bVII bIII bVI iio V i", "i V i V", "iv V i i"),
    },
    "march": {
        "major": ("I IV V I", "I V V I", "I IV I V", "I I V V", "IV I V I"),
        "minor": ("i iv V i", "i V V i", "i iv i V"),
    },
    "waltz": {
        "major": ("I IV V I", "I vi ii V", "I I V V", "I IV I V", "IV I V I"),
        "minor": ("i iv V i", "i bVI iio V", "i i V V", "iv i V i"),
    },
    "cinematic": {
        "minor": ("i bVI bIII bVII", "i bVI iv V", "i iv bVI V", "bVI bVII i i", "i bVII bVI bVII"),
        "major": ("I V vi IV", "I IV I V", "I bVI bVII I", "IV V vi vi", "vi IV I V"),
        "lydian": ("I II I II", "I II vi V", "II II I I"),
    },
    "ambient": {
        "lydian": ("I II I II", "I I II II", "II II I I", "I II vi I"),
        "major": ("Imaj7 IVmaj7 Imaj7 IVmaj7", "I vi IV I", "IV IV I I", "Imaj7 iii7 IVmaj7 IVmaj7"),
        "minor": ("i bVI i bVI", "i bIII bVII iv", "bVI bVI i i", "i i iv iv"),
        "dorian": ("i IV i IV", "i i IV IV", "IV IV i i"),
    },
    "chiptune": {
        "major": ("I V vi IV", "I IV V I", "I bVII IV I", "vi IV I V", "IV V I I"),
        "minor": ("i bVI bVII i", "i bIII bVII bVI", "i iv bVII bIII", "bVI bVII i i"),
    },
    "synthwave": {
        "minor": ("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVI bVII", "bVI bVII i i"),
        "dorian": ("i IV i IV", "i bVII IV IV"),
    },
    "soul": {
        "major": ("Imaj7 IVmaj7 Imaj7 IVmaj7", "Imaj7 iii7 IVmaj7 V7", "IVmaj7 V7 iii7 vi7", "I vi ii V"),
        "minor": ("i7 iv7 i7 iv7", "i7 bVII7 bVImaj7 V7", "iv7 v7 i7 i7"),
        "dorian": ("i7 IV7 i7 IV7", "i9 IV9 i9 IV9"),
    },
}
"""Progressions by idiom; verse progressions are the ones that start on the tonic."""

CADENCES: dict[str, tuple[str, ...]] = {
    "major": ("V I", "IV I", "V7 I"),
    "minor": ("V i", "bVII i", "iv i"),
    "dorian": ("IV i", "bVII i"),
    "mixolydian": ("bVII I", "IV I"),
    "phrygian": ("bII i",),
    "lydian": ("II I",),
    "blues": ("V7 I7",),
}
"""Two-bar endings into the tonic for each mode."""

GENERIC = {
    "major": "pop", "minor": "pop", "mixolydian": "rock", "dorian": "folk", "phrygian": "metal",
    "lydian": "ambient", "blues": "blues",
}
"""The pool that serves a mode when a style's own idiom has no progressions in it."""


def progressions_for(idiom: str, mode: str) -> tuple[str, ...]:
    """Progressions of ``idiom`` in ``mode``, falling back to a generic idiom for the mode."""
    found = POOLS.get(idiom, {}).get(mode)
    if found:
        return found
    return POOLS[GENERIC[mode]][mode]


def starts_on_tonic(progression: str) -> bool:
    """Whether the first chord of a progression is the tonic chord."""
    first = progression.split()[0].split("-")[0]
    numeral = re.match(r"[b#]?([IViv]+)", first)
    return numeral is not None and numeral.group(1) in ("I", "i")
