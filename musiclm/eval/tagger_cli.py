"""``musiclm tagger ...``: train, export, evaluate and apply the independent audio tagger.

Register with ``tagger_cli.register(subparsers)`` from :mod:`musiclm.cli`. Handlers import torch-heavy modules
lazily so ``musiclm --help`` stays fast. Commands that use a trained tagger take its folder (made by
``musiclm tagger export``); ``tag`` also reads ``$MUSICLM_TAGGER``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musiclm.bundled import default_model_dir, model_env
from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.progress import counter
from musiclm.train.command import add_threads_argument, add_train_arguments, run_training, set_threads, train_config

MODEL_ENV = model_env("tagger")


class TaggerUsageError(MusicLMError):
    """A tagger command's argument is unusable."""




def _load(folder: str | None, device: str) -> Any:
    from musiclm.eval.tagger import Tagger

    path = Path(folder) if folder else default_model_dir("tagger")
    if not path.exists():
        raise TaggerUsageError(f"no tagger at {path}; pass a folder made by `musiclm tagger export` (or set "
                               f"${MODEL_ENV})")
    return Tagger.from_pretrained(path, device=device)


# ------------------------------------------------------------------------------------------------ train
def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.eval.tagger_recipe import TaggerTrainingConfig, train_tagger

    set_threads(args)
    run_training(args, train_config(args, TaggerTrainingConfig, "tagger"), "tagger", train_tagger)


# ----------------------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> None:
    from musiclm.eval.tagger import WEIGHTS_FILE, Tagger

    set_threads(args)
    tagger = Tagger.from_run(args.run, prefer_ema=not args.no_ema)
    folder = tagger.save(args.output)
    emit({"run": str(args.run), "weights_from": tagger.source, "output": str(folder),
          "size_mb": round((folder / WEIGHTS_FILE).stat().st_size / 2**20, 3),
          "parameters": sum(p.numel() for p in tagger.model.parameters()),
          "classes": tagger.vocab.sizes()}, args)


# ------------------------------------------------------------------------------------------------- eval
def _summary(report: dict[str, Any]) -> str:
    lines = [f"{report['clips']} clips of split {report['split']}"]
    for head, scores in report["heads"].items():
        if "accuracy" in scores:
            lines.append(f"{head:12s} accuracy {scores['accuracy']:.3f}  (majority baseline "
                         f"{scores['majority_baseline']:.3f}, {int(scores['classes'])} classes)")
        else:
            lines.append(f"{head:12s} mAP {scores['mAP']:.3f}  micro-F1 {scores['micro_f1']:.3f}  macro-F1 "
                         f"{scores['macro_f1']:.3f}  ({int(scores['classes'])} classes)")
    return "\n".join(lines)


def _cmd_eval(args: argparse.Namespace) -> None:
    from musiclm.eval.tagger_recipe import evaluate_tagger
    from musiclm.fileio import atomic_write_text

    set_threads(args)
    tagger = _load(args.model, args.device)
    report = evaluate_tagger(tagger, args.corpus, split=args.split, max_clips=args.max_clips, seed=args.seed,
                             progress=counter("tagging clips", not args.json))
    if args.output:
        import json

        atomic_write_text(args.output, json.dumps(report, indent=2))
    emit(report, args, human=_summary)


# -------------------------------------------------------------------------------------------------- tag
def _cmd_tag(args: argparse.Namespace) -> None:
    set_threads(args)
    tagger = _load(args.model, args.device)
    probs = tagger.predict_files([args.file])
    top = tagger.top_tags(probs, 0, args.top)
    result = {"file": str(args.file),
              **{head: [{"tag": name, "probability": round(p, 4)} for name, p in tags] for head, tags in top.items()}}
    emit(result, args, human=lambda r: "\n".join(
        f"{h:12s} " + ", ".join(f"{t['tag']} ({t['probability']:.2f})" for t in r[h]) for h in top))


def register(subparsers: Any) -> None:
    """Add ``musiclm tagger ...`` to the main parser."""
    tagger = subparsers.add_parser("tagger", help="independent audio tagger (genre, instruments, mood, tempo, mode) "
                                                  "for evaluation: train, export, eval, tag")
    sub = tagger.add_subparsers(dest="tagger_command", metavar="ACTION", required=True)

    tr = sub.add_parser("train", help="train (or resume) the tagger on the labels of corpus folders")
    add_train_arguments(tr, "tagger")
    tr.set_defaults(handler=_cmd_train)

    ex = sub.add_parser("export", help="a training run -> model folder (config.yaml + tagger.safetensors)")
    ex.add_argument("run", help="run folder of `musiclm tagger train`")
    ex.add_argument("-o", "--output", required=True, help="model folder to write")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    add_threads_argument(ex)
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)

    ev = sub.add_parser("eval", help="held-out accuracy per head on the labelled clips of a corpus split")
    ev.add_argument("model", help="tagger folder (made by `musiclm tagger export`)")
    ev.add_argument("--corpus", required=True, action="append", help="corpus folder (repeatable)")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--max-clips", type=int, help="score a seeded random subset of this many clips")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-o", "--output", help="also write the report as JSON here")
    add_threads_argument(ev)
    add_device_flag(ev)
    add_json_flag(ev)
    ev.set_defaults(handler=_cmd_eval)

    tag = sub.add_parser("tag", help="the most probable classes per head of an audio file")
    tag.add_argument("file")
    tag.add_argument("--model", help=f"tagger folder (default: ${MODEL_ENV} or the bundled tagger)")
    tag.add_argument("--top", type=int, default=3, help="classes per head")
    add_threads_argument(tag)
    add_device_flag(tag)
    add_json_flag(tag)
    tag.set_defaults(handler=_cmd_tag)
