"""Captions in the MusicCaps manner, written from the exact facts of a clip.

:func:`caption_clip` turns :class:`~musiclm.data.piece.ClipLabels` into a free-text caption of 2-5
sentences and an aspect list. Every random choice comes from the caller's ``numpy.random.Generator``.

Phrasing templates and synonyms marked as held out in :mod:`musiclm.data.vocabulary` are used only for
``split == "test"``: test captions use held-out sentence templates only, and a held-out synonym half of the
time where a word has one, so text-audio models can be scored on phrasings they never saw in training. (Key
spellings, role prefixes and sentence subjects such as "it" / "the track" are shared by all splits.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pretty_midi

from musiclm.data import vocabulary as V
from musiclm.data.piece import ROLES, ClipLabels, Part

SPLITS = ("train", "valid", "test")
TEST_HELD_OUT_WORD_RATE = 0.5
"""In the test split, the chance of picking a held-out synonym when the word has one."""

BPM_MENTION_RATE = 0.35
"""The chance that a caption's tempo phrase carries the number ("around 92 BPM"); it is not always used."""
SENTENCE_COUNT_WEIGHTS = {2: 0.1, 3: 0.25, 4: 0.35, 5: 0.3}
OPTIONAL_TOPIC_RATES = {
    "key": 0.8, "mood": 0.85, "energy": 0.35, "dynamics": 0.35, "texture": 0.35, "meter": 0.12,
    "swing": 0.6, "composer": 0.8, "sections": 0.12, "instrumental": 0.15, "usage": 0.55,
}
DROP_ORDER = ("sections", "instrumental", "meter", "swing", "roles_detail", "texture", "energy", "dynamics",
              "key", "usage", "composer", "mood")
"""Optional topics, the first dropped first when a caption has more facts than sentences."""

_SLOT_TOPICS: dict[str, tuple[str, ...]] = {
    "a_genre_piece": ("genre",), "genre_piece": ("genre",), "genre_music": ("genre",),
    "a_tempo_genre_piece": ("genre", "tempo"), "a_mood_genre_piece": ("genre", "mood"),
    "instr_list": ("instruments",), "instr": ("instruments",), "x": ("instruments",),
    "rest": ("instruments",), "tempo_np": ("tempo",), "tempo_adj": ("tempo",), "tempo_pred": ("tempo",),
    "key_phrase": ("key",), "key_name": ("key",), "meter": ("meter",), "moods": ("mood",),
    "a_moods": ("mood",), "energy_adj": ("energy",), "energy_level": ("energy",),
    "dynamics_vp": ("dynamics",), "texture_adj": ("texture",), "a_texture_adj": ("texture",),
    "place": ("usage",), "scene": ("usage",), "activity": ("usage",), "sections_np": ("sections",),
    "composer": ("composer",), "piece": (), "subj": (), "a_bassline": (), "a_beat": (),
}
_PLACEHOLDER = re.compile(r"\{(\w+)(?:~(\w+))?\}")


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One phrasing pattern of a pool; ``held_out`` ones are reserved for the test split."""

    id: str
    pool: str
    text: str
    held_out: bool
    family: str | None = None  # role clauses that only fit one instrument family
    slots: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", frozenset(m.group(1) for m in _PLACEHOLDER.finditer(self.text)))

    @property
    def topics(self) -> frozenset[str]:
        return pool_topics(self.pool)


UNNAMED_COMPOSERS = frozenset({"traditional", "anonymous", "anon.", "unknown", "trad.", "trad"})
"""Composer fields that name no person: never captioned as "written by ..."."""


def pool_topics(pool: str) -> frozenset[str]:
    """The topics a pool covers: "genre+tempo:variant" -> {"genre", "tempo"}; role pools -> instruments."""
    if pool.startswith("role."):
        return frozenset({"instruments"})
    return frozenset(pool.split(":")[0].split("+"))


def _build_templates() -> dict[str, list[Template]]:
    pools: dict[str, list[Template]] = {}

    def add(pool: str, texts: Iterable[str], family: str | None = None) -> None:
        bucket = pools.setdefault(pool, [])
        for text in texts:
            held = text.startswith(V.HELD_OUT_MARK)
            body = text[len(V.HELD_OUT_MARK):] if held else text
            suffix = f"{family}." if family else ""
            bucket.append(Template(f"{pool}#{suffix}{len(bucket)}", pool, body, held, family))

    for pool, texts in V.OPENING_TEMPLATES.items():
        add(f"open.{pool}", texts)
    for pool, texts in V.BODY_TEMPLATES.items():
        add(pool, texts)
    for role, texts in V.ROLE_TEMPLATES.items():
        add(f"role.{role}", texts)
    for role, by_family in V.ROLE_FAMILY_TEMPLATES.items():
        for family, texts in by_family.items():
            add(f"role.{role}", texts, family)
    for size, texts in V.CLAUSE_JOINERS.items():
        add(f"join.{size}", texts)
    return pools


POOLS: dict[str, list[Template]] = _build_templates()
TEMPLATES: dict[str, Template] = {t.id: t for pool in POOLS.values() for t in pool}
HELD_OUT_TEMPLATE_IDS: frozenset[str] = frozenset(t.id for t in TEMPLATES.values() if t.held_out)
"""Ids of the phrasing templates reserved for the test split."""
HELD_OUT_PHRASES: frozenset[str] = frozenset(V.all_phrasings().held_out)
"""Synonyms, contexts and other word choices reserved for the test split."""


_BODY_POOLS: dict[frozenset[str], list[str]] = {}
for _pool in POOLS:
    if not _pool.startswith(("open.", "role.", "join.")):
        _BODY_POOLS.setdefault(pool_topics(_pool), []).append(_pool)


def _opening_pool_topics(pool: str) -> frozenset[str]:
    return pool_topics(pool.removeprefix("open."))


def validate_templates() -> list[str]:
    """Problems with the template tables (unknown slots, topic mismatches, pools without both kinds)."""
    problems = []
    for name, pool in POOLS.items():
        if not any(t.held_out for t in pool) or not any(not t.held_out and t.family is None for t in pool):
            problems.append(f"pool {name} needs both train and held-out templates")
        if name.startswith(("role.", "join.")):
            continue
        topics = _opening_pool_topics(name) if name.startswith("open.") else pool_topics(name)
        for t in pool:
            unknown = t.slots - set(_SLOT_TOPICS)
            if unknown:
                problems.append(f"{t.id}: unknown slots {sorted(unknown)}")
                continue
            covered = {topic for slot in t.slots for topic in _SLOT_TOPICS[slot]}
            if not covered <= topics:
                problems.append(f"{t.id}: slots cover {sorted(covered - topics)} beyond its pool")
            silent = {"instrumental", "swing"}
            if not (topics - silent) <= covered:
                problems.append(f"{t.id}: misses topics {sorted(topics - silent - covered)}")
    return problems


# --------------------------------------------------------------------------------------------------
# Grammar helpers
# --------------------------------------------------------------------------------------------------

_AN_EXCEPTIONS = ("uni", "use", "usu", "uku", "eu", "one", "once")
_DETERMINERS = frozenset({"a", "an", "the", "some", "any", "my", "our", "this", "that", "no"})
_MASS_NOUNS = frozenset({"brass", "percussion", "birdsong", "applause", "noise", "whistling", "harmonics"})
_PLURAL_WORDS = frozenset({"timpani", "vibes", "keys", "strings", "drums", "bells", "chimes", "bagpipes",
                           "panpipes", "congas", "bongos", "claves", "claps", "toms", "effects", "waves",
                           "sounds", "tweets", "rings", "hits", "stabs", "voices", "vocals", "oohs",
                           "squeaks", "textures", "swells", "tones"})


@dataclass(frozen=True)
class Phrase:
    """A noun phrase and whether it takes a plural verb."""

    text: str
    plural: bool = False


def article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows."""
    word = phrase.strip().split(" ")[0] if phrase.strip() else ""
    low = word.lower()
    if not low:
        return "a"
    if low[0].isdigit():
        return "an" if low.startswith(("8", "11", "18")) else "a"
    if (len(word) <= 3 and word.isupper()) or (len(word) == 1 and word.isalpha()):
        return "an" if word[0].upper() in "AEFHILMNORSX" else "a"
    if low.startswith(("hour", "honest", "honor")):
        return "an"
    if low.startswith(_AN_EXCEPTIONS):
        return "a"
    return "an" if low[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def _last_word(phrase: str) -> str:
    return re.split(r"[\s-]", phrase.strip().lower())[-1] if phrase.strip() else ""


def is_mass(phrase: str) -> bool:
    return _last_word(phrase) in _MASS_NOUNS


def is_plural(phrase: str) -> bool:
    """Whether a noun phrase is plural ("strings", "steel drums")."""
    last = _last_word(phrase)
    if last in _PLURAL_WORDS:
        return True
    if last in _MASS_NOUNS or last.endswith(("ss", "us", "is")) or len(last) < 3:
        return False
    return last.endswith("s")


def pluralize(phrase: str) -> str:
    """Plural of a noun phrase ("violin" -> "violins", "bass" -> "basses")."""
    if is_plural(phrase) or is_mass(phrase):
        return phrase
    words = phrase.split(" ")
    last = words[-1]
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*words[:-1], last])


