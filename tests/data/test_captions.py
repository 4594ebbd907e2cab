"""Tests of the captioner: facts in the text, variety, held-out phrasings, robustness to missing labels."""

from __future__ import annotations

import math
import re
from functools import lru_cache

import numpy as np
import pretty_midi
import pytest

from musiclm.data import vocabulary as V
from musiclm.data.captions import (
    HELD_OUT_PHRASES,
    HELD_OUT_TEMPLATE_IDS,
    TEMPLATES,
    article,
    caption_aspects,
    caption_clip,
    caption_diversity,
    compose_caption,
    conjugate,
    genre_words,
    instrument_words,
    paraphrase,
    pluralize,
    split_sentences,
    tempo_band,
    validate_templates,
)
from musiclm.data.piece import ROLES, ClipLabels, Part

BRIEF_GENRES = (
    "classical_piano", "string_quartet", "cinematic", "jazz_trio", "big_band", "blues", "rock", "metal", "punk",
    "funk", "disco", "house", "techno", "drum_and_bass", "hip_hop", "lofi", "reggae", "bossa_nova", "latin",
    "country", "folk", "celtic", "march", "waltz", "ambient", "chiptune", "gospel", "chorale", "fiddle_tune",
    "renaissance_polyphony",
)
KEYS = ("C", "C#", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor", "dorian", "mixolydian", "phrygian", "lydian", "blues")


def random_labels(rng: np.random.Generator) -> ClipLabels:
    """Plausible random labels over every genre, role and General MIDI program."""
    genre = str(rng.choice([*BRIEF_GENRES, "some_new_style"]))
    parts = []
    for i in range(int(rng.integers(1, 7))):
        role = "lead" if i == 0 else str(rng.choice(ROLES))
        if role in ("drums", "percussion") and rng.random() < 0.7:
            parts.append(Part("drum kit" if role == "drums" else "percussion", 0, True, role))
        else:
            program = int(rng.integers(128))
            parts.append(Part(pretty_midi.program_to_instrument_name(program).lower(), program, False, role))
    extra: dict[str, object] = {}
    if genre in ("chorale", "renaissance_polyphony") and rng.random() < 0.7:
        extra["composer"] = "J.S. Bach"
    if genre in ("jazz_trio", "big_band"):
        extra["swing"] = True
    return ClipLabels(
        genre=genre,
        parts=parts,
        bpm=float(rng.uniform(45, 200)),
        key=str(rng.choice(KEYS)),
        mode=str(rng.choice(MODES)),
        meter=str(rng.choice(["4/4", "4/4", "3/4", "6/8"])),
        mood=[str(m) for m in rng.choice(list(V.MOODS), size=int(rng.integers(0, 4)), replace=False)],
        energy=str(rng.choice(["low", "medium", "high"])),
        dynamics=str(rng.choice(["soft", "moderate", "loud", "crescendo", "decrescendo"])),
        texture=str(rng.choice(["sparse", "moderate", "dense"])),
        sections=["intro", "verse"][: int(rng.integers(0, 3))],
        extra=extra,
    )


@lru_cache(maxsize=4)
def corpus(split: str, n: int = 2000, seed: int = 7) -> tuple[tuple[ClipLabels, ...], tuple[object, ...]]:
    rng = np.random.default_rng(seed)
    labels = tuple(random_labels(rng) for _ in range(n))
    drafts = tuple(compose_caption(lab, rng, split) for lab in labels)
    return labels, drafts


def contains_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


def all_forms(marked: tuple[str, ...]) -> list[str]:
    train, held = V.split_held_out(marked)
    return train + held


# --- tables ------------------------------------------------------------------------------------------


def test_template_tables_are_consistent() -> None:
    assert validate_templates() == []
    assert HELD_OUT_TEMPLATE_IDS
    assert set(TEMPLATES) > HELD_OUT_TEMPLATE_IDS
    share = len(HELD_OUT_TEMPLATE_IDS) / len(TEMPLATES)
    assert 0.15 < share < 0.45


def test_held_out_phrases_do_not_collide_with_train_phrasings() -> None:
    vocab = V.all_phrasings()
    assert not (vocab.train & vocab.held_out)
    train_texts = list(vocab.train) + [t.text for t in TEMPLATES.values() if not t.held_out]
    for phrase in HELD_OUT_PHRASES:
        if "{" in phrase:
            continue
        clashes = [t for t in train_texts if contains_phrase(t, phrase)]
        assert not clashes, f"held-out {phrase!r} occurs in train phrasing {clashes[:3]}"


def test_every_brief_genre_has_words() -> None:
    for genre in BRIEF_GENRES:
        assert genre in V.GENRES
        words = V.GENRES[genre]
        assert V.split_held_out(words.names)[0]
    assert genre_words("some_new_style").names == ("some new style",)


def test_grammar_helpers() -> None:
    assert article("upbeat jazz tune") == "an"
    assert article("unique tune") == "a"
    assert article("8-bit tune") == "an"
    assert article("F minor key") == "an"
    assert article("piano") == "a"
    assert conjugate("carries", True) == "carry"
    assert conjugate("pushes", True) == "push"
    assert conjugate("is", True) == "are"
    assert conjugate("plays", False) == "plays"
    assert pluralize("violin") == "violins"
    assert pluralize("bass") == "basses"
    assert pluralize("strings") == "strings"
    assert split_sentences("A chorale by J.S. Bach. It is slow.") == ["A chorale by J.S. Bach.", "It is slow."]


def test_instrument_words_resolve_gm_names_synonyms_and_unknowns() -> None:
    grand = instrument_words(Part("Acoustic Grand Piano", 0, False, "lead"))
    assert grand.canonical == "piano" and "grand piano" in grand.names
    assert instrument_words(Part("electric bass (finger)", 33, False, "bass")).canonical == "electric bass"
    assert instrument_words(Part("violin", 40, False, "lead"), "celtic").names[-1] == "fiddle"
    assert instrument_words(Part("drum kit", 0, True, "drums"), "house").names[-1].startswith("*")
    odd = instrument_words(Part("Theremin (custom) 2", 200, False, "lead"))
    assert odd.names == ("theremin",)
    assert instrument_words(Part("", 73, False, "lead")).canonical == "flute"


# --- one caption -------------------------------------------------------------------------------------


def jazz_labels() -> ClipLabels:
    return ClipLabels(
        genre="jazz_trio",
        parts=[Part("acoustic grand piano", 0, False, "lead"), Part("acoustic bass", 32, False, "bass"),
               Part("drum kit", 0, True, "drums")],
        bpm=112.0, key="Bb", mode="major", meter="4/4", mood=["relaxed", "warm"], energy="medium",
        dynamics="soft", texture="sparse", extra={"swing": True},
    )


def test_caption_is_deterministic_from_the_rng() -> None:
    labels = jazz_labels()
    first = caption_clip(labels, np.random.default_rng(3))
    again = caption_clip(labels, np.random.default_rng(3))
    other = caption_clip(labels, np.random.default_rng(4))
    assert first == again
    assert first[0] != other[0]
    assert first[1] == other[1]  # aspects depend on the facts only


def test_paraphrases_differ_but_keep_the_facts() -> None:
    labels = jazz_labels()
    captions = paraphrase(labels, np.random.default_rng(0), n=6)
    assert len(set(captions)) == 6
    for text in captions:
        assert contains_phrase(text, "jazz") or contains_phrase(text, "swing") or "jazz" in text.lower()
        assert 2 <= len(split_sentences(text)) <= 5


def test_aspects_follow_the_labels() -> None:
    aspects = caption_aspects(jazz_labels())
    assert aspects[0] == "jazz"
    assert "piano melody" in aspects
    assert "upright bass" in aspects and "walking bass" in aspects
    assert "drums" in aspects
    assert {"relaxed", "warm", "medium tempo", "major key", "soft dynamics", "sparse arrangement"} <= set(aspects)
    assert "instrumental" in aspects
    assert len(aspects) == len(set(aspects))


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError):
        caption_clip(jazz_labels(), np.random.default_rng(0), split="training")


