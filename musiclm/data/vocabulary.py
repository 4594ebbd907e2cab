"""The words and sentence patterns that captions are made of.

Every list of phrasings here is a set of synonyms whose first entry is the canonical form (used in aspect
lists). A leading ``*`` marks a *held-out* phrasing: it is never used for the train and valid splits and is
reserved for the test split, so that robustness to unseen paraphrases can be measured. The captioner
(:mod:`musiclm.data.captions`) strips the marker; :func:`split_held_out` does the parsing.

Templates use ``{slot}`` placeholders; ``{x~plays}`` conjugates "plays" to agree in number with the
noun phrase in slot ``x``. A template pool's name lists the topics it covers, joined by ``+``; anything after
a ``:`` only names a variant of the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HELD_OUT_MARK = "*"


def split_held_out(phrases: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Split a marked list into (train phrasings, held-out phrasings), markers removed."""
    train = [p for p in phrases if not p.startswith(HELD_OUT_MARK)]
    held = [p[len(HELD_OUT_MARK):] for p in phrases if p.startswith(HELD_OUT_MARK)]
    return train, held


# --------------------------------------------------------------------------------------------------
# Instruments: General MIDI program -> synonyms (first = canonical) and family.
# --------------------------------------------------------------------------------------------------

GM_INSTRUMENTS: dict[int, tuple[str, ...]] = {
    0: ("piano", "grand piano", "acoustic piano", "*concert grand"),
    1: ("bright piano", "piano", "bright acoustic piano", "*brilliant-toned piano"),
    2: ("electric grand piano", "electric piano", "*stage piano"),
    3: ("honky-tonk piano", "saloon piano", "*barrelhouse piano"),
    4: ("electric piano", "e-piano", "Rhodes-style keys", "*Rhodes piano"),
    5: ("electric piano", "FM electric piano", "bell-like e-piano", "*DX-style electric piano"),
    6: ("harpsichord", "*baroque harpsichord"),
    7: ("clavinet", "clav", "*funky clavinet"),
    8: ("celesta", "celeste", "*twinkling celesta"),
    9: ("glockenspiel", "glock", "*orchestral bells"),
    10: ("music box", "*wind-up music box"),
    11: ("vibraphone", "vibes", "*vibraharp"),
    12: ("marimba", "*wooden marimba"),
    13: ("xylophone", "*bright xylophone"),
    14: ("tubular bells", "chimes", "*orchestral chimes"),
    15: ("dulcimer", "hammered dulcimer", "*struck dulcimer"),
    16: ("organ", "drawbar organ", "Hammond-style organ", "*tonewheel organ"),
    17: ("organ", "percussive organ", "*clicky organ"),
    18: ("rock organ", "organ", "*gritty rock organ"),
    19: ("church organ", "pipe organ", "organ", "*cathedral organ"),
    20: ("reed organ", "harmonium", "*pump organ"),
    21: ("accordion", "*squeezebox"),
    22: ("harmonica", "blues harp", "*mouth organ"),
    23: ("tango accordion", "accordion", "bandoneon", "*button accordion"),
    24: ("nylon-string guitar", "classical guitar", "acoustic guitar", "*Spanish guitar"),
    25: ("acoustic guitar", "steel-string guitar", "*steel-string acoustic"),
    26: ("jazz guitar", "hollow-body electric guitar", "electric guitar", "*archtop guitar"),
    27: ("clean electric guitar", "electric guitar", "*clean-toned guitar"),
    28: ("muted electric guitar", "palm-muted guitar", "electric guitar", "*damped guitar"),
    29: ("overdriven guitar", "crunchy electric guitar", "overdriven electric guitar", "*crunch guitar"),
    30: ("distorted guitar", "distorted electric guitar", "heavy guitar", "*fuzz guitar"),
    31: ("guitar harmonics", "chiming guitar harmonics", "*harmonic guitar tones"),
    32: ("upright bass", "double bass", "acoustic bass", "*stand-up bass"),
    33: ("electric bass", "bass guitar", "fingerstyle bass", "*finger-picked bass"),
    34: ("electric bass", "picked bass", "bass guitar", "*plectrum bass"),
    35: ("fretless bass", "*fretless electric bass"),
    36: ("slap bass", "slapped bass", "*popping bass"),
    37: ("slap bass", "slapped bass", "*popping bass"),
    38: ("synth bass", "synthesizer bass", "bass synth", "*analog synth bass"),
    39: ("synth bass", "bass synth", "*squelchy synth bass"),
    40: ("violin", "*solo violin"),
    41: ("viola",),
    42: ("cello", "violoncello", "*solo cello"),
    43: ("double bass", "contrabass", "bowed bass", "*orchestral bass"),
    44: ("tremolo strings", "trembling strings", "*shimmering tremolo strings"),
    45: ("pizzicato strings", "plucked strings", "*pizz strings"),
    46: ("harp", "concert harp", "*pedal harp"),
    47: ("timpani", "kettle drums", "*kettledrums"),
    48: ("strings", "string section", "string ensemble", "*orchestral strings"),
    49: ("strings", "string section", "slow strings", "*lush strings"),
    50: ("synth strings", "synthesized strings", "string synth", "*string machine"),
    51: ("synth strings", "synthesized strings", "string synth", "*string machine"),
    52: ("choir", "wordless choir", "choir aahs", "*vocal ensemble"),
    53: ("oohing voices", "wordless vocals", "vocal oohs", "*soft vocal oohs"),
    54: ("synth choir", "synthetic voices", "*digital choir"),
    55: ("orchestra hits", "orchestral stabs", "*orchestral hits"),
    56: ("trumpet", "*bright trumpet"),
    57: ("trombone", "*slide trombone"),
    58: ("tuba", "*sousaphone"),
    59: ("muted trumpet", "trumpet with a mute", "*harmon-muted trumpet"),
    60: ("French horn", "horn", "*orchestral horn"),
    61: ("brass section", "brass", "horn section", "*brass ensemble"),
    62: ("synth brass", "synthesized brass", "*brassy synth"),
    63: ("synth brass", "synthesized brass", "*brassy synth"),
    64: ("soprano sax", "soprano saxophone", "*straight sax"),
    65: ("alto sax", "alto saxophone", "saxophone", "*lead alto"),
    66: ("tenor sax", "tenor saxophone", "saxophone", "*breathy tenor saxophone"),
    67: ("baritone sax", "bari sax", "baritone saxophone", "*low-register saxophone"),
    68: ("oboe", "*double-reed oboe"),
    69: ("English horn", "cor anglais"),
    70: ("bassoon", "*low bassoon"),
    71: ("clarinet", "*woody clarinet"),
    72: ("piccolo", "piccolo flute"),
    73: ("flute", "concert flute", "*silvery flute"),
    74: ("recorder", "*wooden recorder"),
    75: ("pan flute", "panpipes", "*pan pipes"),
    76: ("blown bottle", "bottle sounds", "*breathy bottle tones"),
    77: ("shakuhachi", "bamboo flute", "*Japanese flute"),
    78: ("whistle", "whistling", "*whistled tone"),
    79: ("ocarina", "*clay ocarina"),
    80: ("square-wave lead", "square lead", "synth lead", "*chip lead"),
    81: ("sawtooth lead", "saw synth", "synth lead", "*buzzy saw lead"),
    82: ("calliope lead", "calliope synth", "*steam-organ lead"),
    83: ("chiff lead", "breathy synth lead", "*chiffy synth"),
    84: ("charang lead", "distorted synth lead", "*gritty synth lead"),
    85: ("voice lead synth", "vocal synth", "*synthetic voice lead"),
    86: ("fifths lead", "parallel-fifths synth lead", "*power-fifth synth"),
    87: ("bass-and-lead synth", "thick synth lead", "*layered bass lead"),
    88: ("new age pad", "synth pad", "*glassy pad"),
    89: ("warm pad", "synth pad", "*warm synth pad"),
    90: ("polysynth pad", "polysynth", "*analog polysynth"),
    91: ("choir pad", "vocal pad", "*airy voice pad"),
    92: ("bowed pad", "bowed synth pad", "*bowed-glass pad"),
    93: ("metallic pad", "*metallic synth pad"),
    94: ("halo pad", "shimmering pad", "*ethereal halo pad"),
    95: ("sweeping pad", "sweep pad", "filter-sweep pad", "*swept synth pad"),
    96: ("rain-like synth effects", "rain fx pad", "*droplet synth textures"),
    97: ("soundtrack fx pad", "cinematic synth texture", "*film-style synth swell"),
    98: ("crystal synth", "glassy synth bells", "*crystalline synth"),
    99: ("atmospheric synth", "atmosphere pad", "*airy atmospheric synth"),
    100: ("bright synth", "brightness pad", "*sparkling synth"),
    101: ("goblin synth", "eerie synth effect", "*spooky synth"),
    102: ("echoing synth", "echo fx synth", "*delay-drenched synth"),
    103: ("sci-fi synth", "space-age synth effects", "*futuristic synth"),
    104: ("sitar", "*Indian sitar"),
    105: ("banjo", "*five-string banjo"),
    106: ("shamisen", "*Japanese shamisen"),
    107: ("koto", "*Japanese koto"),
    108: ("kalimba", "thumb piano", "*mbira"),
    109: ("bagpipes", "bagpipe", "*highland pipes"),
    110: ("fiddle", "*folk fiddle"),
    111: ("shehnai", "shanai", "*Indian oboe"),
    112: ("tinkling bells", "small bells", "*sleigh-like bells"),
    113: ("agogo bells", "agogo", "*cowbell-like agogo"),
    114: ("steel drums", "steel pan", "*steelpan"),
    115: ("woodblock", "wood block"),
    116: ("taiko drums", "taiko", "*Japanese taiko"),
    117: ("melodic toms", "tuned toms", "*pitched toms"),
    118: ("synth drums", "electronic toms", "*synthetic drums"),
    119: ("reverse cymbal", "reversed cymbal swells", "*backwards cymbal"),
    120: ("guitar fret noise", "fret squeaks", "*string squeaks"),
    121: ("breath noise", "breathy noise", "*air noise"),
    122: ("seashore sound effects", "ocean waves", "*surf sounds"),
    123: ("bird tweets", "birdsong", "*chirping birds"),
    124: ("telephone rings", "phone ringing", "*ringing phone"),
    125: ("helicopter sounds", "*chopper noise"),
    126: ("applause", "clapping crowd", "*audience applause"),
    127: ("gunshot sounds", "*gunfire effects"),
}


