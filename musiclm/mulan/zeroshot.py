"""Zero-shot classification with MuLan: class prompts in words, scored by cosine similarity to audio.

Each class has a few prompts ("a bossa nova track", "bossa nova music", ...); a class's text embedding is the
normalised mean of its prompts' embeddings (prompt ensembling). Class names come from the captioner's own
vocabulary (canonical, non-held-out words), so the prompts speak the corpus's language.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from musiclm.data import vocabulary as V
from musiclm.data.captions import genre_words, indefinite, with_article

TextEncoder = Callable[[list[str]], torch.Tensor]

FAMILY_PHRASES = {
    "piano": "piano", "mallets": "mallet percussion", "organ": "organ", "guitar": "guitar", "bass": "bass",
    "strings": "strings", "ensemble": "an ensemble", "brass": "brass", "reed": "reed instruments",
    "pipe": "flutes", "synth_lead": "a synth lead", "synth_pad": "synth pads", "synth_fx": "synth effects",
    "ethnic": "folk instruments", "percussive": "percussion", "sound_fx": "sound effects", "voice": "voices",
    "harp": "harp", "drums": "drums",
}
"""Instrument families (GM families as the captioner groups them, plus drums) in plain words."""


def canonical(names: Iterable[str]) -> str:
    """The first non-held-out phrasing of a marked synonym list."""
    return V.split_held_out(tuple(names))[0][0]


def genre_prompts(extra: Iterable[str] = ()) -> tuple[list[str], list[list[str]]]:
    """Every genre of the vocabulary (plus ``extra`` keys) and its prompts, e.g. "a bossa nova track"."""
    classes = list(V.GENRES) + [g for g in dict.fromkeys(extra) if g and g not in V.GENRES]
    prompts = []
    for key in classes:
        words = genre_words(key)
        name = canonical(words.names)
        piece = canonical(V.PIECE_NOUNS.get(words.pieces, V.PIECE_NOUNS["generic"]))
        if words.noun:
            music = canonical(words.music) if words.music else f"{name} music"
            prompts.append([with_article(name), music, f"this is {music}"])
        else:
            music = name if name.lower().endswith("music") else f"{name} music"
            prompts.append([with_article(f"{name} track"), music, with_article(f"{name} {piece}")])
    return classes, prompts


def family_prompts(classes: Iterable[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Instrument families and prompts ("music featuring strings", ...)."""
    names = list(classes) if classes is not None else list(FAMILY_PHRASES)
    prompts = []
    for family in names:
        phrase = FAMILY_PHRASES.get(family, family.replace("_", " "))
        thing = phrase if phrase.startswith(("a ", "an ")) else indefinite(phrase).text
        prompts.append([f"music featuring {thing}", f"a track with {thing}", f"{phrase} playing"])
    return names, prompts


def instrument_prompts() -> tuple[list[str], list[list[str]]]:
    """Canonical General MIDI instrument names plus drums, and their prompts."""
    names = list(dict.fromkeys([canonical(n) for n in V.GM_INSTRUMENTS.values()] + ["drums"]))
    prompts = [[f"music featuring {indefinite(n).text}", f"a track with {indefinite(n).text}", f"{n} playing"]
               for n in names]
    return names, prompts


def mood_prompts(classes: Iterable[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Mood words of the vocabulary and prompts ("a calm piece of music", ...)."""
    names = list(classes) if classes is not None else list(V.MOODS)
    prompts = []
    for mood in names:
        word = canonical(V.MOODS[mood]) if mood in V.MOODS else mood
        prompts.append([f"{with_article(word)} piece of music", f"{word} music", f"the mood is {word}"])
    return names, prompts


def tempo_prompts() -> tuple[list[str], list[list[str]]]:
    """Tempo bands ("very slow" ... "very fast") and prompts built from their words."""
    names, prompts = [], []
    for band in V.TEMPO_BANDS:
        adjective = canonical(band.adjectives)
        names.append(band.name.replace("_", " "))
        prompts.append([with_article(f"{adjective} track"), f"music at {canonical(band.noun_phrases)}",
                        f"the tempo is {canonical(band.predicates)}"])
    return names, prompts


def class_embeddings(encode_text: TextEncoder, prompts: list[list[str]], batch_size: int = 128) -> torch.Tensor:
    """``[classes, D]``: the normalised mean of each class's prompt embeddings."""
    flat = [p for group in prompts for p in group]
    rows = [encode_text(flat[i : i + batch_size]).float().cpu() for i in range(0, len(flat), batch_size)]
    emb = torch.cat(rows)
    out, start = [], 0
    for group in prompts:
        out.append(F.normalize(emb[start : start + len(group)].mean(0), dim=-1))
        start += len(group)
    return torch.stack(out)


def scores(audio: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[N, classes]`` of unit audio embeddings to class embeddings."""
    return audio.float().cpu() @ classes.float().cpu().t()
