"""``musiclm tokenize ...``: run the codec, semantic tokenizer and MuLan once over corpora; inspect a store.

Picked up by :func:`musiclm.cli._extensions`; torch-heavy modules are imported inside the handlers.

* ``musiclm tokenize --corpus C [--corpus C2] --out TOKENS [--codec D --semantic D --mulan D] [--melody D]
  [--contour] [--reuse OLD_TOKENS] [--splits ...]
  [--shard-size 256] [--batch B] [--rank R --world-size W] [--threads N] [--device ...] [--no-progress] [--json]``
* ``musiclm tokenize info TOKENS [--json]``

Several processes share a build with ``--rank/--world-size`` (or under ``torchrun``, which sets ``RANK`` and
``WORLD_SIZE``); re-running the same command resumes it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from musiclm.bundled import default_model_dir, model_env
from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_threads_argument, set_threads


class TokenizeUsageError(MusicLMError):
    """A tokenize command's argument is unusable."""


COMPONENTS = (("codec", "--codec", "codec"), ("semantic", "--semantic", "semantic tokenizer"),
              ("mulan", "--mulan", "MuLan"))


def model_folders(args: argparse.Namespace) -> dict[str, Path]:
    """The three model folders: the flags, else ``$MUSICLM_<COMPONENT>``, else the bundled ones."""
    folders: dict[str, Path] = {}
    for component, flag, label in COMPONENTS:
        given = getattr(args, component, None)
        folder = Path(given) if given else default_model_dir(component)
        if not folder.exists():
            env = model_env(component)
            origin = "" if given else f" (from ${env})" if os.environ.get(env) else " (the bundled default)"
            raise TokenizeUsageError(f"no {label} model at {folder}{origin}; pass {flag} DIR (a folder made by "
                                     f"`musiclm {component} export`) or set ${env}")
        folders[component] = folder
    return folders


def _device(args: argparse.Namespace) -> Any:
    from musiclm.device import resolve_device

    local = os.environ.get("LOCAL_RANK")
    return resolve_device(args.device, int(local) if local is not None else None)


# --------------------------------------------------------------------------------------------- build
def _cmd_build(args: argparse.Namespace) -> None:
    if not args.corpus or not args.out:
        args.tokenize_parser.error("--corpus and --out are required (or use: musiclm tokenize info TOKENS_DIR)")
    from musiclm.tokenstore.build import TokenizerModels, build_store

    set_threads(args)
    folders = model_folders(args)
    device = _device(args)
    melody = None
    if args.melody:
        melody = default_model_dir("melody") if args.melody == "default" else Path(args.melody)
        if not melody.exists():
            raise TokenizeUsageError(f"no melody model at {melody}; pass --melody DIR (made by `musiclm melody "
                                     f"export`) or --melody default for the bundled one")
    models = TokenizerModels.load(folders["codec"], folders["semantic"], folders["mulan"], device=device,
                                  melody=melody)
    if args.contour:
        from musiclm.melody.contour import PitchContour

        models.contour = PitchContour(frame_rate=int(round(models.semantic.token_rate)))
    report = build_store(args.corpus, args.out, models, splits=args.splits, shard_size=args.shard_size,
                         batch=args.batch, rank=args.rank, world_size=args.world_size,
                         progress=not args.no_progress, max_skip_fraction=args.max_skip_fraction,
                         reuse=args.reuse)
    result = report.to_dict()
    result["device"] = str(device)

    def human(r: dict[str, Any]) -> str:
        lines = [f"rank {r['rank']}/{r['world_size']}: wrote {r['shards_written']} shard(s), "
                 f"{r['shards_already_done']} already done, of {r['shards_of_rank']} for this rank "
                 f"({r['shards_total']} in all) -> {r['out']}",
                 f"{r['clips_tokenized']} clips tokenized ({r['audio_seconds'] / 3600:.2f} h of audio), "
                 f"{r['clips_skipped']} skipped, {r['clips_per_second']} clips/s on {r['device']} (batch {r['batch']})"]
        if r.get("reused_from"):
            lines.append(f"copied {', '.join(r['parts_copied']) or 'nothing'} from {r['reused_from']}; computed "
                         f"{', '.join(r['parts_computed']) or 'nothing'}")
        lines += [f"  skipped {s['id']} ({s['corpus']}): {s['reason']}" for s in r["skipped"][:20]]
        if len(r["skipped"]) > 20:
            lines.append(f"  ... and {len(r['skipped']) - 20} more (see the shard reports)")
        return "\n".join(lines)

    emit(result, args, human)