def test_plural_subjects_take_plural_verbs() -> None:
    labels = ClipLabels(
        genre="cinematic", parts=[Part("string ensemble 1", 48, False, "lead"), Part("timpani", 47, False, "bass")],
        bpm=70.0, key="D", mode="minor", meter="4/4", mood=["epic"], energy="high", dynamics="crescendo",
        texture="dense",
    )
    rng = np.random.default_rng(5)
    singular_verbs = r"(plays|carries|takes|leads|has|is|sings|holds|provides|adds|answers|makes)"
    plural_verbs = r"(play|carry|take|lead|have|are|sing|hold|provide|add|answer|make)"
    for _ in range(200):
        text = caption_clip(labels, rng)[0]
        assert not re.search(rf"\b(strings|drums) {singular_verbs}\b", text), text
        assert not re.search(rf"^the string section {plural_verbs}\b", text.split(". ")[-1].lower()), text


# --- missing fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        ClipLabels(genre="", parts=[], bpm=0.0, key="", mode="", meter="", mood=[], energy="", dynamics="",
                   texture=""),
        ClipLabels(genre="rock", parts=[], bpm=float("nan"), key="", mode="", meter="", mood=[], energy="",
                   dynamics="", texture=""),
        ClipLabels(genre="some_new_style", parts=[Part("Mystery Box", -1, False, "")], bpm=101.0, key="",
                   mode="minor", meter="", mood=["wistful"], energy="extreme", dynamics="mf", texture="lush"),
        ClipLabels(genre="folk", parts=[Part("violin", 40, False, "lead")], bpm=95.0, key="G", mode="",
                   meter="5/8", mood=None, energy=None, dynamics=None, texture=None),  # type: ignore[arg-type]
    ],
)
def test_missing_or_unknown_fields_still_give_a_caption(labels: ClipLabels) -> None:
    for seed in range(40):
        for split in ("train", "test"):
            text, aspects = caption_clip(labels, np.random.default_rng(seed), split)
            assert 2 <= len(split_sentences(text)) <= 5, text
            assert "{" not in text and "None" not in text and "nan" not in text.lower().split()
            assert aspects and all(isinstance(a, str) and a for a in aspects)