def gm_family(program: int) -> str:
    """The instrument family of a General MIDI program (0-127)."""
    families = (
        "piano", "mallets", "organ", "guitar", "bass", "strings", "ensemble", "brass",
        "reed", "pipe", "synth_lead", "synth_pad", "synth_fx", "ethnic", "percussive", "sound_fx",
    )
    family = families[max(0, min(127, program)) // 8]
    if program in (52, 53, 54, 85, 91):
        return "voice"
    if program in (21, 22, 23):
        return "reed"
    if program in (46,):
        return "harp"
    if program == 47:
        return "percussive"
    if program in (48, 49, 50, 51, 44, 45):
        return "strings"
    return family


VOICE_FAMILY = "voice"

DRUM_KITS: dict[str, tuple[str, ...]] = {
    "drum kit": ("drums", "drum kit", "drum set", "*trap set"),
    "drums": ("drums", "drum kit", "drum set", "*trap set"),
    "percussion": ("percussion", "hand percussion", "*auxiliary percussion"),
    "congas": ("congas", "conga drums", "*tumbadoras"),
    "bongos": ("bongos", "*bongo drums"),
    "shaker": ("shaker", "*egg shaker"),
    "tambourine": ("tambourine", "*jingling tambourine"),
    "claves": ("claves",),
    "cowbell": ("cowbell",),
    "hand claps": ("hand claps", "claps", "*clapping hands"),
}
"""Names a drum (channel 10) part may carry."""

ELECTRONIC_GENRES = frozenset({"house", "techno", "drum_and_bass", "hip_hop", "lofi", "chiptune"})
FOLK_FIDDLE_GENRES = frozenset({"folk", "celtic", "country", "fiddle_tune"})

GENRE_INSTRUMENT_EXTRAS: dict[tuple[str, str], tuple[str, ...]] = {
    ("electronic", "drums"): ("drum machine", "programmed drums", "*beat machine"),
    ("folk_fiddle", "violin"): ("fiddle",),
}
"""Extra synonyms for an instrument (canonical name) in a genre group ("electronic", "folk_fiddle")."""

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")

# --------------------------------------------------------------------------------------------------
# Genres
# --------------------------------------------------------------------------------------------------

PIECE_NOUNS: dict[str, tuple[str, ...]] = {
    "classical": ("piece", "composition", "work", "*selection"),
    "band": ("song", "tune", "track", "number", "*jam"),
    "electronic": ("track", "tune", "production", "*cut"),
    "folk": ("tune", "song", "piece", "*air"),
    "score": ("piece", "setting", "*passage"),
    "generic": ("piece", "track", "tune", "*selection"),
}


@dataclass(frozen=True)
class GenreWords:
    """How to talk about one genre key."""

    names: tuple[str, ...]  # modifiers: "a {name} {piece}", "{name} music"
    pieces: str = "band"  # key of PIECE_NOUNS
    places: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()
    beats: tuple[str, ...] = ()  # noun phrases for what the drums play
    basslines: tuple[str, ...] = ()  # noun phrases for what the bass plays
    proper: bool = False  # names are capitalised words (Celtic, Latin)
    noun: bool = False  # names are pieces themselves: "a march", "a fiddle tune"
    music: tuple[str, ...] = ()  # "{x}" for "this is {x}"; default "{name} music"


GENRES: dict[str, GenreWords] = {
    "classical_piano": GenreWords(
        ("classical piano", "classical", "classical keyboard", "*piano recital"), "classical",
        places=("a concert hall", "a recital hall", "a fine-dining restaurant", "*a hotel bar with a grand piano"),
        scenes=("a period drama", "a film about a composer", "*a costume drama"),
        activities=("studying", "reading", "*a rainy afternoon indoors"),
    ),
    "string_quartet": GenreWords(
        ("string quartet", "chamber", "classical chamber", "*chamber string"), "classical",
        places=("a wedding reception", "a concert hall", "a formal dinner", "*an art gallery opening"),
        scenes=("a period drama", "*a stately-home tour"),
        activities=("a formal dinner party", "reading"),
    ),
    "cinematic": GenreWords(
        ("cinematic", "orchestral film-score", "soundtrack-style", "*trailer-style"), "classical",
        scenes=("a movie trailer", "a fantasy film", "an epic battle scene", "a nature documentary",
                "*the opening credits of a blockbuster"),
        places=("a planetarium show", "*a theme park"),
        activities=("a tabletop role-playing game", "*an imaginary adventure"),
    ),
    "jazz_trio": GenreWords(
        ("jazz", "jazz trio", "small-combo jazz", "*piano trio jazz"),
        places=("a jazz club", "a cocktail bar", "a coffee shop", "a hotel lounge", "*a late-night supper club"),
        scenes=("a noir detective film", "*a rainy city night scene"),
        activities=("a dinner party", "*a slow evening at home"),
        beats=("a swinging ride pattern", "a light jazz groove", "*a brushed swing pattern"),
        basslines=("a walking bass line", "a walking line", "*a loping walking line"),
    ),
    "big_band": GenreWords(
        ("big band", "big band jazz", "swing", "*swing-era"),
        places=("a ballroom", "a swing dance hall", "*a 1940s dance hall"),
        scenes=("a vintage film", "a period piece set in the 1940s", "*a black-and-white movie"),
        activities=("swing dancing", "*a Lindy Hop night"),
        beats=("a swinging beat", "a big band swing groove", "*a hard-swinging pulse"),
        basslines=("a walking bass line", "a walking line", "*a loping walking line"),
    ),
    "blues": GenreWords(
        ("blues", "bluesy", "*down-home blues"),
        places=("a dimly lit bar", "a roadhouse", "a blues club", "*a juke joint"),
        scenes=("a road movie", "*a Southern drama"),
        activities=("a late-night drive", "*a lonely evening"),
        beats=("a shuffle", "a blues groove", "*a lazy shuffle"),
    ),
    "rock": GenreWords(
        ("rock", "guitar-driven rock", "rock band", "*classic rock"),
        places=("a rock bar", "a stadium", "a sports venue", "*a dive bar"),
        scenes=("a car commercial", "a skateboarding video", "*a highway chase"),
        activities=("a road trip", "a workout"),
        beats=("a rock beat", "a steady backbeat", "*a straight-ahead rock groove"),
    ),
    "metal": GenreWords(
        ("metal", "heavy metal", "*hard-hitting metal"),
        places=("a metal club", "a music festival", "*a mosh pit"),
        scenes=("an action game", "a battle scene", "*a video game boss fight"),
        activities=("a heavy workout", "weightlifting"),
        beats=("a hammering metal beat", "a heavy beat", "*a double-kick assault"),
    ),
    "punk": GenreWords(
        ("punk", "punk rock", "*garage punk"),
        places=("a basement show", "a skate park", "*a garage gig"),
        scenes=("a skateboarding video", "*a rebellious teen movie"),
        activities=("skateboarding", "a workout"),
        beats=("a punk beat", "a driving backbeat", "*a breakneck punk beat"),
    ),
    "funk": GenreWords(
        ("funk", "funky", "*seventies funk"),
        places=("a dance club", "a retro bar", "*a roller rink"),
        scenes=("a 70s-style movie", "a retro TV show", "*a retro cop show"),
        activities=("dancing", "a house party"),
        beats=("a funk groove", "a tight funky beat", "*a syncopated pocket groove"),
        basslines=("a funky bass line", "a syncopated bass line", "*a rubbery bass groove"),
    ),
    "disco": GenreWords(
        ("disco", "dance-floor disco", "*seventies disco"),
        places=("a disco", "a nightclub", "*a glitter-ball dance floor"),
        scenes=("a retro dance scene", "*a roller-skating montage"),
        activities=("dancing", "a party"),
        beats=("a four-on-the-floor beat", "a disco beat", "*a pulsing disco kick"),
        basslines=("a bouncing octave bass line", "a disco bass line", "*a busy octave-jumping bass"),
    ),
    "house": GenreWords(
        ("house", "house music", "club house", "*dance-floor house"), "electronic",
        places=("a nightclub", "a beach club", "a rooftop bar", "*a warehouse party"),
        scenes=("a fashion show", "a fitness video", "*a summer festival aftermovie"),
        activities=("dancing", "a workout", "*an all-night rave"),
        beats=("a four-on-the-floor beat", "a house beat", "*a steady four-to-the-floor kick"),
    ),
    "techno": GenreWords(
        ("techno", "electronic techno", "*club techno"), "electronic",
        places=("a nightclub", "a warehouse rave", "*an underground club"),
        scenes=("a futuristic film", "a cyberpunk game", "*a neon-lit city chase"),
        activities=("dancing", "running"),
        beats=("a four-on-the-floor beat", "a driving techno beat", "*a relentless kick pattern"),
    ),
    "drum_and_bass": GenreWords(
        ("drum and bass", "drum'n'bass", "DnB", "*jungle-style drum and bass"), "electronic",
        places=("a club", "a rave", "*a festival tent"),
        scenes=("a racing game", "an extreme sports video", "*a parkour video"),
        activities=("running", "a workout"),
        beats=("a fast breakbeat", "a drum and bass breakbeat", "*a chopped-up breakbeat"),
    ),
    "hip_hop": GenreWords(
        ("hip hop", "hip-hop", "rap", "*boom-bap"), "electronic",
        places=("a streetwear store", "a basketball court", "*a block party"),
        scenes=("an urban street scene", "a skateboarding video", "*a city montage"),
        activities=("freestyle rapping", "a workout"),
        beats=("a hip hop beat", "a head-nodding beat", "*a boom-bap groove"),
    ),
    "lofi": GenreWords(
        ("lo-fi hip hop", "lo-fi", "lofi", "*chillhop"), "electronic",
        places=("a coffee shop", "a late-night cafe", "*a cozy bedroom"),
        scenes=("a study livestream", "*an anime-style montage"),
        activities=("studying", "relaxing", "*late-night homework"),
        beats=("a lazy hip hop beat", "a laid-back beat", "*a sleepy boom-bap beat"),
    ),
    "reggae": GenreWords(
        ("reggae", "roots reggae", "*Jamaican reggae"),
        places=("a beach bar", "a summer barbecue", "*a seaside shack"),
        scenes=("a tropical travel video", "*a beach holiday vlog"),
        activities=("relaxing on the beach", "*a sunset by the sea"),
        beats=("a one-drop reggae beat", "a reggae groove", "*a laid-back one-drop"),
        basslines=("a deep reggae bass line", "a round, heavy bass line", "*a dub-style bass line"),
    ),
    "bossa_nova": GenreWords(
        ("bossa nova", "Brazilian bossa nova", "*Rio-style bossa nova"),
        places=("a coffee shop", "a wine bar", "a hotel lobby", "*a seaside cafe in Rio"),
        scenes=("a travel vlog about Brazil", "*a beachside romance"),
        activities=("a relaxed dinner", "*a slow Sunday brunch"),
        beats=("a bossa nova groove", "a gentle bossa rhythm", "*a soft samba-derived pattern"),
    ),
    "latin": GenreWords(
        ("Latin", "Latin-flavoured", "Latin dance", "*Afro-Cuban-inspired"), proper=True,
        places=("a salsa club", "a tapas bar", "*a street fiesta"),
        scenes=("a travel video", "*a summer carnival scene"),
        activities=("dancing", "a summer party"),
        beats=("a Latin groove", "a syncopated Latin rhythm", "*a clave-driven groove"),
    ),
    "country": GenreWords(
        ("country", "country and western", "*Nashville-style country"),
        places=("a honky-tonk bar", "a country fair", "*a rodeo"),
        scenes=("a road movie", "a Western", "*a ranch documentary"),
        activities=("a road trip", "line dancing"),
        beats=("a country shuffle", "a train beat", "*a two-step rhythm"),
    ),
    "folk": GenreWords(
        ("folk", "acoustic folk", "traditional folk", "*rustic folk"), "folk",
        places=("a pub", "a folk festival", "a campfire gathering", "*a village fair"),
        scenes=("a countryside documentary", "*a rustic period film"),
        activities=("a quiet evening", "hiking"),
    ),
    "celtic": GenreWords(
        ("Celtic", "Irish-style", "Celtic folk", "*Gaelic"), "folk", proper=True,
        places=("an Irish pub", "a Celtic festival", "*a Highland gathering"),
        scenes=("a fantasy adventure", "a documentary about Ireland", "*a windswept coastline montage"),
        activities=("a Saint Patrick's Day party", "*a ceilidh"),
    ),
    "march": GenreWords(
        ("march", "military march", "*parade march"), "classical", noun=True,
        music=("march music", "military music", "*parade music"),
        places=("a parade", "a military ceremony", "*a town square parade"),
        scenes=("a patriotic film scene", "*a ceremonial procession"),
        activities=("marching", "*a Fourth of July picnic"),
        beats=("a marching snare pattern", "a steady march beat", "*a parade-ground cadence"),
    ),
    "waltz": GenreWords(
        ("waltz", "classical waltz", "*ballroom waltz"), "classical", noun=True,
        music=("waltz music", "music in waltz style", "*ballroom music"),
        places=("a ballroom", "a grand ball", "*a Viennese dance hall"),
        scenes=("a period romance", "*an ice-skating scene"),
        activities=("ballroom dancing", "*a wedding first dance"),
    ),
    "ambient": GenreWords(
        ("ambient", "atmospheric ambient", "*ambient electronica"), "electronic",
        places=("a spa", "an art gallery", "a planetarium", "*a museum installation"),
        scenes=("a nature documentary", "a space film", "*a slow-motion sequence"),
        activities=("meditation", "sleep", "focused work"),
    ),
    "chiptune": GenreWords(
        ("chiptune", "8-bit", "video game", "*retro game"), "electronic",
        places=("an arcade", "*a retro gaming bar"),
        scenes=("a retro video game", "a platformer level", "a pixel-art game", "*an 8-bit boss battle"),
        activities=("gaming", "*a speedrun stream"),
        beats=("a simple chip beat", "an 8-bit drum pattern", "*a bleepy noise-channel beat"),
    ),
    "gospel": GenreWords(
        ("gospel", "church gospel", "*soul-gospel"),
        places=("a church", "a Sunday service", "*a revival meeting"),
        scenes=("an uplifting film scene", "*a choir competition"),
        activities=("worship", "*a Sunday morning"),
        beats=("a gospel groove", "a churchy backbeat", "*a handclap-friendly beat"),
    ),
    "chorale": GenreWords(
        ("chorale", "four-part chorale", "hymn", "*Lutheran chorale"), "score", noun=True,
        music=("chorale music", "hymnody", "*Lutheran hymnody"),
        places=("a church", "a cathedral", "*a candlelit chapel"),
        scenes=("a period drama", "*a Christmas special"),
        activities=("quiet reflection", "worship"),
    ),
    "fiddle_tune": GenreWords(
        ("fiddle tune", "old-time fiddle tune", "*hoedown"), "folk", noun=True,
        music=("fiddle music", "old-time fiddle music", "*hoedown music"),
        places=("a barn dance", "a pub session", "a folk festival", "*a ceilidh"),
        scenes=("a rural festival scene", "*a country fair montage"),
        activities=("square dancing", "*a hoedown"),
    ),
    "renaissance_polyphony": GenreWords(
        ("Renaissance polyphonic", "Renaissance", "early music", "*sixteenth-century polyphonic"), "score",
        proper=True,
        places=("a cathedral", "a chapel", "a museum", "*a cloister"),
        scenes=("a historical drama", "a documentary about the Renaissance", "*a Tudor court scene"),
        activities=("quiet reflection", "*a candlelit evening"),
    ),
}

PLACES_TAKING_AT = frozenset({
    "a Highland gathering", "a ceilidh", "a garage gig", "a revival meeting", "a rodeo", "a street fiesta",
    "a town square parade", "a village fair", "a warehouse party", "an art gallery opening", "a block party",
    "a Celtic festival", "a Sunday service", "a barn dance", "a basement show", "a campfire gathering",
    "a country fair", "a music festival", "a folk festival", "a formal dinner", "a grand ball",
    "a military ceremony", "a parade", "a planetarium show", "a pub session", "a rave", "a summer barbecue",
    "a wedding reception", "a warehouse rave", "a glitter-ball dance floor",
})
"""Places that are events: "at a parade" rather than "in a parade"."""

GENERIC_PLACES = ("a coffee shop", "a cafe", "a hotel lobby", "a shopping mall", "a restaurant", "a lounge bar",
                  "*a bookshop")
GENERIC_SCENES = ("a travel vlog", "a documentary", "a short film", "an indie video game", "a commercial",
                  "*a slideshow of holiday photos")
GENERIC_ACTIVITIES = ("background listening", "a long drive", "studying", "*an afternoon of reading")

ENERGY_CONTEXTS: dict[str, dict[str, tuple[str, ...]]] = {
    "low": {
        "activities": ("meditation", "winding down at night", "studying", "*falling asleep"),
        "places": ("a spa", "a yoga studio", "*a quiet library"),
    },
    "high": {
        "activities": ("a workout", "dancing", "a road trip", "*a spin class"),
        "places": ("a gym", "a sports arena", "*a stadium concourse"),
        "scenes": ("a sports highlight reel", "an action sequence", "*a car chase"),
    },
}

MOOD_CONTEXTS: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    ("sad", "melancholic", "nostalgic", "sentimental", "reflective", "bittersweet", "somber", "gloomy"): {
        "scenes": ("an emotional film scene", "a flashback sequence", "*a rainy-day montage"),
    },
    ("happy", "cheerful", "joyful", "playful", "fun", "bright", "carefree", "whimsical", "quirky"): {
        "scenes": ("a children's cartoon", "a feel-good commercial", "*a sunny picnic montage"),
    },
    ("dark", "tense", "eerie", "mysterious", "suspenseful", "haunting", "ominous"): {
        "scenes": ("a thriller", "a horror film", "a mystery scene", "*a haunted-house sequence"),
    },
    ("epic", "triumphant", "heroic", "majestic", "dramatic"): {
        "scenes": ("a movie trailer", "a fantasy battle scene", "*a coronation scene"),
    },
    ("romantic", "tender", "sweet"): {
        "scenes": ("a romantic film scene", "a wedding video", "*a candlelit dinner"),
        "places": ("a wedding reception",),
    },
    ("peaceful", "calm", "serene", "dreamy", "relaxed", "chill", "mellow"): {
        "activities": ("meditation", "yoga", "relaxing after work", "*stargazing"),
    },
}