def indefinite(phrase: str) -> Phrase:
    """'a piano', 'strings', 'percussion'."""
    if is_plural(phrase):
        return Phrase(phrase, True)
    if is_mass(phrase):
        return Phrase(phrase)
    return Phrase(with_article(phrase))


def definite(phrase: str) -> Phrase:
    return Phrase(f"the {phrase}", is_plural(phrase))


def conjugate(verb: str, plural: bool) -> str:
    """Third-person singular verb -> the form for a plural subject ("carries" -> "carry")."""
    if not plural:
        return verb
    irregular = {"is": "are", "has": "have", "does": "do", "was": "were"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("sses", "shes", "ches", "xes", "zes")):
        return verb[:-2]
    return verb[:-1] if verb.endswith("s") else verb


def join_words(items: Sequence[str], oxford: bool = False) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    comma = "," if oxford else ""
    return f"{', '.join(items[:-1])}{comma} and {items[-1]}"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _readable_key(text: str) -> str:
    """'some_new_style' -> 'some new style'."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]+", " ", str(text))).strip().lower()


_INITIALS_BEFORE = re.compile(r"(?:^|\s)(?:[A-Z]\.)+[A-Z]$")


def split_sentences(text: str) -> list[str]:
    """Split a caption into sentences (initials such as "J.S. Bach" do not end a sentence)."""
    sentences, start = [], 0
    for match in re.finditer(r"[.!?]+(?:\s+|$)", text):
        before = text[start:match.start()]
        if _INITIALS_BEFORE.search(before) and match.end() < len(text):
            continue
        sentence = text[start:match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# --------------------------------------------------------------------------------------------------
# Word choice
# --------------------------------------------------------------------------------------------------


class _Chooser:
    """Picks phrasings and templates for one split and records what it used."""

    def __init__(self, rng: np.random.Generator, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.rng = rng
        self.test = split == "test"
        self.template_ids: list[str] = []
        self.phrases: list[str] = []

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, items: Sequence[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    def word(self, marked: Sequence[str]) -> str:
        """One phrasing of a marked synonym list, respecting the split."""
        train, held = V.split_held_out(tuple(marked))
        if self.test and held and (not train or self.chance(TEST_HELD_OUT_WORD_RATE)):
            pick = self.choice(held)
        elif train:
            pick = self.choice(train)
        else:
            raise ValueError(f"no train phrasing in {marked}")
        self.phrases.append(pick)
        return pick

    def eligible(self, pool: str, slots: Iterable[str], family: str | None = None) -> list[Template]:
        have = set(slots)
        return [
            t for t in POOLS.get(pool, [])
            if t.held_out == self.test and t.slots <= have and (t.family is None or t.family == family)
        ]

    def template(self, pool: str, slots: Iterable[str], family: str | None = None) -> Template:
        options = self.eligible(pool, slots, family)
        if not options:
            raise LookupError(f"no template in pool {pool} for slots {sorted(slots)}")
        chosen = options[int(self.rng.integers(len(options)))]
        self.template_ids.append(chosen.id)
        return chosen


SlotValue = Phrase | Callable[[], Phrase]


def render(text: str, slots: dict[str, SlotValue]) -> str:
    """Fill ``{slot}`` and ``{slot~verb}`` placeholders."""

    cache: dict[str, Phrase] = {}  # each slot resolved once, so "{x} {x~plays}" agree

    def fill(match: re.Match[str]) -> str:
        name, verb = match.group(1), match.group(2)
        if name not in cache:
            slot = slots[name]
            cache[name] = slot() if callable(slot) else slot
        return conjugate(verb, cache[name].plural) if verb else cache[name].text

    return re.sub(r"\s+", " ", _PLACEHOLDER.sub(fill, text)).strip()


# --------------------------------------------------------------------------------------------------
# Facts -> words
# --------------------------------------------------------------------------------------------------

_GM_NAME_INDEX = {pretty_midi.program_to_instrument_name(p).lower(): p for p in range(128)}


@lru_cache(maxsize=1)
def _synonym_index() -> dict[str, int]:
    index: dict[str, int] = {}
    for program, names in V.GM_INSTRUMENTS.items():
        for name in V.split_held_out(names)[0]:
            index.setdefault(name.lower(), program)
    return index


_FAMILY_KEYWORDS = (
    ("drum", "drums"), ("percussion", "percussive"), ("bass", "bass"), ("guitar", "guitar"),
    ("piano", "piano"), ("organ", "organ"), ("synth", "synth_lead"), ("string", "strings"),
    ("violin", "strings"), ("cello", "strings"), ("viola", "strings"), ("flute", "pipe"), ("sax", "reed"),
    ("clarinet", "reed"), ("trumpet", "brass"), ("trombone", "brass"), ("horn", "brass"), ("voice", "voice"),
    ("vocal", "voice"), ("choir", "voice"), ("sing", "voice"),
)


@dataclass(frozen=True)
class InstrumentWords:
    """Synonyms (marked list, canonical first) and family of one part."""

    names: tuple[str, ...]
    family: str

    @property
    def canonical(self) -> str:
        return V.split_held_out(self.names)[0][0]


def _clean_name(name: str) -> str:
    name = re.sub(r"\(.*?\)", " ", name)
    name = re.sub(r"\b\d+\b", " ", name)
    return re.sub(r"\s+", " ", name).strip().lower()


def instrument_words(part: Part, genre: str = "") -> InstrumentWords:
    """How to name a part: from its GM name, a known synonym, its program, or its own name."""
    name = re.sub(r"\s+", " ", (part.name or "").strip().lower())
    group = "electronic" if genre in V.ELECTRONIC_GENRES else "folk_fiddle" if genre in V.FOLK_FIDDLE_GENRES else ""
    if part.is_drum:
        names = V.DRUM_KITS.get(name) or V.DRUM_KITS.get(_clean_name(name))
        if names is None:
            names = (_clean_name(name) or "drums",) if name and "kit" not in name else V.DRUM_KITS["drum kit"]
        family = "drums" if names[0] == "drums" else "percussive"
    else:
        program = _GM_NAME_INDEX.get(name, _synonym_index().get(name))
        if program is None and not name and 0 <= part.program <= 127:
            program = int(part.program)
        if program is not None:
            names, family = V.GM_INSTRUMENTS[program], V.gm_family(program)
        else:
            clean = _clean_name(name) or "instrument"
            names = (clean,)
            family = next((fam for key, fam in _FAMILY_KEYWORDS if key in clean), "other")
    canonical = V.split_held_out(names)[0][0]
    extras = V.GENRE_INSTRUMENT_EXTRAS.get((group, canonical), ())
    return InstrumentWords(tuple(names) + tuple(extras), family)


def tempo_band(bpm: float) -> V.TempoBand:
    """The tempo band of a tempo in beats per minute."""
    for band in V.TEMPO_BANDS:
        if bpm < band.upper:
            return band
    return V.TEMPO_BANDS[-1]


def _valid_bpm(bpm: object) -> float | None:
    try:
        value = float(bpm)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def genre_words(genre: str) -> V.GenreWords:
    """Words for a genre key; unknown keys become their own name ("some_new_style" -> "some new style")."""
    key = (genre or "").strip()
    if key in V.GENRES:
        return V.GENRES[key]
    if key.lower() in V.GENRES:
        return V.GENRES[key.lower()]
    readable = _readable_key(key)
    return V.GenreWords((readable,) if readable else ("instrumental",), "generic")


def _genre_music(name: str) -> str:
    return name if name.lower().endswith("music") else f"{name} music"


def _moods(labels: ClipLabels) -> list[str]:
    seen: list[str] = []
    for mood in labels.mood or []:
        word = _readable_key(mood)
        if word and word not in seen:
            seen.append(word)
    return seen


def _key_spellings(key: str) -> list[str]:
    key = (key or "").strip()
    if not key:
        return []
    letter, rest = key[0].upper(), key[1:].strip().lower()
    if letter not in "ABCDEFG":
        return [key]
    if rest in ("#", "sharp", "-sharp", "s"):
        return [f"{letter}#", f"{letter} sharp", f"{letter}-sharp"]
    if rest in ("b", "flat", "-flat"):
        return [f"{letter}b", f"{letter} flat", f"{letter}-flat"]
    return [letter + rest] if rest else [letter]


def _mode(labels: ClipLabels) -> str:
    return (labels.mode or "").strip().lower()


def _mode_aspect(mode: str) -> str | None:
    if not mode:
        return None
    if mode in ("major", "minor"):
        return f"{mode} key"
    if mode == "blues":
        return "blues scale"
    return f"{V.MODE_NAMES.get(mode, mode)} mode"


def _key_phrases(key_spelled: str, mode: str) -> list[str]:
    mode_name = V.MODE_NAMES.get(mode, mode)
    if key_spelled and mode:
        if mode in ("major", "minor"):
            return [f"{key_spelled} {mode}", f"the key of {key_spelled} {mode}"]
        if mode == "blues":
            return [f"{key_spelled} blues", f"a {key_spelled} blues scale"]
        return [f"{key_spelled} {mode_name}", f"the {mode_name} mode on {key_spelled}"]
    if key_spelled:
        return [f"the key of {key_spelled}", key_spelled]
    if mode in ("major", "minor"):
        return [f"a {mode} key"]
    if mode == "blues":
        return ["a blues scale"]
    return [f"the {mode_name} mode"]


def _meter_phrases(meter: str) -> tuple[str, ...] | None:
    meter = (meter or "").strip()
    if meter in V.METERS:
        return V.METERS[meter]
    if re.fullmatch(r"\d+/\d+", meter):
        return (f"{meter} time",)
    return None


def _sections_np(sections: Sequence[str]) -> str | None:
    names: list[str] = []
    for section in sections or []:
        word = _readable_key(section)
        if not word:
            continue
        word = f"{word.upper()} section" if len(word) == 1 else word
        if word not in names:
            names.append(word)
    if not names:
        return None
    return join_words([f"the {n}" for n in names[:3]])


def _usage_lists(labels: ClipLabels, words: V.GenreWords, moods: list[str]) -> dict[str, list[str]]:
    """Marked context lists by kind ("place", "scene", "activity"), genre-specific ones first."""
    kinds: dict[str, list[str]] = {"place": [], "scene": [], "activity": []}
    sources: list[dict[str, tuple[str, ...]]] = [
        {"places": words.places, "scenes": words.scenes, "activities": words.activities},
        V.ENERGY_CONTEXTS.get((labels.energy or "").lower(), {}),
    ]
    for mood_keys, contexts in V.MOOD_CONTEXTS.items():
        if any(m in mood_keys for m in moods):
            sources.append(contexts)
    sources.append({"places": V.GENERIC_PLACES, "scenes": V.GENERIC_SCENES, "activities": V.GENERIC_ACTIVITIES})
    names = {"places": "place", "scenes": "scene", "activities": "activity"}
    for source in sources:
        for plural, items in source.items():
            bucket = kinds[names[plural]]
            bucket.extend(i for i in items if i not in bucket)
    return kinds


# --------------------------------------------------------------------------------------------------
# Instruments and roles
# --------------------------------------------------------------------------------------------------


@dataclass
class _PartWords:
    part: Part
    words: InstrumentWords
    name: str  # chosen synonym for this caption


def _role_order(role: str) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def _instrument_list(parts: list[_PartWords], chooser: _Chooser, limit: int = 6) -> Phrase:
    counts: Counter[str] = Counter()
    order: list[str] = []
    for p in sorted(parts, key=lambda p: _role_order(p.part.role)):
        if p.name not in counts:
            order.append(p.name)
        counts[p.name] += 1
    bare = len(order) > 1 and chooser.chance(0.5)
    items = []
    for name in order:
        count = counts[name]
        if count > 1 and not is_plural(name) and not is_mass(name):
            items.append(f"{V.NUMBER_WORDS[min(count, len(V.NUMBER_WORDS) - 1)]} {pluralize(name)}")
        else:
            items.append(name if bare else indefinite(name).text)
    plural = len(items) > 1 or is_plural(items[0])
    if len(items) > limit:
        items = [*items[: limit - 1], "other instruments"]
    return Phrase(join_words(items, oxford=chooser.chance(0.3)), plural)


class _Mentions:
    """Noun phrases for parts, so that a second part with the same name reads "a second violin"."""

    def __init__(self, chooser: _Chooser) -> None:
        self.chooser = chooser
        self.seen: Counter[str] = Counter()

    def group(self, parts: list[_PartWords], definite_first: bool) -> Phrase:
        counts = Counter(p.name for p in parts)
        names = []
        for name, count in counts.items():
            already = self.seen[name]
            if count > 1 and not is_plural(name) and not is_mass(name):
                text = f"{V.NUMBER_WORDS[min(count, 8)]} {pluralize(name)}"
                names.append(Phrase(text if not already else f"{V.NUMBER_WORDS[min(count, 8)]} more "
                                    f"{pluralize(name)}", True))
            elif already and not is_plural(name) and not is_mass(name):
                ordinal = ("second", "third", "fourth", "fifth")[min(already, 4) - 1]
                names.append(Phrase(f"a {ordinal} {name}"))
            elif definite_first or self.chooser.chance(0.65):
                names.append(definite(name))
            else:
                names.append(indefinite(name))
            self.seen[name] += count
        plural = len(names) > 1 or any(n.plural for n in names)
        return Phrase(join_words([n.text for n in names]), plural)


@dataclass
class _Clause:
    role: str
    parts: list[_PartWords]


def _role_clauses(parts: list[_PartWords], skip_lead: bool) -> list[_Clause]:
    groups: dict[str, list[_PartWords]] = {}
    for p in parts:
        role = p.part.role if p.part.role in ROLES else None
        if role is None or (skip_lead and role == "lead"):
            continue
        groups.setdefault(role, []).append(p)
    for small, big in (("percussion", "drums"), ("pad", "chords"), ("counter", "lead")):
        if len(groups) > 6 and small in groups and big in groups:
            groups[big].extend(groups.pop(small))
    return [_Clause(role, groups[role]) for role in ROLES if role in groups]


def _clause_sentence_split(n: int, chooser: _Chooser, max_sentences: int) -> list[int]:
    options = {1: [[1]], 2: [[2], [1, 1]], 3: [[3], [2, 1], [1, 2]], 4: [[2, 2], [3, 1]], 5: [[3, 2], [2, 3]],
               6: [[3, 3]]}[n]
    fitting = [o for o in options if len(o) <= max_sentences] or [min(options, key=len)]
    weights = np.array([3.0 if i == 0 else 1.0 for i in range(len(fitting))])
    return fitting[int(chooser.rng.choice(len(fitting), p=weights / weights.sum()))]


# --------------------------------------------------------------------------------------------------
# The caption
# --------------------------------------------------------------------------------------------------


@dataclass
class CaptionDraft:
    """A caption with its aspects and the phrasings used (for held-out checks)."""

    text: str
    aspects: list[str]
    template_ids: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        return split_sentences(self.text)


@dataclass
class _Unit:
    """A planned sentence (or group of sentences): the topics it covers."""

    topics: frozenset[str]
    kind: str = "simple"  # simple | roles | compact | list
    sentences: int = 1
    min_sentences: int = 1
    clauses: list[_Clause] = field(default_factory=list)


class _Captioner:
    def __init__(self, labels: ClipLabels, rng: np.random.Generator, split: str) -> None:
        self.labels = labels
        self.c = _Chooser(rng, split)
        self.genre_key = (labels.genre or "").strip()
        self.genre = genre_words(self.genre_key)
        self.moods = _moods(labels)
        self.mode = _mode(labels)
        self.bpm = _valid_bpm(labels.bpm)
        self.parts = [
            _PartWords(p, w, "")
            for p in (labels.parts or [])
            for w in [instrument_words(p, self.genre_key)]
        ]
        names: dict[tuple[str, ...], str] = {}
        for p in self.parts:  # one name per instrument within a caption
            if p.words.names not in names:
                names[p.words.names] = self.c.word(p.words.names)
            p.name = names[p.words.names]
        self.slots: dict[str, SlotValue] = {}
        self.available: set[str] = set()
        self.lead_subject: Phrase | None = None
        self._pool_cache: dict[frozenset[str], list[str]] = {}
        self._build_slots()

    # -- slots -----------------------------------------------------------------------------------
    def _build_slots(self) -> None:
        c, labels, s = self.c, self.labels, self.slots
        genre_name = c.word(self.genre.names)
        piece = c.word(V.PIECE_NOUNS[self.genre.pieces])
        if self.genre.noun:
            genre_piece = genre_name
        elif genre_name.split(" ")[0].lower() in _DETERMINERS or genre_name.endswith(" style"):
            genre_piece = f"{piece} in the {genre_name.removesuffix(' style')} style"
        else:
            genre_piece = f"{genre_name} {piece}"
        s["piece"] = Phrase(piece)
        s["genre_piece"] = Phrase(genre_piece)
        s["a_genre_piece"] = Phrase(with_article(genre_piece))
        s["genre_music"] = Phrase(c.word(self.genre.music) if self.genre.music else _genre_music(genre_name))
        s["subj"] = lambda: Phrase(c.choice(V.SUBJECTS).format(piece=piece))
        self.available.add("genre")

        if self.parts:
            s["instr_list"] = s["instr"] = _instrument_list(self.parts, c)
            self.available.add("instruments")
        band = None
        if self.bpm is not None:
            band = tempo_band(self.bpm)
            adj, np_, pred = c.word(band.adjectives), c.word(band.noun_phrases), c.word(band.predicates)
            if c.chance(BPM_MENTION_RATE):
                suffix = c.word(V.BPM_SUFFIXES).format(bpm=round(self.bpm))
                np_, pred = (np_ + suffix, pred) if c.chance(0.5) else (np_, pred + suffix)
            s["tempo_adj"], s["tempo_np"], s["tempo_pred"] = Phrase(adj), Phrase(np_), Phrase(pred)
            s["a_tempo_genre_piece"] = Phrase(with_article(f"{adj} {genre_piece}"))
            self.available.add("tempo")
        if self.moods:
            words = []
            for mood in self.moods[:3]:
                word = c.word(V.MOODS[mood]) if mood in V.MOODS else mood
                if word not in words:
                    words.append(word)
            s["moods"] = Phrase(join_words(words))
            two = join_words(words[:2]) if c.chance(0.5) else ", ".join(words[:2])
            s["a_moods"] = Phrase(with_article(join_words(words[:2])))
            s["a_mood_genre_piece"] = Phrase(with_article(f"{two} {genre_piece}"))
            self.available.add("mood")
        spellings = _key_spellings(labels.key)
        if spellings or self.mode:
            key = c.choice(spellings) if spellings else ""
            s["key_phrase"] = Phrase(c.choice(_key_phrases(key, self.mode)))
            if key:
                mode_name = V.MODE_NAMES.get(self.mode, self.mode)
                s["key_name"] = Phrase(f"{key} {mode_name}".strip())
            self.available.add("key")
        meter = _meter_phrases(labels.meter)
        if meter:
            s["meter"] = Phrase(c.word(meter))
            self.available.add("meter")
        energy = (labels.energy or "").strip().lower()
        if energy:
            known = V.ENERGY_WORDS.get(energy)
            adj = c.word(known["adjectives"]) if known else f"{energy}-energy"
            level = c.word(known["levels"]) if known else energy
            s["energy_adj"], s["energy_level"] = Phrase(adj), Phrase(level)
            self.available.add("energy")
        dynamics = (labels.dynamics or "").strip().lower()
        if dynamics in V.DYNAMICS_PHRASES:
            s["dynamics_vp"] = Phrase(c.word(V.DYNAMICS_PHRASES[dynamics]))
            self.available.add("dynamics")
        texture = (labels.texture or "").strip().lower()
        if texture:
            word = c.word(V.TEXTURE_WORDS[texture]) if texture in V.TEXTURE_WORDS else texture
            s["texture_adj"], s["a_texture_adj"] = Phrase(word), Phrase(with_article(word))
            self.available.add("texture")
        sections = _sections_np(labels.sections)
        if sections:
            s["sections_np"] = Phrase(sections)
            self.available.add("sections")
        composer = str((labels.extra or {}).get("composer") or "").strip()
        if composer and composer.casefold() not in UNNAMED_COMPOSERS:
            s["composer"] = Phrase(composer)
            self.available.add("composer")
        if (labels.extra or {}).get("swing"):
            self.available.add("swing")
        if self.parts and not any(p.words.family == V.VOICE_FAMILY for p in self.parts):
            self.available.add("instrumental")
        usage = _usage_lists(labels, self.genre, self.moods)
        kinds = [k for k, items in usage.items() if V.split_held_out(items)[0]]
        if kinds:
            kind = c.choice(kinds)
            context = c.word(usage[kind])
            if kind == "place":
                context = f"{'at' if context in V.PLACES_TAKING_AT else 'in'} {context}"
            s[kind] = Phrase(context)
            self.available.add("usage")
        beats = self.genre.beats or V.DEFAULT_BEATS
        s["a_beat"] = Phrase(c.word(beats).format(genre=genre_name))
        s["a_bassline"] = Phrase(c.word(self.genre.basslines or V.DEFAULT_BASSLINES))

    # -- planning --------------------------------------------------------------------------------
    def _slot_names(self) -> set[str]:
        return set(self.slots)

    def _simple_pools(self, topics: frozenset[str]) -> list[str]:
        """Body pools covering exactly these topics that have a usable template for this caption."""
        if topics not in self._pool_cache:
            slots = self._slot_names()
            self._pool_cache[topics] = [p for p in _BODY_POOLS.get(topics, []) if self.c.eligible(p, slots)]
        return self._pool_cache[topics]

    def plan_and_write(self) -> CaptionDraft:
        c = self.c
        chosen = {"genre"} | ({"instruments"} & self.available) | ({"tempo"} & self.available)
        for topic, rate in OPTIONAL_TOPIC_RATES.items():
            if topic not in self.available:
                continue
            if topic == "dynamics" and (self.labels.dynamics or "") in ("crescendo", "decrescendo"):
                rate = 0.55
            if topic == "meter" and (self.labels.meter or "") not in ("", "4/4"):
                rate = 0.35
            if c.chance(rate):
                chosen.add(topic)
        target = int(c.rng.choice(list(SENTENCE_COUNT_WEIGHTS), p=list(SENTENCE_COUNT_WEIGHTS.values())))

        clauses_all = _role_clauses(self.parts, skip_lead=False)
        has_lead = any(cl.role == "lead" for cl in clauses_all)
        opening = self._choose_opening(chosen, has_lead)
        covered = set(_opening_pool_topics(opening.pool))
        lead_opening = opening.pool.endswith(":lead")

        units: list[_Unit] = []
        instr_unit: _Unit | None = None
        if "instruments" in chosen:
            if "instruments" in covered:
                clauses = _role_clauses(self.parts, skip_lead=lead_opening)
                if lead_opening and len(self.parts) > 1 and not clauses:
                    instr_unit = _Unit(frozenset({"instruments"}), "list")
                elif clauses and (lead_opening or c.chance(0.35)):
                    instr_unit = self._roles_unit(clauses, optional=not lead_opening)
            else:
                instr_unit = self._instrument_unit(clauses_all, has_lead)
        middle = [t for t in chosen - covered - {"instruments", "usage"}]
        middle.sort()
        order = c.rng.permutation(len(middle))
        middle = [middle[i] for i in order]
        for topic in middle:
            if self._simple_pools(frozenset({topic})):
                units.append(_Unit(frozenset({topic})))
        if instr_unit is not None:
            units.insert(0 if c.chance(0.8) else min(1, len(units)), instr_unit)
        if "usage" in chosen and "usage" not in covered:
            usage = _Unit(frozenset({"usage"}))
            units.insert(len(units) if c.chance(0.85) else int(c.rng.integers(len(units) + 1)), usage)

        for i in range(len(units) - 1):  # random merges for variety
            if i + 1 < len(units) and c.chance(0.3):
                self._try_merge(units, i, i + 1)
        self._fit(units, target)
        if 1 + sum(u.sentences for u in units) < 2:
            units.append(_Unit(frozenset({"usage"})))
        sentences = [render(opening.text, self.slots)]
        for unit in units:
            sentences.extend(self._write_unit(unit))
        text = " ".join(_capitalize(s.strip()) + ("" if s.strip().endswith((".", "!", "?")) else ".")
                        for s in sentences)
        return CaptionDraft(text, caption_aspects(self.labels), list(c.template_ids), list(c.phrases))

    def _choose_opening(self, chosen: set[str], has_lead: bool) -> Template:
        slots = self._slot_names()
        options: list[Template] = []
        for pool in POOLS:
            if not pool.startswith("open.") or not _opening_pool_topics(pool) <= chosen:
                continue
            if pool.endswith(":lead"):
                if has_lead:
                    options.extend(self.c.eligible(pool, slots | {"x"}))
            else:
                options.extend(self.c.eligible(pool, slots))
        template = options[int(self.c.rng.integers(len(options)))]
        self.c.template_ids.append(template.id)
        if "x" in template.slots:
            lead = [p for p in self.parts if p.part.role == "lead"]
            self.lead_subject = _Mentions(self.c).group(lead, definite_first=True)
            self.slots["x"] = self.lead_subject
        return template

    def _roles_unit(self, clauses: list[_Clause], optional: bool) -> _Unit:
        n = len(clauses)
        minimum = math.ceil(n / 3)
        topics = frozenset({"roles_detail"}) if optional else frozenset({"instruments"})
        preferred = 2 if n > 3 or (n > 1 and self.c.chance(0.3)) else 1
        return _Unit(topics, "roles", sentences=max(minimum, preferred), min_sentences=minimum, clauses=clauses)

    def _instrument_unit(self, clauses: list[_Clause], has_lead: bool) -> _Unit:
        c = self.c
        others = len(self.parts) > len([p for p in self.parts if p.part.role == "lead"])
        r = c.rng.random()
        all_known = all(p.part.role in ROLES for p in self.parts)
        if clauses and all_known and r < 0.45:
            return self._roles_unit(clauses, optional=False)
        if has_lead and others and r < 0.7:
            return _Unit(frozenset({"instruments"}), "compact")
        return _Unit(frozenset({"instruments"}), "list")

    def _mergeable(self, a: _Unit, b: _Unit) -> bool:
        simple = ("simple", "list")
        if a.kind not in simple or b.kind not in simple:
            return False
        return bool(self._simple_pools(a.topics | b.topics))

    def _try_merge(self, units: list[_Unit], i: int, j: int) -> bool:
        a, b = units[i], units[j]
        if not self._mergeable(a, b):
            return False
        kind = "list" if "list" in (a.kind, b.kind) else "simple"
        units[i] = _Unit(a.topics | b.topics, kind)
        del units[j]
        return True

    def _fit(self, units: list[_Unit], target: int) -> None:
        def count() -> int:
            return 1 + sum(u.sentences for u in units)

        while count() > target:
            pairs = [(i, j) for i in range(len(units)) for j in range(i + 1, len(units))
                     if self._mergeable(units[i], units[j])]
            if pairs:
                i, j = pairs[int(self.c.rng.integers(len(pairs)))]
                self._try_merge(units, i, j)
                continue
            shrinkable = [u for u in units if u.sentences > u.min_sentences]
            if shrinkable:
                shrinkable[0].sentences -= 1
                continue
            droppable = [(V_DROP_RANK[t], k) for k, u in enumerate(units) for t in u.topics if t in V_DROP_RANK
                         and u.topics <= set(V_DROP_RANK)]
            if droppable:
                _, k = min(droppable)
                del units[k]
                continue
            roles = [u for u in units if u.kind == "roles"]
            if roles:
                unit = roles[0]
                has_lead = any(cl.role == "lead" for cl in unit.clauses)
                unit.kind = "compact" if has_lead and len(self.parts) > 1 else "list"
                unit.sentences = unit.min_sentences = 1
                continue
            break

    # -- writing ---------------------------------------------------------------------------------
    def _write_unit(self, unit: _Unit) -> list[str]:
        if unit.kind == "roles":
            return self._write_roles(unit)
        if unit.kind == "compact":
            return [self._write_compact()]
        pool = self.c.choice(self._simple_pools(unit.topics))
        template = self.c.template(pool, self._slot_names())
        return [render(template.text, self.slots)]

    def _clause(self, clause: _Clause, mentions: _Mentions, first: bool) -> str:
        subject = mentions.group(clause.parts, definite_first=False)
        families = {p.words.family for p in clause.parts}
        family = families.pop() if len(families) == 1 else None
        template = self.c.template(f"role.{clause.role}", self._slot_names() | {"x"}, family)
        text = render(template.text, {**self.slots, "x": subject})
        prefixes = V.ROLE_PREFIXES.get(clause.role)
        if first and prefixes and self.c.chance(0.25):
            text = self.c.choice(prefixes) + text
        return text

    def _write_roles(self, unit: _Unit) -> list[str]:
        clauses = unit.clauses
        mentions = _Mentions(self.c)
        if self.lead_subject is not None:
            for p in self.parts:
                if p.part.role == "lead":
                    mentions.seen[p.name] += 1
        split = _clause_sentence_split(len(clauses), self.c, unit.sentences)
        sentences, k = [], 0
        for size in split:
            texts = [self._clause(cl, mentions, first=(i == 0)) for i, cl in enumerate(clauses[k:k + size])]
            k += size
            if size == 1:
                sentences.append(texts[0])
            else:
                joiner = self.c.template(f"join.{size}", ("0", "1", "2"))
                sentences.append(joiner.text.format(*texts))
        return sentences

    def _write_compact(self) -> str:
        lead = [p for p in self.parts if p.part.role == "lead"]
        rest = [p for p in self.parts if p.part.role != "lead"]
        mentions = _Mentions(self.c)
        x = mentions.group(lead, definite_first=self.c.chance(0.6))
        rest_phrase = mentions.group(rest, definite_first=False) if len(rest) <= 3 else _instrument_list(
            rest, self.c, limit=4)
        template = self.c.template("role.lead_backed", self._slot_names() | {"x", "rest"})
        return render(template.text, {**self.slots, "x": x, "rest": rest_phrase})


V_DROP_RANK = {topic: rank for rank, topic in enumerate(DROP_ORDER)}


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def caption_aspects(labels: ClipLabels) -> list[str]:
    """Short canonical tags for the facts of a clip, MusicCaps style (deterministic)."""
    aspects: list[str] = []
    genre = genre_words(labels.genre)
    if (labels.genre or "").strip():
        aspects.append(V.split_held_out(genre.names)[0][0].lower() if not genre.proper else genre.names[0])
    role_suffix = {"lead": "melody", "counter": "countermelody", "chords": "chords", "pad": "pad"}
    genre_key = (labels.genre or "").strip()
    for part in sorted(labels.parts or [], key=lambda p: _role_order(p.role)):
        name = instrument_words(part, genre_key).canonical
        if part.role == "bass":
            aspects.append(name if "bass" in name else f"{name} bass line")
            if genre.basslines and "walking" in genre.basslines[0]:
                aspects.append("walking bass")
        elif part.role in role_suffix and not name.endswith(role_suffix[part.role]):
            aspects.append(f"{name} {role_suffix[part.role]}")
        else:
            aspects.append(name)
    aspects.extend(_moods(labels))
    bpm = _valid_bpm(labels.bpm)
    if bpm is not None:
        aspects.append(tempo_band(bpm).aspect)
    mode_tag = _mode_aspect(_mode(labels))
    if mode_tag:
        aspects.append(mode_tag)
    meter = (labels.meter or "").strip()
    if meter and meter != "4/4" and _meter_phrases(meter):
        aspects.append(f"{meter} time")
    energy = (labels.energy or "").strip().lower()
    if energy:
        aspects.append(f"{energy} energy")
    dynamics = (labels.dynamics or "").strip().lower()
    if dynamics in V.DYNAMICS_ASPECTS and dynamics != "moderate":
        aspects.append(V.DYNAMICS_ASPECTS[dynamics])
    texture = (labels.texture or "").strip().lower()
    if texture and texture != "moderate":
        aspects.append(f"{texture} arrangement")
    if (labels.extra or {}).get("swing"):
        aspects.append("swing feel")
    parts_words = [instrument_words(p, genre_key) for p in labels.parts or []]
    if parts_words and not any(w.family == V.VOICE_FAMILY for w in parts_words):
        aspects.append("instrumental")
    unique = list(dict.fromkeys(a for a in aspects if a))
    return unique or ["music"]


def compose_caption(labels: ClipLabels, rng: np.random.Generator, split: str = "train") -> CaptionDraft:
    """Write one caption and report which templates and phrasings it used."""
    return _Captioner(labels, rng, split).plan_and_write()


def caption_clip(labels: ClipLabels, rng: np.random.Generator, split: str = "train") -> tuple[str, list[str]]:
    """A MusicCaps-style caption (2-5 sentences) and aspect list for a clip's labels."""
    draft = compose_caption(labels, rng, split)
    return draft.text, draft.aspects