def test_unknown_genre_key_becomes_words() -> None:
    labels = ClipLabels(genre="some_new_style", parts=[Part("acoustic grand piano", 0, False, "lead")], bpm=90.0,
                        key="C", mode="major", meter="4/4", mood=[], energy="low", dynamics="soft",
                        texture="sparse")
    texts = [caption_clip(labels, np.random.default_rng(s))[0] for s in range(20)]
    assert all("some new style" in t for t in texts)
    assert caption_aspects(labels)[0] == "some new style"


def test_score_captions_name_the_composer_and_split_sentences_right() -> None:
    labels = ClipLabels(genre="chorale", parts=[Part("church organ", 19, False, "chords")], bpm=66.0, key="G",
                        mode="major", meter="4/4", mood=["solemn"], energy="low", dynamics="moderate",
                        texture="moderate", source="score:bach/bwv66.6", extra={"composer": "J.S. Bach"})
    texts = [caption_clip(labels, np.random.default_rng(s))[0] for s in range(60)]
    assert sum("J.S. Bach" in t for t in texts) > 20
    assert all(2 <= len(split_sentences(t)) <= 5 for t in texts)


# --- the corpus of captions --------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_captions_state_genre_instrument_and_tempo(split: str) -> None:
    labels, drafts = corpus(split)
    for lab, draft in zip(labels, drafts, strict=True):
        text = draft.text  # type: ignore[attr-defined]
        sentences = split_sentences(text)
        assert 2 <= len(sentences) <= 5, text
        genre = genre_words(lab.genre)
        assert any(contains_phrase(text, g) for g in all_forms(genre.names) + all_forms(genre.music)), text
        names = [n for p in lab.parts for n in all_forms(instrument_words(p, lab.genre).names)]
        names += [pluralize(n) for n in names]
        assert any(contains_phrase(text, n) for n in names), text
        band = tempo_band(lab.bpm)
        tempo_words = all_forms(band.adjectives) + all_forms(band.noun_phrases) + all_forms(band.predicates)
        assert any(contains_phrase(text, w) for w in tempo_words), text
        assert draft.aspects  # type: ignore[attr-defined]