# --------------------------------------------------------------------------------------------------
# Moods, tempo, energy, dynamics, texture, keys, meters
# --------------------------------------------------------------------------------------------------

MOODS: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "cheerful", "joyful", "*sunny"),
    "sad": ("sad", "melancholic", "sorrowful", "*downcast"),
    "relaxed": ("relaxed", "calm", "easygoing", "*chilled-out"),
    "calm": ("calm", "peaceful", "tranquil", "*placid"),
    "energetic": ("energetic", "lively", "spirited", "*vigorous"),
    "dark": ("dark", "brooding", "ominous", "*shadowy"),
    "tense": ("tense", "suspenseful", "anxious", "*edgy"),
    "romantic": ("romantic", "tender", "loving", "*amorous"),
    "dreamy": ("dreamy", "hazy", "floaty", "*reverie-like"),
    "epic": ("epic", "grand", "sweeping", "*larger-than-life"),
    "playful": ("playful", "bouncy", "cheeky", "*mischievous"),
    "peaceful": ("peaceful", "serene", "tranquil", "*restful"),
    "nostalgic": ("nostalgic", "wistful", "sentimental", "*yearning"),
    "aggressive": ("aggressive", "fierce", "hard-hitting", "*ferocious"),
    "mysterious": ("mysterious", "enigmatic", "mystical", "*cryptic"),
    "triumphant": ("triumphant", "victorious", "heroic", "*celebratory"),
    "solemn": ("solemn", "reverent", "dignified", "*stately"),
    "melancholic": ("melancholic", "melancholy", "wistful", "*mournful"),
    "uplifting": ("uplifting", "hopeful", "inspiring", "*heartening"),
    "hopeful": ("hopeful", "optimistic", "*bright-eyed"),
    "groovy": ("groovy", "funky", "*danceable"),
    "warm": ("warm", "cozy", "*homely"),
    "bright": ("bright", "sparkling", "*radiant"),
    "gloomy": ("gloomy", "bleak", "*dreary"),
    "eerie": ("eerie", "creepy", "unsettling", "*spooky"),
    "majestic": ("majestic", "regal", "*noble"),
    "festive": ("festive", "party-like", "*jubilant"),
    "tender": ("tender", "gentle", "delicate", "*soft-hearted"),
    "angry": ("angry", "furious", "*seething"),
    "chill": ("chill", "laid-back", "mellow", "*breezy"),
    "mellow": ("mellow", "soft", "smooth", "*velvety"),
    "dramatic": ("dramatic", "intense", "theatrical", "*gripping"),
    "suspenseful": ("suspenseful", "tense", "*nerve-racking"),
    "joyful": ("joyful", "joyous", "exuberant", "*gleeful"),
    "cheerful": ("cheerful", "good-natured", "*chipper"),
    "serene": ("serene", "tranquil", "*still"),
    "reflective": ("reflective", "contemplative", "thoughtful", "*introspective"),
    "bittersweet": ("bittersweet", "*poignant"),
    "soulful": ("soulful", "heartfelt", "*deeply felt"),
    "haunting": ("haunting", "ghostly", "*spectral"),
    "heroic": ("heroic", "valiant", "*gallant"),
    "intense": ("intense", "fierce", "*relentless"),
    "lively": ("lively", "spirited", "animated", "*zesty"),
    "rebellious": ("rebellious", "defiant", "*snarling"),
    "sentimental": ("sentimental", "emotional", "*misty-eyed"),
    "spiritual": ("spiritual", "devotional", "*prayerful"),
    "whimsical": ("whimsical", "quirky", "*fanciful"),
    "carefree": ("carefree", "light-hearted", "*breezy"),
    "moody": ("moody", "sultry", "*smoky"),
    "somber": ("somber", "grave", "*funereal"),
    "quirky": ("quirky", "offbeat", "*zany"),
    "elegant": ("elegant", "graceful", "refined", "*poised"),
    "driving": ("driving", "propulsive", "*pounding"),
    "smooth": ("smooth", "silky", "*velvety"),
    "gritty": ("gritty", "raw", "*grimy"),
    "bouncy": ("bouncy", "springy", "*buoyant"),
    "fun": ("fun", "feel-good", "*good-time"),
    "sweet": ("sweet", "lovely", "*charming"),
    "proud": ("proud", "confident", "*swaggering"),
    "ominous": ("ominous", "foreboding", "*menacing"),
}


