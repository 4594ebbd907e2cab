"""``musiclm melody ...``: make training pairs, train, fit the quantiser, export, evaluate and embed.

Registered by :func:`register` in the main parser; handlers import torch-heavy modules lazily so
``musiclm --help`` stays fast. Commands that use a trained model take ``--model DIR`` (default
``$MUSICLM_MELODY`` or the bundled ``musiclm/pretrained/melody``). ``python -m musiclm.melody.cli ...`` runs
the same commands on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from musiclm.bundled import component_folder, model_env
from musiclm.cli import add_device_flag, add_json_flag, add_model_flags, emit
from musiclm.errors import MusicLMError
from musiclm.progress import counter
from musiclm.train.command import add_train_arguments, run_training, set_threads, train_config

MODEL_ENV = model_env("melody")


class MelodyUsageError(MusicLMError):
    """A melody command's argument is unusable."""


def _load(args: argparse.Namespace) -> Any:
    from musiclm.melody.api import MelodyModel

    set_threads(args)
    folder = component_folder(args.model, "melody", "melody model", MelodyUsageError)
    return MelodyModel.from_pretrained(folder, device=args.device)




# ------------------------------------------------------------------------------------------------ pairs
def _cmd_pairs(args: argparse.Namespace) -> None:
    from musiclm.melody.pairs import build_pairs

    summary = build_pairs(args.out, args.melodies, versions=args.versions, seconds=args.seconds, seed=args.seed,
                          workers=args.workers, hard_fraction=args.hard_fraction, score_fraction=args.score_fraction,
                          rank=args.rank, world_size=args.world_size, progress=not args.json)
    emit(summary, args)


# ------------------------------------------------------------------------------------------------ train
def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.melody.config import MelodyTrainingConfig
    from musiclm.melody.recipe import train_melody

    set_threads(args)
    config = train_config(args, MelodyTrainingConfig, "melody")
    run_training(args, config, "melody", train_melody)


# ---------------------------------------------------------------------------------------- fit-quantizer
def _cmd_fit_quantizer(args: argparse.Namespace) -> None:
    from musiclm.config import merge, parse_overrides
    from musiclm.melody.api import run_config
    from musiclm.melody.recipe import fit_run_quantizer

    set_threads(args)
    qcfg = run_config(args.run).model.quantizer
    if args.set:
        qcfg = merge(qcfg, parse_overrides(args.set))
    _, result = fit_run_quantizer(args.run, args.corpus, qcfg, device=args.device,
                                  progress=counter("embedding training clips", not args.json))
    fit = result["fit"]

    def human(r: dict[str, Any]) -> str:
        lines = [f"{fit['points']} window embeddings -> {fit['num_quantizers']} levels x {fit['codebook_size']} codes "
                 f"(requested {fit['requested_codebook_size']})"]
        lines += [f"level {s['level']:2d}: {s['codes_used']:4d} codes used, perplexity {s['perplexity']:7.1f}, "
                  f"cosine {s['cosine']:.4f}" for s in fit["levels"]]
        if "held_out" in r:
            lines.append("held-out windows: " + ", ".join(f"{k}={v}" for k, v in r["held_out"].items()))
        return "\n".join(lines)

    emit(result, args, human=human)


# ----------------------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> None:
    from musiclm.melody.api import WEIGHTS_FILE, MelodyModel
    from musiclm.melody.model import count_parameters
    from musiclm.weights import run_quantizer_problem

    set_threads(args)
    run = Path(args.run)
    problem = run_quantizer_problem(run)
    if problem:
        if args.no_fit:
            raise MelodyUsageError(f"{run}: {problem}; run `musiclm melody fit-quantizer {run}` first")
        from musiclm.melody.recipe import fit_run_quantizer

        fit_run_quantizer(run, device="cpu", progress=counter("fitting the quantiser", not args.json))
    model = MelodyModel.from_run(run, prefer_ema=not args.no_ema)
    folder = model.save(args.output)
    size = (folder / WEIGHTS_FILE).stat().st_size
    emit({"run": str(run), "weights_from": model.source, "output": str(folder), "size_mb": round(size / 2**20, 2),
          "parameters": count_parameters(model.model), "embed_dim": model.embed_dim,
          "window_seconds": model.window_seconds, "hop_seconds": model.hop_seconds,
          "levels": model.num_quantizers, "codebook_size": model.codebook_size,
          "fingerprint": model.fingerprint()}, args)


# ------------------------------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> None:
    from musiclm.fileio import atomic_write_text
    from musiclm.melody.evaluate import evaluate_pairs, summary

    model = _load(args)
    report = evaluate_pairs(model, args.pairs, split=args.split, candidates=args.candidates, seed=args.seed,
                            max_melodies=args.max_melodies, chroma_baseline=not args.no_baseline,
                            progress=counter("embedding held-out clips", not args.json))
    if args.output:
        import json

        atomic_write_text(args.output, json.dumps(report, indent=2))
    emit(report, args, human=summary)