# ---------------------------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> None:
    from musiclm.tokenstore.build import store_status

    status = store_status(args.store)
    if args.json:
        emit(status, args)
        return
    lines = [f"{status['store']}: {'complete' if status['complete'] else 'INCOMPLETE'}, "
             f"{status['shards_done']} of {status['shards']} shards done"
             + (f" (missing {status['missing']})" if status["missing"] else ""),
             f"clips: {status['clips_tokenized']} tokenized, {status['clips_skipped']} skipped, "
             f"{status['clips_planned']} planned; {status['hours']} h of audio",
             "corpora: " + ", ".join(f"{c['name']} ({c['clips']} clips, {c['path']})" for c in status["corpora"])]
    for split, totals in status["splits"].items():
        lines.append(f"  {split:<6} {totals['clips']:>7} clips {totals['hours']:>9.3f} h")
    codec, sem, mulan = status["codec"], status["semantic"], status["mulan"]
    lines += [f"codec    {codec['fingerprint']}: {codec['levels']} levels x {codec['codebook_size']} at "
              f"{codec['frame_rate']:g} Hz (coarse = first {codec['coarse_levels']})",
              f"semantic {sem['fingerprint']}: {sem['num_clusters']} clusters at {sem['token_rate']} Hz "
              f"(layer {sem['layer']})",
              f"mulan    {mulan['fingerprint']}: {mulan['num_quantizers']} tokens x {mulan['codebook_size']}, "
              f"{mulan['embed_dim']}-d embedding"]
    if status.get("melody"):
        mel = status["melody"]
        lines.append(f"melody   {mel['fingerprint']}: {mel['num_quantizers']} tokens x {mel['codebook_size']} per "
                     f"window, every {mel['hop_seconds']} s")
    if status.get("contour"):
        con = status["contour"]
        lines.append(f"contour  {con['fingerprint']}: pitch class or silent ({con['values']} values) at "
                     f"{con['frame_rate']} Hz")
    lines += [f"  skipped {s['id']} ({s['corpus']}): {s['reason']}" for s in status["skipped"][:10]]
    print("\n".join(lines))


# -------------------------------------------------------------------------------------------- parser
def register(subparsers: Any) -> None:
    """Add ``musiclm tokenize ...`` (and ``musiclm tokenize info``) to the main parser."""
    tok = subparsers.add_parser(
        "tokenize", help="corpora -> token store (codec, semantic and MuLan tokens) for the generation stages",
        description="Tokenize corpus folders into a token store once, for the three generation stages. Sharded "
                    "by --rank/--world-size (or torchrun's RANK/WORLD_SIZE); re-running resumes. "
                    "`musiclm tokenize info TOKENS_DIR` describes a store.")
    tok.add_argument("--corpus", action="append", metavar="DIR", help="corpus folder with manifest.jsonl "
                     "(repeatable)")
    tok.add_argument("-o", "--out", metavar="TOKENS_DIR", help="token store folder (created or resumed)")
    for component, flag, label in COMPONENTS:
        tok.add_argument(flag, dest=component, metavar="DIR",
                         help=f"{label} model folder (default: ${model_env(component)} or the bundled one)")
    tok.add_argument("--melody", metavar="DIR", help="also store melody tokens (for a semantic stage with melody "
                     "conditioning) made by this melody model folder ('default': $MUSICLM_MELODY or the bundled one)")
    tok.add_argument("--contour", action="store_true", help="also store each clip's pitch contour (dominant pitch "
                     "class per semantic frame; for a semantic stage that follows a melody note by note)")
    tok.add_argument("--reuse", metavar="TOKENS_DIR", help="a finished store of the same corpora, splits and shard "
                     "size: copy the tokens of every model whose weights are unchanged and compute only the others "
                     "(e.g. after retraining MuLan)")
    tok.add_argument("--splits", help="comma-separated splits to tokenize (default: train,valid,test)")
    tok.add_argument("--shard-size", type=int, default=256, help="clips per shard (default 256)")
    tok.add_argument("--batch", type=int, help="clips of equal length per model call (default: 8 on a GPU, 1 on "
                     "a CPU, where batching saves nothing)")
    tok.add_argument("--rank", type=int, help="this process's share, 0-based (default: $RANK or 0)")
    tok.add_argument("--world-size", type=int, help="processes sharing the build (default: $WORLD_SIZE or 1)")
    tok.add_argument("--max-skip-fraction", type=float, default=0.5,
                     help="stop when more than this fraction of a shard's clips fail (default 0.5)")
    add_threads_argument(tok)
    tok.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_flag(tok)
    add_json_flag(tok)
    tok.set_defaults(handler=_cmd_build, tokenize_parser=tok)

    sub = tok.add_subparsers(dest="tokenize_command", metavar="{info}")
    info = sub.add_parser("info", help="shards done/missing, clips and hours per split, models of a store")
    info.add_argument("store", metavar="TOKENS_DIR")
    add_json_flag(info)
    info.set_defaults(handler=_cmd_info)