@dataclass(frozen=True)
class TempoBand:
    """Words for one tempo range; ``upper`` is exclusive (beats per minute)."""

    name: str
    upper: float
    adjectives: tuple[str, ...]  # attributive/predicative: "an upbeat track", "it is upbeat"
    noun_phrases: tuple[str, ...]  # "at a brisk pace"
    predicates: tuple[str, ...]  # "the tempo is {x}"
    aspect: str


TEMPO_BANDS: tuple[TempoBand, ...] = (
    TempoBand("very_slow", 60, ("very slow", "glacial", "*crawling"),
              ("a very slow tempo", "a glacial pace", "*a crawling pace"),
              ("very slow", "extremely slow", "*barely moving"), "very slow tempo"),
    TempoBand("slow", 80, ("slow", "unhurried", "leisurely", "*languid"),
              ("a slow tempo", "a leisurely pace", "an unhurried pace", "*a languid pace"),
              ("slow", "*on the slow side"), "slow tempo"),
    TempoBand("moderate", 100, ("laid-back", "relaxed", "moderately paced", "*easy-paced"),
              ("a relaxed tempo", "a moderate pace", "an easy walking pace", "*a gently rolling pace"),
              ("moderate", "relaxed", "*unrushed"), "moderate tempo"),
    TempoBand("medium", 118, ("mid-tempo", "medium-tempo", "*mid-paced"),
              ("a medium tempo", "a moderate tempo", "a steady mid-tempo pace", "*a comfortable middle tempo"),
              ("medium", "moderate", "*in the middle range"), "medium tempo"),
    TempoBand("upbeat", 135, ("upbeat", "brisk", "lively", "*peppy"),
              ("an upbeat tempo", "a brisk pace", "*a bouncy clip"),
              ("upbeat", "brisk", "fairly quick", "*sprightly"), "uptempo"),
    TempoBand("fast", 165, ("fast", "quick", "speedy", "*rapid"),
              ("a fast tempo", "a quick pace", "*a rapid clip"),
              ("fast", "quick", "*rapid"), "fast tempo"),
    TempoBand("very_fast", float("inf"), ("very fast", "frantic", "breakneck", "*blistering"),
              ("a very fast tempo", "a breakneck pace", "a frantic pace", "*a blistering pace"),
              ("very fast", "frantic", "*blazing"), "very fast tempo"),
)