def test_key_or_mode_is_mentioned_in_a_good_share() -> None:
    _labels, drafts = corpus("train")
    mode_words = ("major", "minor", "dorian", "mixolydian", "phrygian", "lydian", "blues")
    hits = sum(any(contains_phrase(d.text, w) for w in mode_words) for d in drafts)  # type: ignore[attr-defined]
    assert hits / len(drafts) > 0.5


def test_bpm_number_appears_only_sometimes() -> None:
    _labels, drafts = corpus("train")
    share = sum(bool(re.search(r"\d+ (BPM|bpm|beats per minute)", d.text)) for d in drafts) / len(drafts)
    assert 0.05 < share < 0.4


def test_captions_are_diverse() -> None:
    _, drafts = corpus("train")
    texts = [d.text for d in drafts]  # type: ignore[attr-defined]
    stats = caption_diversity(texts)
    assert stats["captions"] == len(texts)
    assert stats["distinct_caption_ratio"] > 0.95
    assert stats["top_opening_share"] < 0.10
    assert stats["top_skeleton_share"] < 0.10
    assert stats["distinct_3grams"] > 10_000
    assert 2.5 < stats["mean_sentences"] < 4.5
    assert 25 < stats["mean_words"] < 60
    lengths = [len(split_sentences(t)) for t in texts]
    assert min(lengths) == 2 and max(lengths) == 5  # short and rich captions both occur


def test_held_out_templates_are_used_only_for_the_test_split() -> None:
    for split in ("train", "valid"):
        _, drafts = corpus(split, n=600)
        used = {i for d in drafts for i in d.template_ids}  # type: ignore[attr-defined]
        assert not used & HELD_OUT_TEMPLATE_IDS
    _, drafts = corpus("test", n=600)
    used = {i for d in drafts for i in d.template_ids}  # type: ignore[attr-defined]
    assert used <= HELD_OUT_TEMPLATE_IDS
    assert len(used) > 0.5 * len(HELD_OUT_TEMPLATE_IDS)


def test_held_out_words_never_appear_in_train_text_and_do_in_test() -> None:
    _, train = corpus("train")
    phrases = sorted((p for p in HELD_OUT_PHRASES if "{" not in p), key=len, reverse=True)
    any_held = re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, phrases))})(?!\w)", re.IGNORECASE)
    for draft in train:
        text = draft.text  # type: ignore[attr-defined]
        assert not any_held.search(text), (any_held.search(text), text)
    _, test = corpus("test")
    with_held = sum(any(p in HELD_OUT_PHRASES for p in d.phrases) for d in test)  # type: ignore[attr-defined]
    assert with_held / len(test) > 0.8


def test_held_out_template_wording_never_appears_in_train_text() -> None:
    _, train = corpus("train")
    texts = [d.text.lower() for d in train]  # type: ignore[attr-defined]
    checked = 0
    for template in TEMPLATES.values():
        if not template.held_out:
            continue
        fragments = [f.strip(" ,.;").lower() for f in re.split(r"\{[^}]*\}", template.text)]
        fragments = [f for f in fragments if len(f.split()) >= 3]
        if not fragments:
            continue
        fragment = max(fragments, key=len)
        checked += 1
        assert not any(fragment in t for t in texts), (template.id, fragment)
    assert checked > 20


def test_test_split_captions_are_also_diverse() -> None:
    _, drafts = corpus("test")
    stats = caption_diversity([d.text for d in drafts])  # type: ignore[attr-defined]
    assert stats["distinct_caption_ratio"] > 0.95
    assert stats["top_skeleton_share"] < 0.2


def test_caption_diversity_figures_on_a_tiny_set() -> None:
    stats = caption_diversity(["A slow jazz tune. It is calm.", "A slow jazz tune. It is calm.", "Fast rock."])
    assert stats["captions"] == 3
    assert math.isclose(stats["distinct_caption_ratio"], 2 / 3)
    assert math.isclose(stats["top_caption_share"], 2 / 3)
    assert math.isclose(stats["mean_sentences"], (2 + 2 + 1) / 3)
    assert stats["distinct_3grams"] == 5  # "a slow jazz", "slow jazz tune", ..., "is calm" (+0 for "fast rock")
    assert caption_diversity([])["captions"] == 0