# ------------------------------------------------------------------------------------------------ embed
def _cmd_embed(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.fileio import atomic_path

    model = _load(args)
    embeddings = model.embed_file(args.file)  # [1, windows, D]
    result: dict[str, Any] = {"file": str(args.file), "windows": int(embeddings.shape[1]),
                              "dim": int(embeddings.shape[2]), "window_seconds": model.window_seconds,
                              "hop_seconds": model.hop_seconds}
    if args.output:
        out = Path(args.output)
        if out.suffix != ".npy":
            raise MelodyUsageError(f"{out}: the embeddings file must end in .npy")
        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.save(handle, embeddings[0].numpy())
        result["output"] = str(out)
    elif args.json:
        result["embeddings"] = [[round(x, 6) for x in row] for row in embeddings[0].tolist()]
    if model.quantizer is not None:
        result["tokens"] = model.tokens_from_embeddings(embeddings)[0].tolist()

    def human(r: dict[str, Any]) -> str:
        lines = [f"{r['file']}: {r['windows']} windows of {r['window_seconds']:g} s (hop {r['hop_seconds']:g} s), "
                 f"{r['dim']}-d"]
        for i, row in enumerate(r.get("tokens", [])):
            lines.append(f"window {i} ({i * r['hop_seconds']:g} s): tokens {row}")
        if "output" in r:
            lines.append(f"wrote {r['output']}")
        return "\n".join(lines)

    emit(result, args, human=human)


def register(subparsers: Any) -> None:
    """Add ``musiclm melody ...`` to the main parser."""
    melody = subparsers.add_parser("melody", help="melody embedding model: training pairs, train, export, eval, embed")
    sub = melody.add_subparsers(dest="melody_command", metavar="ACTION", required=True)

    pa = sub.add_parser("pairs", help="render training pairs: melodies in several versions (resumable)")
    pa.add_argument("--out", required=True, help="pair-set folder (re-running resumes or extends it)")
    pa.add_argument("--melodies", type=int, required=True, help="source melodies (groups)")
    pa.add_argument("--versions", type=int, default=4, help="versions of each melody (default 4)")
    pa.add_argument("--seconds", type=float, default=8.0, help="length of each clip (default 8)")
    pa.add_argument("--hard-fraction", type=float, default=0.3,
                    help="share of melodies that also get a hard negative: same rhythm and key, other notes")
    pa.add_argument("--score-fraction", type=float, default=0.2, help="share of melodies taken from music21 scores")
    pa.add_argument("--seed", type=int, default=0)
    pa.add_argument("--workers", type=int, default=1, help="rendering processes")
    pa.add_argument("--rank", type=int, default=0, help="this machine's share of a multi-machine run")
    pa.add_argument("--world-size", type=int, default=1)
    add_json_flag(pa)
    pa.set_defaults(handler=_cmd_pairs)

    tr = sub.add_parser("train", help="train (or resume) the melody model on pair sets; works under torchrun")
    add_train_arguments(tr, "melody", data_help="pair-set folder (repeatable)")
    tr.set_defaults(handler=_cmd_train)

    fq = sub.add_parser("fit-quantizer", help="fit the residual quantiser of a run on its training windows")
    fq.add_argument("run", help="run folder of `musiclm melody train`")
    fq.add_argument("--corpus", action="append", help="pair-set folder (default: the run's own)")
    fq.add_argument("--set", action="append", metavar="KEY=VALUE", help="quantiser override, e.g. codebook_size=128")
    fq.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(fq)
    add_json_flag(fq)
    fq.set_defaults(handler=_cmd_fit_quantizer)

    ex = sub.add_parser("export", help="a run (with its quantiser; fitted now if missing) -> fp16 model folder")
    ex.add_argument("run", help="run folder of `musiclm melody train`")
    ex.add_argument("-o", "--output", required=True, help="model folder to write")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    ex.add_argument("--no-fit", action="store_true", help="fail instead of fitting a missing quantiser")
    ex.add_argument("--threads", type=int, help="CPU threads for torch")
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)

    ev = sub.add_parser("eval", help="held-out retrieval (query version vs 100 candidate melodies) and invariance")
    ev.add_argument("--pairs", required=True, help="pair-set folder")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--candidates", type=int, default=100, help="candidate melodies per query (default 100)")
    ev.add_argument("--max-melodies", type=int, default=1000, help="held-out melodies used as queries")
    ev.add_argument("--no-baseline", action="store_true", help="skip the chromagram baseline")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-o", "--output", help="also write the report as JSON here")
    add_model_flags(ev, "melody", "melody model")
    ev.set_defaults(handler=_cmd_eval)

    em = sub.add_parser("embed", help="a melody file -> window embeddings and melody tokens")
    em.add_argument("file", help="an audio file (wav, flac, ogg, mp3, ...)")
    em.add_argument("-o", "--output", help="write the embeddings [windows, D] to this .npy file")
    add_model_flags(em, "melody", "melody model")
    em.set_defaults(handler=_cmd_embed)


def main(argv: list[str] | None = None) -> int:
    """``python -m musiclm.melody.cli ACTION ...``: the melody commands without the main CLI."""
    import logging

    parser = argparse.ArgumentParser(prog="python -m musiclm.melody.cli")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["melody", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except MusicLMError as exc:
        print(f"musiclm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musiclm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