BPM_SUFFIXES = (", around {bpm} BPM", " (about {bpm} BPM)", ", roughly {bpm} beats per minute",
                " ({bpm} bpm)", "*, clocking in near {bpm} BPM")

ENERGY_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "low": {"adjectives": ("low-energy", "subdued", "restrained", "*low-key"), "levels": ("low", "*modest")},
    "medium": {"adjectives": ("moderately energetic", "steady", "*even-keeled"),
               "levels": ("moderate", "medium", "*middling")},
    "high": {"adjectives": ("high-energy", "energetic", "driving", "*full-throttle"),
             "levels": ("high", "*sky-high")},
}

DYNAMICS_PHRASES: dict[str, tuple[str, ...]] = {
    "soft": ("is played softly", "stays quiet", "keeps a gentle volume", "*stays hushed"),
    "moderate": ("sits at a moderate volume", "keeps even dynamics", "*holds a steady volume"),
    "loud": ("is played loudly", "is loud and forceful", "hits hard", "*comes on strong"),
    "crescendo": ("builds in volume", "grows louder", "swells steadily", "*gathers volume as it goes"),
    "decrescendo": ("gets quieter", "fades down gradually", "softens as it goes", "*dies away"),
}
DYNAMICS_ASPECTS = {"soft": "soft dynamics", "loud": "loud", "crescendo": "crescendo",
                    "decrescendo": "decrescendo", "moderate": "moderate dynamics"}

