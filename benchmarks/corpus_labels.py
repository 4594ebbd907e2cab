"""How well a corpus's labels agree with its audio: tempo (librosa) and key/mode (chroma key profiles).

    python benchmarks/corpus_labels.py CORPUS [--limit 300] [--json]

Prints, per genre and overall, the share of clips whose estimated tempo matches the label exactly (within
5 %), at half/double, or at a metrical ratio, and the share whose estimated key is exact, the relative
major/minor, or a fifth away.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from musiclm.analysis import estimate_key, estimate_tempo, key_agreement, tempo_agreement
from musiclm.data.manifest import ManifestError, read_manifest, read_parts


def measure(args: tuple[str, str, float, str, str]) -> tuple[str, str, str | None]:
    path, genre, bpm, key, mode = args
    wav, sr = sf.read(path, dtype="float32")
    tempo = tempo_agreement(estimate_tempo(wav, sr), bpm) if bpm else "unlabelled"
    keyed = key_agreement(estimate_key(wav, sr), key, mode) if key and mode else None
    return genre, tempo, keyed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        records = read_manifest(args.corpus)
    except ManifestError:  # a build still running: read what its part files hold so far
        records = sorted(read_parts(args.corpus), key=lambda r: r.id)
    records = [r for r in records if r.labels.get("bpm")][: args.limit]
    jobs = [(str(Path(args.corpus) / r.path), r.labels.get("genre", "?"), float(r.labels["bpm"]),
             r.labels.get("key", ""), r.labels.get("mode", "")) for r in records]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(measure, jobs, chunksize=4))
    tempo, keys = Counter(r[1] for r in results), Counter(r[2] for r in results if r[2])
    per_genre: dict[str, Counter] = defaultdict(Counter)
    for genre, t, k in results:
        per_genre[genre]["n"] += 1
        per_genre[genre]["tempo_ok"] += t in ("exact", "octave")
        per_genre[genre]["key_ok"] += k in ("exact", "relative")
    n, nk = len(results), max(sum(keys.values()), 1)
    summary = {
        "clips": n,
        "tempo": {k: round(v / n, 3) for k, v in tempo.items()},
        "tempo_exact_or_octave": round((tempo["exact"] + tempo["octave"]) / n, 3),
        "key": {k: round(v / nk, 3) for k, v in keys.items()},
        "key_exact_or_relative": round((keys["exact"] + keys["relative"]) / nk, 3),
        "per_genre": {g: {"clips": c["n"], "tempo_ok": round(c["tempo_ok"] / c["n"], 2),
                          "key_ok": round(c["key_ok"] / c["n"], 2)} for g, c in sorted(per_genre.items())},
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
        return
    print(f"clips: {n}")
    print(f"tempo exact {summary['tempo'].get('exact', 0):.1%}, half/double {summary['tempo'].get('octave', 0):.1%}, "
          f"metrical {summary['tempo'].get('metrical', 0):.1%}, wrong {summary['tempo'].get('wrong', 0):.1%}")
    print(f"key exact {summary['key'].get('exact', 0):.1%}, relative {summary['key'].get('relative', 0):.1%}, "
          f"fifth {summary['key'].get('fifth', 0):.1%}, wrong {summary['key'].get('wrong', 0):.1%}")
    print("\n| genre | clips | tempo exact or half/double | key exact or relative |\n|---|---|---|---|")
    for genre, row in summary["per_genre"].items():
        print(f"| {genre} | {row['clips']} | {row['tempo_ok']:.0%} | {row['key_ok']:.0%} |")


if __name__ == "__main__":
    main()
