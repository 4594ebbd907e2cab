"""Progress reporting on stderr shared by the long commands: a tqdm bar over clips, or a counter callback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def clip_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "") -> Any:
    """A tqdm bar over clips on stderr (a no-op bar when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="clip", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled)


def counter(label: str, enabled: bool = True) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback on stderr: a live counter on a terminal, else a line every 10 %;
    None when not ``enabled``."""
    if not enabled:
        return None
    tty = sys.stderr.isatty()
    last = {"tenth": -1}

    def report(done: int, total: int) -> None:
        if tty:
            print(f"\r{label}: {done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
            return
        tenth = done * 10 // max(total, 1)
        if tenth != last["tenth"]:
            last["tenth"] = tenth
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)

    return report