TEXTURE_WORDS: dict[str, tuple[str, ...]] = {
    "sparse": ("sparse", "minimal", "airy", "*uncluttered"),
    "moderate": ("balanced", "moderately full", "*medium-weight"),
    "dense": ("dense", "full", "thick", "layered", "*busy"),
}

MODE_NAMES = {"major": "major", "minor": "minor", "dorian": "Dorian", "mixolydian": "Mixolydian",
              "phrygian": "Phrygian", "lydian": "Lydian", "locrian": "Locrian", "aeolian": "Aeolian",
              "ionian": "Ionian", "blues": "blues"}

METERS: dict[str, tuple[str, ...]] = {
    "4/4": ("4/4 time", "common time", "*four-four time"),
    "3/4": ("3/4 time", "triple meter", "waltz time", "*three-four time"),
    "6/8": ("6/8 time", "compound meter", "*six-eight time"),
    "2/4": ("2/4 time", "duple meter", "*two-four time"),
    "12/8": ("12/8 time", "*twelve-eight time"),
    "5/4": ("5/4 time", "*five-four time"),
    "9/8": ("9/8 time",),
    "7/8": ("7/8 time",),
}

SUBJECTS = ("it", "the {piece}", "this {piece}", "the music")

# --------------------------------------------------------------------------------------------------
# Sentence templates. Pool name = topics covered (joined by "+"), optional ":variant".
# --------------------------------------------------------------------------------------------------

OPENING_TEMPLATES: dict[str, tuple[str, ...]] = {
    "genre": (
        "This is {a_genre_piece}.",
        "Here we have {a_genre_piece}.",
        "The clip is {a_genre_piece}.",
        "What we hear is {a_genre_piece}.",
        "This audio contains {a_genre_piece}.",
        "This {piece} is {genre_music}.",
        "{a_genre_piece} is playing.",
        "This recording is {a_genre_piece}.",
        "This is an example of {genre_music}.",
        "The audio presents {a_genre_piece}.",
        "*This excerpt comes from {a_genre_piece}.",
        "*We are listening to {a_genre_piece}.",
        "*The recording captures {a_genre_piece}.",
    ),
    "genre+tempo": (
        "This is {a_tempo_genre_piece}.",
        "Here is {a_genre_piece} at {tempo_np}.",
        "This {genre_piece} moves at {tempo_np}.",
        "The clip features {a_tempo_genre_piece}.",
        "This {tempo_adj} {piece} is {genre_music}.",
        "{a_tempo_genre_piece} plays here.",
        "This {genre_piece} is {tempo_adj}.",
        "You can hear {a_tempo_genre_piece}.",
        "*Set at {tempo_np}, this is {a_genre_piece}.",
        "*Listeners get {a_tempo_genre_piece}.",
    ),
    "genre+mood": (
        "This clip is {a_mood_genre_piece}.",
        "This {genre_piece} sounds {moods}.",
        "Here is {a_mood_genre_piece}.",
        "The clip is {a_mood_genre_piece}.",
        "{a_mood_genre_piece} can be heard here.",
        "*There is something {moods} about this {genre_piece}.",
        "*Heard here is {a_mood_genre_piece}.",
    ),
    "genre+key": (
        "This is {a_genre_piece} in {key_phrase}.",
        "This {genre_piece} is in {key_phrase}.",
        "Here is {a_genre_piece} written in {key_phrase}.",
        "The clip presents {a_genre_piece} in {key_phrase}.",
        "*Pitched in {key_phrase}, this is {a_genre_piece}.",
    ),
    "genre+instruments": (
        "This is {a_genre_piece} featuring {instr_list}.",
        "This {genre_piece} features {instr_list}.",
        "{instr_list} {instr~plays} {a_genre_piece}.",
        "Here {instr_list} {instr~performs} {a_genre_piece}.",
        "The clip is {a_genre_piece} played on {instr_list}.",
        "*Scored for {instr_list}, this is {a_genre_piece}.",
        "*The lineup of {instr_list} delivers {a_genre_piece}.",
    ),
    "genre+tempo+instruments": (
        "This is {a_tempo_genre_piece} for {instr_list}.",
        "This {tempo_adj} {genre_piece} features {instr_list}.",
        "{instr_list} {instr~plays} {a_tempo_genre_piece}.",
        "*At {tempo_np}, {instr_list} {instr~works} through {a_genre_piece}.",
    ),
    "genre+tempo+mood": (
        "This {tempo_adj} {genre_piece} sounds {moods}.",
        "This is {a_mood_genre_piece} at {tempo_np}.",
        "*Taken at {tempo_np}, this {genre_piece} feels {moods}.",
    ),
    "genre+composer": (
        "This is {a_genre_piece} by {composer}.",
        "The clip comes from {a_genre_piece} by {composer}.",
        "Here is {a_genre_piece} written by {composer}.",
        "*We hear {a_genre_piece} composed by {composer}.",
    ),
    "genre+instruments:lead": (
        "{x} {x~carries} the melody in this {genre_piece}.",
        "In this {genre_piece}, {x} {x~plays} the main tune.",
        "The melody of this {genre_piece} is played by {x}.",
        "*{x} {x~leads} the way through this {genre_piece}.",
    ),
}

