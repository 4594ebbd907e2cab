"""``musiclm eval-pairs`` (prompts that differ in one attribute) and ``musiclm eval-melody`` (does the output
follow a given melody?): the checks of :mod:`musiclm.eval.generation_checks`.

Register with ``register(subparsers)`` from :mod:`musiclm.cli`. Handlers import torch-heavy modules lazily.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_threads_argument, set_threads


class CheckUsageError(MusicLMError):
    """An ``eval-pairs`` or ``eval-melody`` argument is unusable."""


def _bar(desc: str, enabled: bool) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback drawing one tqdm bar over clips on stderr."""
    if not enabled:
        return None
    from musiclm.progress import clip_bar

    state: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = clip_bar(total, desc=desc)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report


def _command_line(command: str, args: argparse.Namespace, options: tuple[str, ...]) -> str:
    """The command that reproduces ``args``: every option in ``options`` that has a value."""
    parts = ["musiclm", command]
    for name in options:
        value = getattr(args, name, None)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, shlex.quote(f"{value:g}" if isinstance(value, float) else str(value))]
    return " ".join(parts)


def _load_model(args: argparse.Namespace) -> tuple[Any, Path]:
    from musiclm.eval.cli import _model_folder
    from musiclm.pipeline import MusicLM

    folder = _model_folder(args.model)
    if folder is None:
        raise CheckUsageError("no model: pass --model DIR or set $MUSICLM_MODEL (no bundled model is installed)")
    return MusicLM.from_pretrained(folder, device=args.device), folder


