"""``musiclm data ...``: build and inspect corpora (synth, ingest, musiccaps, stats).

Picked up by :func:`musiclm.cli._extensions`; handlers import their module lazily so ``musiclm --help``
stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musiclm.cli import add_json_flag, emit
from musiclm.errors import MusicLMError


class UsageError(MusicLMError):
    """An argument value is out of range."""


def _check_common(args: argparse.Namespace) -> None:
    if hasattr(args, "seconds") and not 1.0 <= args.seconds <= 60.0:
        raise UsageError(f"--seconds must be between 1 and 60 (got {args.seconds:g})")
    if hasattr(args, "workers") and args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")


# ---------------------------------------------------------------------------------------------- synth
def _cmd_synth(args: argparse.Namespace) -> None:
    _check_common(args)
    if args.clips < 1:
        raise UsageError(f"--clips must be at least 1 (got {args.clips})")
    if args.world_size < 1 or not 0 <= args.rank < args.world_size:
        raise UsageError(f"need 0 <= --rank < --world-size (got {args.rank} and {args.world_size})")
    from musiclm.data.synth import build_corpus

    result = build_corpus(Path(args.out), args.clips, seconds=args.seconds, seed=args.seed,
                          workers=args.workers, rank=args.rank, world_size=args.world_size,
                          progress=not args.no_progress)
    emit(result, args)


# --------------------------------------------------------------------------------------------- ingest
def _human_ingest(result: dict[str, Any]) -> str:
    lines = [
        f"corpus     {result['corpus']}",
        f"folder     {result['folder']}  ({result['files_found']} audio files)",
        f"recordings {result['recordings']}  (new {result['new_recordings']}, "
        f"already done {result['resumed_recordings']})",
        f"clips      {result['clips']}  (new {result['new_clips']}; {result['hours']:.2f} h; "
        f"splits {result['splits']})",
        f"captioned  {result['captioned_clips']} clips",
        f"dropped    {result['dropped_clips'] or 'nothing'}",
        f"skipped    {result['skipped_recordings']} recordings {result['skipped_reasons'] or ''}",
    ]
    lines += [f"  {s['path']}: {s['reason']}" for s in result["skipped"][:50]]
    lines.append(f"time       {result['elapsed_s']:.1f} s")
    return "\n".join(lines)


def _cmd_ingest(args: argparse.Namespace) -> None:
    _check_common(args)
    from musiclm.data.ingest import CutOptions, ingest

    options = CutOptions(seconds=args.seconds, min_fraction=args.min_fraction, silence_db=args.silence_db,
                         min_active=args.min_active, normalize=args.normalize, lufs=args.lufs)
    result = ingest(args.folder, args.out, seconds=args.seconds, seed=args.seed, workers=args.workers,
                    name=args.name, exclude=args.exclude, options=options, progress=not args.no_progress)
    emit(result, args, _human_ingest)


# ------------------------------------------------------------------------------------------ musiccaps
def _cmd_musiccaps(args: argparse.Namespace) -> None:
    from musiclm.data.musiccaps import build_musiccaps_corpus, write_prompts

    if args.captions_only:
        result = write_prompts(args.csv, args.out, balanced=args.balanced)
    else:
        if args.audio_dir is None:
            raise UsageError("AUDIO_DIR is needed (or pass --captions-only to write the prompt set)")
        result = build_musiccaps_corpus(args.csv, args.audio_dir, args.out, seed=args.seed,
                                        balanced=args.balanced, normalize=args.normalize,
                                        progress=not args.no_progress)
    emit(result, args)


# ---------------------------------------------------------------------------------------------- stats
def _human_stats(stats: dict[str, Any]) -> str:
    def top(key: str, n: int = 12) -> str:
        items = list((stats.get(key) or {}).items())
        text = ", ".join(f"{k} {v}" for k, v in items[:n])
        return (text + (f", ... ({len(items)} in all)" if len(items) > n else "")) or "-"

    diversity = stats.get("caption_diversity") or {}
    diversity = diversity if diversity.get("captions") else {}
    lines = [
        f"corpus       {stats['corpus']}",
        f"clips        {stats['clips']}  ({stats['hours']:.2f} h; clip seconds {stats['clip_seconds']})",
        f"splits       {stats['splits']}",
        f"sources      {stats['sources']}",
        f"collections  {top('collections')}",
        f"captioned    {stats['captioned_clips']}   labelled {stats['labelled_clips']}",
        f"genre        {top('genre')}",
        f"instruments  {top('instruments')}",
        f"GM programs  {stats['distinct_programs']} distinct; per clip {top('programs_per_clip', 20)}",
        f"tempo (bpm)  {top('tempo_bpm', 30)}",
        f"key+mode     {stats['keys_covered']} covered: {top('key_mode')}",
        "captions     " + (", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in diversity.items()) or "-"),
    ]
    if stats.get("plot"):
        lines.append(f"figure       {stats['plot']}")
    return "\n".join(lines)


def _cmd_stats(args: argparse.Namespace) -> None:
    from musiclm.data.stats import corpus_stats, plot_stats

    stats = corpus_stats(args.corpus)
    if args.plot:
        stats["plot"] = str(plot_stats(stats, args.plot))
    emit(stats, args, _human_stats)


# -------------------------------------------------------------------------------------------- parsers
def _add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def register(subparsers: Any) -> None:
    """Add ``data`` and its subcommands to the top-level ``musiclm`` parser."""
    data = subparsers.add_parser("data", help="build and inspect training corpora")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="render a synthetic captioned corpus (composer, scores, FluidSynth)")
    synth.add_argument("--out", required=True, help="corpus folder (created; re-running resumes)")
    synth.add_argument("--clips", type=int, required=True, help="number of clips (over all ranks)")
    synth.add_argument("--seconds", type=float, default=10.0, help="clip length, 1-60 s (default 10)")
    synth.add_argument("--seed", type=int, default=0, help="the corpus is a pure function of this seed")
    synth.add_argument("--workers", type=int, default=1, help="render processes on this machine")
    synth.add_argument("--rank", type=int, default=0, help="this machine's share (0-based) of a build")
    synth.add_argument("--world-size", type=int, default=1, help="number of machines sharing the build")
    _add_progress_flag(synth)
    add_json_flag(synth)
    synth.set_defaults(handler=_cmd_synth)

    ingest = sub.add_parser("ingest", help="cut a folder of recordings (wav/flac/ogg/mp3...) into clips")
    ingest.add_argument("folder", metavar="DIR", help="folder searched recursively for audio files")
    ingest.add_argument("--out", required=True, help="corpus folder (created; may already hold other clips)")
    ingest.add_argument("--seconds", type=float, default=10.0, help="clip length, 1-60 s (default 10)")
    ingest.add_argument("--seed", type=int, default=0, help="seed of the per-recording split assignment")
    ingest.add_argument("--workers", type=int, default=1, help="decoding processes")
    ingest.add_argument("--name", default=None,
                        help="prefix of piece ids and sources (default: the folder's name)")
    ingest.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="skip files whose relative path or name matches (repeatable)")
    ingest.add_argument("--min-fraction", type=float, default=0.5,
                        help="keep a trailing remainder of at least this fraction of a clip (default 0.5)")
    ingest.add_argument("--silence-db", type=float, default=-60.0,
                        help="100 ms frames quieter than this (dBFS RMS) count as silent (default -60)")
    ingest.add_argument("--min-active", type=float, default=0.5,
                        help="drop clips with less than this fraction of non-silent frames (default 0.5)")
    ingest.add_argument("--normalize", choices=["loudness", "peak", "none"], default="loudness",
                        help="level each recording: loudness (--lufs, peak <= -1 dBFS), peak (-1 dBFS), none")
    ingest.add_argument("--lufs", type=float, default=-14.0, help="loudness target (default -14 LUFS)")
    _add_progress_flag(ingest)
    add_json_flag(ingest)
    ingest.set_defaults(handler=_cmd_ingest)

    caps = sub.add_parser("musiccaps", help="MusicCaps: a prompt set from the CSV, or a corpus")
    caps.add_argument("csv", metavar="CSV", help="musiccaps-public.csv")
    caps.add_argument("audio_dir", metavar="AUDIO_DIR", nargs="?",
                      help="folder of <ytid>.wav/.flac/.mp3/.ogg files")
    caps.add_argument("--out", required=True,
                      help="corpus folder; with --captions-only a folder (for prompts.jsonl) or a .jsonl")
    caps.add_argument("--captions-only", action="store_true", help="only write the prompt set (no audio)")
    caps.add_argument("--balanced", action="store_true", help="only the 1,000-clip genre-balanced subset")
    caps.add_argument("--seed", type=int, default=0, help="seed of the split of non-eval clips")
    caps.add_argument("--normalize", choices=["loudness", "peak", "none"], default="none",
                      help="level each clip (default none: keep the reference audio as it is)")
    _add_progress_flag(caps)
    add_json_flag(caps)
    caps.set_defaults(handler=_cmd_musiccaps)

    stats = sub.add_parser("stats", help="counts, hours, label histograms and caption diversity of a corpus")
    stats.add_argument("corpus", metavar="CORPUS", help="corpus folder (with manifest.jsonl)")
    stats.add_argument("--plot", metavar="PNG", help="also draw the histograms into this PNG")
    add_json_flag(stats)
    stats.set_defaults(handler=_cmd_stats)
