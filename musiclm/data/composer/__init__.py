"""The procedural composer: styles, harmony, parts and performance, with exact ground truth.

``compose(style, rng)`` writes a new :class:`~musiclm.data.piece.Piece`; ``compose_with_melody`` arranges
a given lead line in another style (for melody conditioning); ``describe`` measures mood, energy,
dynamics and texture from notes.
"""

from musiclm.data.composer.arrange import LeadSheet, arrange_sheet, compose, compose_with_melody, styles_for_meter
from musiclm.data.composer.character import Character, describe
from musiclm.data.composer.styles import STYLES, MelodySpec, StyleSpec

__all__ = ["STYLES", "Character", "LeadSheet", "MelodySpec", "StyleSpec", "arrange_sheet", "compose",
           "compose_with_melody", "describe", "styles_for_meter"]