def _check_common(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise CheckUsageError(f"--seeds must be >= 1, got {args.seeds}")
    if not 0 < args.duration <= 300:
        raise CheckUsageError(f"--duration must be within (0, 300] seconds, got {args.duration}")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from musiclm.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------------ pairs
_PAIRS_OPTIONS = ("model", "seeds", "first_seed", "batch_seeds", "duration", "temperature", "top_k", "top_p", "cfg",
                  "reference", "reference_clips", "reference_only", "codec", "out", "threads", "device")


def _brief(pairs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each pair's means, p-value and verdict, by name (the JSON headline)."""
    return {p["name"]: {"high_mean": p["high_mean"], "low_mean": p["low_mean"], "p_value": p["p_value"],
                        "passed": p["passed"]} for p in pairs}


def _reference_section(reference: dict[str, Any]) -> str:
    from musiclm.eval.generation_checks import pairs_table

    sides = ("high-side clips", "low-side clips")
    text = (f"## The measures on real clips\n\nClips of `{reference['corpus']}` ({reference['split']} split) whose "
            "labels carry each side of a pair (tempo: the captioner's fast and very fast bands against its slow and "
            "very slow ones; instrument: with drums against piano without drums; mode; energy). A measure that "
            "does not separate these cannot judge a model trained on them.\n\n"
            f"{pairs_table(reference['real'], sides)}\n")
    if "codec" in reference:
        text += ("\nThe same clips through the model's codec (all levels): the best a model generating its tokens "
                 f"could do.\n\n{pairs_table(reference['codec'], sides)}\n")
    return text


def _cmd_pairs(args: argparse.Namespace) -> None:
    import torch

    from musiclm.eval.generation_checks import pairs_table, plot_pairs, run_attribute_pairs, run_reference_pairs
    from musiclm.fileio import atomic_write_text
    from musiclm.generate_cli import sampling_from_args

    _check_common(args)
    if args.batch_seeds < 1:
        raise CheckUsageError(f"--batch-seeds must be >= 1, got {args.batch_seeds}")
    if args.reference_only and not args.reference:
        raise CheckUsageError("--reference-only needs --reference CORPUS")
    if args.codec and not args.reference:
        raise CheckUsageError("--codec needs --reference CORPUS (it is the codec the real clips go through)")
    set_threads(args)
    model, folder = _load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    command = _command_line("eval-pairs", args, _PAIRS_OPTIONS)
    reference = None
    if args.reference:
        codec = model.codec
        if args.codec:
            from musiclm.codec.api import Codec

            codec = Codec.from_pretrained(args.codec, device=model.device)
        reference = run_reference_pairs(args.reference, codec, clips=args.reference_clips,
                                        duration=args.duration,
                                        progress=_bar("reference clips", not args.no_progress))
    if args.reference_only:
        result: dict[str, Any] = {"pairs": [], "duration": args.duration, "seconds": 0.0}
        table = ""
    else:
        result = run_attribute_pairs(model, seeds, args.duration, batch_seeds=args.batch_seeds,
                                     progress=_bar("prompt pairs", not args.no_progress),
                                     sampling=sampling_from_args(args))
        table = pairs_table(result)
    if reference is not None:
        result["reference"] = reference
    result["settings"] = {"command": command, "model": str(folder), "threads": torch.get_num_threads(),
                          "device": str(model.device)}
    paths = {"json": str(out / "pairs.json"), "markdown": str(out / "pairs.md")}
    _write_json(out / "pairs.json", result)
    body = "# Prompt pairs that differ in one attribute\n\n"
    if not args.reference_only:
        body += (f"Model `{folder}`, {len(seeds)} seeds, {result['duration']:g} s clips, "
                 f"{result['seconds']:.0f} s wall time.\n\n{table}\n\n")
    reference_text = _reference_section(reference) if reference is not None else ""
    if reference_text:
        body += reference_text + "\n"
    atomic_write_text(out / "pairs.md", f"{body}Command:\n\n```bash\n{command}\n```\n")
    if not args.reference_only:
        paths["plot"] = str(out / "pairs.png")
        plot_pairs(result, out / "pairs.png")
    headline: dict[str, Any] = {"paths": paths}
    if not args.reference_only:
        headline.update({"passed": result["passed"], "total": result["total"], "seconds": result["seconds"],
                         "pairs": _brief(result["pairs"])})
    if reference is not None:
        headline["reference"] = {kind: _brief(reference[kind]) for kind in ("real", "codec") if kind in reference}

    def text(_: Any) -> str:
        parts = [part for part in (table, reference_text) if part]
        return "\n\n".join(parts) + f"\n\nreport: {paths['markdown']}"

    emit(headline, args, text)


# ----------------------------------------------------------------------------------------------- melody
_MELODY_OPTIONS = ("model", "melodies", "split", "n", "seed", "seeds", "duration", "batch", "ceilings", "out",
                   "threads", "device")


def _cmd_melody(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from musiclm.eval.generation_checks import melody_queries, melody_table, run_melody_generation
    from musiclm.fileio import atomic_write_text

    _check_common(args)
    if args.n < 1 or args.batch < 1:
        raise CheckUsageError("--n and --batch must be >= 1")
    set_threads(args)
    queries = melody_queries(args.melodies, args.n, split=args.split, rng=np.random.default_rng(args.seed))
    model, folder = _load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = _command_line("eval-melody", args, _MELODY_OPTIONS)
    result = run_melody_generation(model, queries, args.duration, seeds=list(range(args.seeds)), batch=args.batch,
                                   progress=_bar("melody generation", not args.no_progress),
                                   ceilings=args.ceilings)
    result["settings"] = {"command": command, "model": str(folder), "melodies": str(args.melodies),
                          "split": args.split, "threads": torch.get_num_threads(), "device": str(model.device)}
    table = melody_table(result)
    paths = {"json": str(out / "melody.json"), "markdown": str(out / "melody.md")}
    _write_json(out / "melody.json", result)
    atomic_write_text(out / "melody.md", "# Melody following\n\n"
                      f"Model `{folder}`, {len(queries)} held-out melodies of `{args.melodies}` ({args.split}), "
                      f"{args.seeds} seed(s), {result['duration']:g} s clips, {result['seconds']:.0f} s wall time. "
                      f"{result['metric'].capitalize()}.\n\n{table}\n\nCommand:\n\n```bash\n{command}\n```\n")
    headline = {key: result[key] for key in ("with_melody", "text_only", "unrelated", "ratio", "wilcoxon_p",
                                             "codec", "resynthesis", "seconds") if key in result}
    headline["paths"] = paths
    emit(headline, args, lambda _: f"{table}\n\nreport: {paths['markdown']}")


# --------------------------------------------------------------------------------------------- register
def register(subparsers: Any) -> None:
    """Add ``musiclm eval-pairs`` and ``musiclm eval-melody`` to the main parser."""
    from musiclm.generate_cli import add_sampling_arguments

    pairs = subparsers.add_parser(
        "eval-pairs", help="does the output follow the prompt? four prompt pairs that differ in one attribute",
        description="Generate fast/slow, drums/piano, major/minor and energetic/calm prompt pairs for several seeds "
                    "and measure the pace (onsets per second; beat-tracked BPM beside it), percussive energy, key mode "
                    "and loudness on the audio. A pair passes when "
                    "the 'high' prompt measures higher (one-sided Mann-Whitney U, p < 0.05). Writes pairs.json, "
                    "pairs.md and pairs.png to --out.")
    pairs.add_argument("--model", help="model folder (default: $MUSICLM_MODEL or the bundled model, if installed)")
    pairs.add_argument("--seeds", type=int, default=8, help="seeds per prompt (default 8)")
    pairs.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0)")
    pairs.add_argument("--batch-seeds", type=int, default=1,
                       help="seeds per generation call (k > 1: one call makes k samples per prompt; default 1)")
    pairs.add_argument("--duration", type=float, default=10.0, help="seconds per clip (default 10)")
    add_sampling_arguments(pairs)
    pairs.add_argument("--reference", metavar="CORPUS",
                       help="also measure labelled real clips of CORPUS (test split) as they are and through the "
                            "model's codec: does each measure separate real music, and does the codec keep it?")
    pairs.add_argument("--reference-clips", type=int, default=16,
                       help="real clips a side for --reference (default 16)")
    pairs.add_argument("--reference-only", action="store_true", help="measure the --reference clips only")
    pairs.add_argument("--codec", metavar="DIR",
                       help="send the --reference clips through this codec instead of the model's (a new codec's "
                            "cap, before stages are trained on its tokens)")
    pairs.add_argument("--out", required=True, help="report folder")
    pairs.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_threads_argument(pairs)
    add_device_flag(pairs)
    add_json_flag(pairs)
    pairs.set_defaults(handler=_cmd_pairs)

    melody = subparsers.add_parser(
        "eval-melody", help="does the output follow a given melody? chroma similarity with vs without the melody",
        description="Generate held-out melodies of a melody-pairs corpus with a style prompt, once with the melody "
                    "and once from the text alone (same seed), and compare each output with the melody by chroma "
                    "similarity; a different melody gives the chance level. Writes melody.json and melody.md "
                    "to --out.")
    melody.add_argument("--model", help="model folder with melody conditioning (default: $MUSICLM_MODEL or the "
                                        "bundled model, if installed)")
    melody.add_argument("--melodies", required=True, help="a melody-pairs corpus (`musiclm melody pairs`)")
    melody.add_argument("--split", default="test", choices=["train", "valid", "test"],
                        help="split of the melodies (default test, the held-out ones)")
    melody.add_argument("--n", type=int, default=16, help="melodies to generate with (default 16)")
    melody.add_argument("--seed", type=int, default=0, help="seed of the choice of melodies (default 0)")
    melody.add_argument("--seeds", type=int, default=1, help="generation seeds per melody (default 1)")
    melody.add_argument("--duration", type=float, default=10.0, help="seconds per clip (default 10)")
    melody.add_argument("--batch", type=int, default=4, help="prompts per generation call (default 4)")
    melody.add_argument("--ceilings", action="store_true", help="also measure what the codec and the acoustic "
                        "stages (rendering the melody's own semantic tokens) keep of the melody")
    melody.add_argument("--out", required=True, help="report folder")
    melody.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_threads_argument(melody)
    add_device_flag(melody)
    add_json_flag(melody)
    melody.set_defaults(handler=_cmd_melody)
