"""How long the procedural composer takes to write a piece (no rendering), per style.

    python benchmarks/composer_speed.py [--seconds 40] [--repeats 3]

Prints the median wall time of ``compose(style, rng, seconds)`` over ``--repeats`` seeds for every style, and the
median over all styles (the corpus builder composes one piece per one or two clips, so this must stay far below
the rendering time of about 0.6 CPU-s per 10 s clip).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from musiclm.data.composer import STYLES, compose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    medians = {}
    for index, style in enumerate(sorted(STYLES)):
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            compose(style, np.random.default_rng([index, repeat]), seconds=args.seconds)
            times.append(time.perf_counter() - started)
        medians[style] = float(np.median(times))
    print(f"| style | median s per {args.seconds:g} s piece |\n|---|---|")
    for style, value in medians.items():
        print(f"| {style} | {value:.4f} |")
    print(f"\nmedian over {len(medians)} styles: {np.median(list(medians.values())):.4f} s")


if __name__ == "__main__":
    main()