def paraphrase(labels: ClipLabels, rng: np.random.Generator, n: int = 4, split: str = "train") -> list[str]:
    """Up to ``n`` different captions of the same facts."""
    captions: list[str] = []
    for _ in range(max(1, n) * 4):
        text = compose_caption(labels, rng, split).text
        if text not in captions:
            captions.append(text)
        if len(captions) >= n:
            break
    return captions


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _label_word_pattern() -> re.Pattern[str]:
    vocab = V.all_phrasings()
    phrases = set(vocab.train) | set(vocab.held_out)
    for genre in V.GENRES.values():
        phrases.update(V.split_held_out(genre.names)[0] + V.split_held_out(genre.names)[1])
    phrases.update(V.MODE_NAMES.values())
    phrases = {p for p in phrases if p and "{" not in p}
    body = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


_KEY_PATTERN = re.compile(r"(?<!\w)[A-G](?:#|b|-sharp|-flat| sharp| flat)?(?=\s+(?:major|minor|Dorian|Mixolydian|"
                          r"Phrygian|Lydian|blues|Locrian|Aeolian|Ionian)\b)")


def caption_skeleton(sentence: str) -> str:
    """A sentence with label words (genres, instruments, moods, tempo words, keys, numbers) masked."""
    text = _KEY_PATTERN.sub("<KEY>", sentence)
    text = _label_word_pattern().sub("<W>", text)
    text = re.sub(r"\d+(?:/\d+)?", "<N>", text)
    text = re.sub(r"(?:\b(?:a|an)\s+)?<W>(?:[\s,]+(?:and\s+)?<W>)*", "<W>", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def caption_diversity(captions: list[str]) -> dict[str, float]:
    """Diversity figures for a set of captions.

    Returns the number of captions, the distinct-caption ratio, the number of distinct word 3-grams and
    their ratio to all 3-grams, the share of the most common caption, of the most common opening (first
    4 words) and of the most common first-sentence skeleton (label words masked), and the mean length in
    words and sentences.
    """
    n = len(captions)
    if n == 0:
        return {"captions": 0, "distinct_caption_ratio": 0.0, "distinct_3grams": 0, "distinct_3gram_ratio": 0.0,
                "top_caption_share": 0.0, "top_opening_share": 0.0, "top_skeleton_share": 0.0,
                "mean_words": 0.0, "mean_sentences": 0.0}
    trigrams: Counter[tuple[str, ...]] = Counter()
    openings: Counter[str] = Counter()
    skeletons: Counter[str] = Counter()
    words_total, sentences_total = 0, 0
    for caption in captions:
        words = re.findall(r"[\w'#/-]+", caption.lower())
        words_total += len(words)
        trigrams.update(tuple(words[i:i + 3]) for i in range(len(words) - 2))
        openings[" ".join(words[:4])] += 1
        sentences = split_sentences(caption)
        sentences_total += len(sentences)
        skeletons[caption_skeleton(sentences[0]) if sentences else ""] += 1
    total_trigrams = sum(trigrams.values())
    return {
        "captions": n,
        "distinct_caption_ratio": len(set(captions)) / n,
        "distinct_3grams": len(trigrams),
        "distinct_3gram_ratio": len(trigrams) / total_trigrams if total_trigrams else 0.0,
        "top_caption_share": Counter(captions).most_common(1)[0][1] / n,
        "top_opening_share": openings.most_common(1)[0][1] / n,
        "top_skeleton_share": skeletons.most_common(1)[0][1] / n,
        "mean_words": words_total / n,
        "mean_sentences": sentences_total / n,
    }