BODY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "instruments": (
        "It features {instr_list}.",
        "The instrumentation includes {instr_list}.",
        "You can hear {instr_list}.",
        "The ensemble is made up of {instr_list}.",
        "{instr_list} {instr~makes} up the arrangement.",
        "The arrangement uses {instr_list}.",
        "{subj} is played on {instr_list}.",
        "*The lineup consists of {instr_list}.",
        "*Instruments heard include {instr_list}.",
        "*{subj} brings together {instr_list}.",
    ),
    "instruments+tempo": (
        "{instr_list} {instr~plays} at {tempo_np}.",
        "It features {instr_list} at {tempo_np}.",
        "*{instr_list} {instr~moves} along at {tempo_np}.",
    ),
    "tempo": (
        "The tempo is {tempo_pred}.",
        "{subj} moves at {tempo_np}.",
        "{subj} is {tempo_adj}.",
        "The pace is {tempo_pred}.",
        "{subj} has {tempo_np}.",
        "*{subj} unfolds at {tempo_np}.",
        "*Rhythmically, {subj} is {tempo_adj}.",
    ),
    "tempo+meter": (
        "{subj} moves at {tempo_np} in {meter}.",
        "The tempo is {tempo_pred}, in {meter}.",
        "*{subj} rolls along in {meter} at {tempo_np}.",
    ),
    "tempo+swing": (
        "{subj} swings at {tempo_np}.",
        "The tempo is {tempo_pred}, with a swung feel.",
        "*The groove swings at {tempo_np}.",
    ),
    "tempo+key": (
        "{subj} is {tempo_adj} and in {key_phrase}.",
        "{subj} moves at {tempo_np} in {key_phrase}.",
        "*{subj} sits in {key_phrase} at {tempo_np}.",
    ),
    "tempo+mood": (
        "{subj} is {tempo_adj}, and it sounds {moods}.",
        "The tempo is {tempo_pred} and the mood is {moods}.",
        "*At {tempo_np}, {subj} feels {moods}.",
    ),
    "tempo+energy": (
        "The tempo is {tempo_pred} and the energy is {energy_level}.",
        "{subj} is {tempo_adj} and {energy_adj}.",
        "*{subj} moves at {tempo_np} with {energy_level} energy.",
    ),
    "key": (
        "{subj} is in {key_phrase}.",
        "The harmony sits in {key_phrase}.",
        "{subj} is written in {key_phrase}.",
        "The key is {key_name}.",
        "*Tonally, {subj} stays in {key_phrase}.",
        "*The tonal center is {key_name}.",
    ),
    "key+mood": (
        "{subj} is in {key_phrase} and sounds {moods}.",
        "Written in {key_phrase}, {subj} sounds {moods}.",
        "*In {key_phrase}, {subj} comes across as {moods}.",
    ),
    "meter": (
        "{subj} is in {meter}.",
        "{subj} is written in {meter}.",
        "*{subj} moves in {meter}.",
    ),
    "swing": (
        "The rhythm swings.",
        "{subj} has a swing feel.",
        "*The eighth notes are swung.",
    ),
    "mood": (
        "The mood is {moods}.",
        "{subj} sounds {moods}.",
        "The atmosphere is {moods}.",
        "{subj} has {a_moods} feel.",
        "The overall vibe is {moods}.",
        "*There is {a_moods} quality to it.",
        "*Emotionally, {subj} comes across as {moods}.",
    ),
    "mood+energy": (
        "{subj} sounds {moods}, with {energy_level} energy.",
        "The mood is {moods}, and the energy is {energy_level}.",
        "*Emotionally it is {moods}, with {energy_level} energy.",
    ),
    "mood+texture": (
        "{subj} sounds {moods}, with {a_texture_adj} arrangement.",
        "The arrangement is {texture_adj} and the mood {moods}.",
        "*{a_texture_adj} arrangement gives it {a_moods} character.",
    ),
    "energy": (
        "The energy is {energy_level}.",
        "{subj} feels {energy_adj}.",
        "The energy level is {energy_level}.",
        "*Energy-wise, {subj} is {energy_adj}.",
    ),
    "dynamics": (
        "{subj} {dynamics_vp}.",
        "Dynamically, {subj} {dynamics_vp}.",
        "Throughout the clip, {subj} {dynamics_vp}.",
        "*In terms of volume, {subj} {dynamics_vp}.",
    ),
    "texture": (
        "The arrangement is {texture_adj}.",
        "The texture is {texture_adj}.",
        "{subj} has {a_texture_adj} arrangement.",
        "*The instrumentation feels {texture_adj}.",
    ),
    "dynamics+texture": (
        "The arrangement is {texture_adj}, and {subj} {dynamics_vp}.",
        "{subj} has {a_texture_adj} texture and {dynamics_vp}.",
        "*With {a_texture_adj} arrangement, {subj} {dynamics_vp}.",
    ),
    "energy+texture": (
        "The arrangement is {texture_adj} and {energy_adj}.",
        "{subj} feels {energy_adj}, with {a_texture_adj} texture.",
        "*With {a_texture_adj} arrangement, {subj} feels {energy_adj}.",
    ),
    "dynamics+energy": (
        "{subj} feels {energy_adj} and {dynamics_vp}.",
        "The energy is {energy_level}, and {subj} {dynamics_vp}.",
        "*{energy_adj} throughout, {subj} {dynamics_vp}.",
    ),
    "usage:place": (
        "{subj} could play {place}.",
        "{subj} would make good background music {place}.",
        "It sounds like something you would hear {place}.",
        "This would be at home {place}.",
        "*You could picture this playing {place}.",
        "*{subj} would not be out of place {place}.",
    ),
    "usage:scene": (
        "{subj} could be used in {scene}.",
        "{subj} would suit {scene}.",
        "This could be the soundtrack of {scene}.",
        "{subj} would work well in {scene}.",
        "*{subj} would make a fitting score for {scene}.",
        "*Picture it underscoring {scene}.",
    ),
    "usage:activity": (
        "{subj} would be good for {activity}.",
        "This is music for {activity}.",
        "{subj} could accompany {activity}.",
        "*{subj} would make a nice backdrop for {activity}.",
        "*Put this on for {activity}.",
    ),
    "mood+usage:scene": (
        "Its {moods} feel would suit {scene}.",
        "{subj} sounds {moods}, and it could be used in {scene}.",
        "*With its {moods} mood, it could underscore {scene}.",
    ),
    "mood+usage:place": (
        "{subj} sounds {moods}, and it could play {place}.",
        "Its {moods} atmosphere would work well {place}.",
        "*Being {moods}, it would sound right {place}.",
    ),
    "mood+usage:activity": (
        "{subj} sounds {moods}, good for {activity}.",
        "Its {moods} feel makes it suitable for {activity}.",
        "*{moods} in character, it would go well with {activity}.",
    ),
    "instrumental": (
        "There are no vocals.",
        "This is an instrumental {piece}.",
        "No voices can be heard.",
        "There is no singing in this {piece}.",
        "*It is purely instrumental.",
        "*Nobody sings on this {piece}.",
    ),
    "sections": (
        "The excerpt covers {sections_np}.",
        "We hear {sections_np} of the {piece}.",
        "The clip spans {sections_np}.",
        "*This part of the {piece} takes in {sections_np}.",
    ),
    "composer": (
        "It was written by {composer}.",
        "The music is by {composer}.",
        "*The composer is {composer}.",
    ),
}

ROLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "lead": (
        "{x} {x~plays} the melody",
        "{x} {x~carries} the main melody",
        "{x} {x~takes} the lead",
        "the melody is played by {x}",
        "{x} {x~plays} the main tune",
        "{x} {x~leads} with the main theme",
        "*{x} {x~sings} out the tune",
        "*the tune is entrusted to {x}",
    ),
    "counter": (
        "{x} {x~answers} with a countermelody",
        "{x} {x~plays} a countermelody",
        "{x} {x~adds} a second melodic line",
        "a countermelody comes from {x}",
        "*{x} {x~weaves} a counter-line around the tune",
    ),
    "chords": (
        "{x} {x~plays} the chords",
        "{x} {x~provides} the harmony",
        "{x} {x~fills} in the harmony",
        "the chords are played by {x}",
        "{x} {x~accompanies} with chords",
        "*{x} {x~supplies} the chordal backing",
        "*{x} {x~outlines} the changes",
    ),
    "pad": (
        "{x} {x~holds} long chords in the background",
        "{x} {x~sustains} soft chords underneath",
        "{x} {x~provides} a sustained backdrop",
        "sustained harmony comes from {x}",
        "*{x} {x~lays} a soft carpet of harmony underneath",
    ),
    "bass": (
        "{x} {x~plays} {a_bassline}",
        "{x} {x~holds} down the low end",
        "{x} {x~anchors} the bottom",
        "the bass line is played by {x}",
        "{x} {x~provides} the bass",
        "*{x} {x~underpins} everything with {a_bassline}",
        "*the low end belongs to {x}",
    ),
    "drums": (
        "{x} {x~keeps} time",
        "{x} {x~lays} down {a_beat}",
        "{x} {x~drives} the rhythm",
        "{x} {x~plays} {a_beat}",
        "the rhythm comes from {x}",
        "*{x} {x~propels} the groove",
        "*{x} {x~keeps} the pulse going",
    ),
    "percussion": (
        "{x} {x~adds} rhythmic accents",
        "{x} {x~adds} percussive colour",
        "{x} {x~taps} out a pattern",
        "*{x} {x~sprinkles} in percussive detail",
    ),
    "lead_backed": (
        "{x} {x~plays} the melody over {rest}",
        "{x} {x~carries} the tune, backed by {rest}",
        "{rest} {rest~accompanies} {x}, which {x~carries} the melody",
        "the melody is on {x}, with {rest} behind it",
        "*{x} {x~leads} with {rest} in support",
        "*{rest} {rest~frames} the tune played by {x}",
    ),
}

ROLE_FAMILY_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "chords": {
        "guitar": ("{x} {x~strums} the chords", "{x} {x~strums} along"),
        "piano": ("{x} {x~comps} chords underneath",),
        "organ": ("{x} {x~holds} chords underneath",),
    },
    "lead": {
        "strings": ("{x} {x~sings} the melody on the bow",),
    },
}
"""Train-only role clauses that fit one instrument family (the generic pools cover the test split)."""

ROLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "pad": ("in the background, ", "further back, "),
    "bass": ("in the low end, ", "down low, "),
    "percussion": ("in the background, ",),
    "chords": ("behind it, ",),
}

CLAUSE_JOINERS: dict[int, tuple[str, ...]] = {
    2: ("{0}, while {1}", "{0} and {1}", "{0}, and {1}", "{0}, as {1}", "*{0}; meanwhile, {1}",
        "*{0}, whilst {1}"),
    3: ("{0}, {1} and {2}", "{0}, {1}, and {2}", "{0}, while {1} and {2}", "*{0}; meanwhile, {1} and {2}",
        "*{0}, whilst {1} and {2}"),
}

DEFAULT_BEATS = ("a steady beat", "a {genre} beat", "a {genre} groove", "*a solid pulse")
DEFAULT_BASSLINES = ("a bass line", "a steady bass line", "the bass line", "*a low, steady line")


@dataclass
class Vocabulary:
    """All phrasings gathered in one place, for held-out checks and caption statistics."""

    train: set[str] = field(default_factory=set)
    held_out: set[str] = field(default_factory=set)

    def add(self, phrases: tuple[str, ...] | list[str]) -> None:
        train, held = split_held_out(phrases)
        self.train.update(train)
        self.held_out.update(held)


def all_phrasings() -> Vocabulary:
    """Every marked word list in this module (not the templates), split into train and held-out."""
    vocab = Vocabulary()
    for names in GM_INSTRUMENTS.values():
        vocab.add(names)
    for names in DRUM_KITS.values():
        vocab.add(names)
    for names in GENRE_INSTRUMENT_EXTRAS.values():
        vocab.add(names)
    for nouns in PIECE_NOUNS.values():
        vocab.add(nouns)
    for genre in GENRES.values():
        for group in (genre.names, genre.music, genre.places, genre.scenes, genre.activities, genre.beats,
                      genre.basslines):
            vocab.add(group)
    for group in (GENERIC_PLACES, GENERIC_SCENES, GENERIC_ACTIVITIES, DEFAULT_BEATS, DEFAULT_BASSLINES):
        vocab.add(group)
    for kinds in list(ENERGY_CONTEXTS.values()) + list(MOOD_CONTEXTS.values()):
        for group in kinds.values():
            vocab.add(group)
    for names in MOODS.values():
        vocab.add(names)
    for band in TEMPO_BANDS:
        for group in (band.adjectives, band.noun_phrases, band.predicates):
            vocab.add(group)
    for words in ENERGY_WORDS.values():
        for group in words.values():
            vocab.add(group)
    for group in list(DYNAMICS_PHRASES.values()) + list(TEXTURE_WORDS.values()) + list(METERS.values()):
        vocab.add(group)
    return vocab
