"""``musiclm eval`` (the evaluation suite) and ``musiclm bench`` (speed next to a MusicGen peer).

Register with ``register(subparsers)`` from :mod:`musiclm.cli`. Handlers import torch-heavy modules lazily so
``musiclm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from musiclm.bundled import PRETRAINED, default_model_dir
from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_threads_argument, set_threads


class EvalUsageError(MusicLMError):
    """An ``eval`` or ``bench`` argument is unusable."""


# ------------------------------------------------------------------------------------------------- eval
def _model_folder(arg: str | None) -> Path | None:
    """``--model``, else ``$MUSICLM_MODEL``, else the bundled model when it is installed."""
    from musiclm.pipeline import COMPONENTS, MODEL_ENV

    if arg:
        return Path(arg)
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    if all((PRETRAINED / sub).is_dir() for sub in COMPONENTS.values()):
        return PRETRAINED
    return None


def _component(arg: str | None, name: str) -> Path | None:
    if arg:
        return Path(arg)
    folder = default_model_dir(name)
    return folder if folder.is_dir() else None


def _parse_systems(text: str | None) -> list[str] | None:
    from musiclm.eval.systems import SYSTEM_NAMES

    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SYSTEM_NAMES]
    if unknown or not names:
        raise EvalUsageError(f"--systems takes a comma-separated list of {', '.join(SYSTEM_NAMES)}; "
                             f"got {text!r}")
    return list(dict.fromkeys(names))


def _counter(label: str, enabled: bool) -> Any:
    """A ``progress(done, total)`` callback drawing one tqdm bar."""
    if not enabled:
        return None
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=label, unit="clip", dynamic_ncols=True, mininterval=1.0)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report


def _cmd_eval(args: argparse.Namespace) -> None:
    import torch

    from musiclm.eval.prompts import load_prompts
    from musiclm.eval.report import summary
    from musiclm.eval.suite import CACHE_DIR, Evaluators, run_suite, semantic_memorization
    from musiclm.eval.systems import (
        MODEL_SYSTEMS,
        REFERENCE_SYSTEMS,
        SYSTEM_NAMES,
        CodecSystem,
        ModelSystem,
        ReferenceSystem,
        RetrievalLibrary,
        RetrievalSystem,
        UnconditionalSystem,
    )

    if args.duration <= 0 or args.duration > 300:
        raise EvalUsageError(f"--duration must be within (0, 300] seconds, got {args.duration}")
    if args.batch < 1:
        raise EvalUsageError("--batch must be >= 1")
    set_threads(args)
    requested = _parse_systems(args.systems)
    prompts = load_prompts(args.prompts, n=args.n, seed=args.seed, split=args.split,
                           reference_corpus=args.reference_corpus, balanced=not args.all_musiccaps,
                           n_reference=args.n_reference)
    progress = not args.no_progress
    notes: list[str] = []

    model_dir = _model_folder(args.model)
    wants_model = requested is None or any(n in MODEL_SYSTEMS for n in requested)
    model = None
    if model_dir is not None and wants_model:
        from musiclm.pipeline import MusicLM

        model = MusicLM.from_pretrained(model_dir, device=args.device)
    elif requested is not None and any(n in MODEL_SYSTEMS for n in requested):
        raise EvalUsageError("systems model/unconditional need a model: pass --model DIR (no bundled model is "
                             "installed); the floors and ceilings run with --systems reference,codec,retrieval "
                             "--codec DIR --mulan DIR")
    if model is not None:
        device = model.device
    else:
        from musiclm.device import resolve_device

        device = resolve_device(args.device)

    from musiclm.codec.api import Codec
    from musiclm.mulan.api import MuLan

    def part(flag: str | None, of_model: Any, component: str, loader: Any) -> Any:
        """``--flag DIR``, else the model's own part, else the bundled one (None when there is none)."""
        folder = flag if flag else None if of_model is not None else _component(None, component)
        return loader(folder, device=device) if folder is not None else of_model

    mulan = part(args.mulan, model.mulan if model is not None else None, "mulan", MuLan.from_pretrained)
    if mulan is None:
        raise EvalUsageError("the evaluation needs MuLan (MCC, FAD_MuLan, retrieval): pass --model DIR or --mulan DIR")
    codec = part(args.codec, model.codec if model is not None else None, "codec", Codec.from_pretrained)

    names = requested or [n for n in SYSTEM_NAMES if (n not in MODEL_SYSTEMS or model is not None)
                          and (n != "codec" or codec is not None)]
    if requested is None and model is None:
        notes.append("model and unconditional: not evaluated (no model folder; pass --model DIR)")
    if not prompts.paired:
        skipped = [n for n in names if n in REFERENCE_SYSTEMS]
        names = [n for n in names if n not in REFERENCE_SYSTEMS]
        if skipped:
            notes.append(f"{', '.join(skipped)}: skipped (text-only prompts have no reference audio)")
    if "codec" in names and codec is None:
        raise EvalUsageError("system codec needs a codec: pass --codec DIR or --model DIR")
    out = Path(args.out)
    systems = []
    library_seconds = None
    for name in names:
        if name == "model":
            systems.append(ModelSystem(model, batch_size=args.batch))
        elif name == "unconditional":
            systems.append(UnconditionalSystem(model, batch_size=args.batch))
        elif name == "reference":
            systems.append(ReferenceSystem())
        elif name == "codec":
            systems.append(CodecSystem(codec))
        elif name == "retrieval":
            if prompts.corpus is None:
                notes.append("retrieval: skipped (text-only prompts need --reference-corpus for the library)")
                continue
            began = time.perf_counter()
            library = RetrievalLibrary.build(prompts.corpus, mulan, out / CACHE_DIR, split="train",
                                             limit=args.library_size, seed=args.seed,
                                             progress=_counter("retrieval library (MuLan)", progress))
            library_seconds = time.perf_counter() - began
            systems.append(RetrievalSystem(mulan, library))
    if not systems:
        raise EvalUsageError("no system left to evaluate")

    tagger = None
    tagger_dir = _component(args.tagger, "tagger")
    if tagger_dir is not None:
        from musiclm.eval.tagger import Tagger

        tagger = Tagger.from_pretrained(tagger_dir, device=device)
    vggish = None
    if args.vggish:
        from musiclm.eval.vggish import load_vggish

        vggish = load_vggish(args.vggish).to(device)

    memorization = None
    if args.tokens and model is not None:
        def memorization() -> dict[str, Any]:
            return semantic_memorization(model, args.tokens, sequences=args.memorization_sequences,
                                         prompt_seconds=args.prompt_seconds,
                                         continuation_seconds=args.continuation_seconds, seed=args.seed,
                                         progress=_counter("memorisation (semantic stage)", progress))
    elif args.tokens:
        notes.append("memorisation: skipped (it studies the model's semantic stage; no model was given)")
    else:
        notes.append("memorisation: skipped (no token store given; pass --tokens DIR)")

    settings = {"command": command_line(args), "systems": [s.name for s in systems],
                "model": str(model_dir) if model else None,
                "codec": getattr(codec, "source", None) or (str(args.codec) if args.codec else None),
                "threads": torch.get_num_threads(), "device": str(device), "batch": args.batch,
                "retrieval_library_seconds": library_seconds}
    result = run_suite(prompts, systems, Evaluators(mulan, tagger, vggish), out, duration=args.duration,
                       seed=args.seed, progress=progress, memorization=memorization, notes=notes,
                       settings=settings, spectrograms=args.spectrograms)
    headline = {"report": result.paths["json"], "markdown": result.paths["markdown"],
                "prompts": result.report["prompts"]["count"], "systems": summary(result.report),
                "memorization": result.report["memorization"], "notes": result.report["notes"],
                "minutes": round(result.report["timings"]["total_seconds"] / 60, 2)}

    def human(r: dict[str, Any]) -> str:
        lines = [f"{r['prompts']} prompts; report: {r['markdown']} ({r['minutes']} min)"]
        for name, metrics in r["systems"].items():
            lines.append(f"{name:14s} " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()))
        lines += [f"note: {n}" for n in r["notes"]]
        return "\n".join(lines)

    emit(headline, args, human)


_EVAL_OPTIONS = ("model", "prompts", "out", "n", "seed", "duration", "systems", "tagger", "tokens", "vggish", "codec",
                 "mulan", "reference_corpus", "split", "all_musiccaps", "n_reference", "library_size", "batch",
                 "memorization_sequences", "prompt_seconds", "continuation_seconds", "threads", "device")
_EVAL_DEFAULTS = {"seed": 0, "duration": 10.0, "split": "test", "all_musiccaps": False, "batch": 4,
                  "memorization_sequences": 200, "prompt_seconds": 5.0, "continuation_seconds": 5.0,
                  "device": "auto"}


def command_line(args: argparse.Namespace) -> str:
    """The ``musiclm eval`` command that reproduces ``args`` (options left at their defaults omitted)."""
    parts = ["musiclm", "eval"]
    for name in _EVAL_OPTIONS:
        value = getattr(args, name, None)
        if value is None or value is False or _EVAL_DEFAULTS.get(name, object()) == value:
            continue
        flag = "--" + name.replace("_", "-")
        parts += [flag] if value is True else [flag, shlex.quote(f"{value:g}" if isinstance(value, float) else
                                                                 str(value))]
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------ bench
def _cmd_bench(args: argparse.Namespace) -> None:
    from musiclm.eval.bench import format_bench, run_bench

    set_threads(args)
    model = None
    label = None
    if args.model:
        from musiclm.pipeline import MusicLM

        model = MusicLM.from_pretrained(args.model, device=args.device)
        label = str(args.model)

    def say(message: str) -> None:
        if not args.json:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    report = run_bench(model, batches=args.batch, seconds=args.seconds, device=args.device, label=label,
                       peer=not args.no_peer, progress=say)
    emit(report, args, format_bench)


def register(subparsers: Any) -> None:
    """Add ``musiclm eval`` and ``musiclm bench`` to the main parser."""
    ev = subparsers.add_parser(
        "eval", help="evaluate a model and its floors/ceilings: FAD, KLD, MCC, adherence, memorisation",
        description="Generate for a prompt set, then measure the model next to the reference audio, the codec "
                    "ceiling, a MuLan retrieval baseline and unconditional generation. Writes report.json, "
                    "report.md and plots to --out; cached clips are reused when run again.")
    ev.add_argument("--model", help="model folder (default: $MUSICLM_MODEL or the bundled model, if installed)")
    ev.add_argument("--prompts", required=True,
                    help="a corpus folder (captions + reference audio + labels of --split) or a MusicCaps CSV / "
                         "prompt JSONL (text only)")
    ev.add_argument("--out", required=True, help="report folder (audio, features, report.json, report.md, plots)")
    ev.add_argument("--n", type=int, help="evaluate a seeded random subset of this many prompts")
    ev.add_argument("--seed", type=int, default=0, help="subsampling and generation seed (default 0)")
    ev.add_argument("--duration", type=float, default=10.0, help="seconds per clip (default 10)")
    ev.add_argument("--systems", help="comma-separated subset of model,reference,codec,retrieval,unconditional "
                                      "(default: all that the given models allow)")
    ev.add_argument("--tagger", help="tagger folder for FAD_tagger, KLD, genre and instruments (default: "
                                     "$MUSICLM_TAGGER or the bundled tagger)")
    ev.add_argument("--tokens", help="token store for the memorisation study of the semantic stage")
    ev.add_argument("--vggish", metavar="WEIGHTS", help="VGGish safetensors weights: adds FAD_VGGish")
    ev.add_argument("--codec", help="codec folder (default: the model's); lets the floors run without a model")
    ev.add_argument("--mulan", help="MuLan folder (default: the model's); lets the floors run without a model")
    ev.add_argument("--reference-corpus", help="for text-only prompts: corpus whose test split is the FAD "
                                               "reference pool and whose train split is the retrieval library")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"],
                    help="corpus split of the prompts (default test)")
    ev.add_argument("--all-musiccaps", action="store_true",
                    help="use every MusicCaps row, not only the 1,000-clip balanced subset")
    ev.add_argument("--n-reference", type=int, help="reference pool size for text-only prompts (default: --n)")
    ev.add_argument("--library-size", type=int,
                    help="embed a seeded subset of this many training clips for retrieval (default: all)")
    ev.add_argument("--batch", type=int, default=4, help="prompts per generation call (default 4)")
    ev.add_argument("--memorization-sequences", type=int, default=200,
                    help="training sequences of the memorisation study (default 200)")
    ev.add_argument("--prompt-seconds", type=float, default=5.0, help="memorisation prompt length (default 5 s)")
    ev.add_argument("--continuation-seconds", type=float, default=5.0,
                    help="memorisation continuation length (default 5 s, the paper's)")
    ev.add_argument("--spectrograms", type=int, default=3, help="prompts whose clips get spectrogram plots")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_threads_argument(ev)
    add_device_flag(ev)
    add_json_flag(ev)
    ev.set_defaults(handler=_cmd_eval)

    bench = subparsers.add_parser(
        "bench", help="generation speed (codec RTF, tokens/s per stage, end-to-end RTF, memory) vs a MusicGen peer",
        description="Speed of MusicLM next to a randomly initialised MusicGen-architecture model of the same size "
                    "(transformers). Quick by default on CPU (batches 1 4, 10 s); ask for --batch 1 4 16 "
                    "--seconds 10 60 for the full grid.")
    bench.add_argument("--model", help="model folder (default: random weights at the small preset sizes)")
    bench.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes (default 1 4)")
    bench.add_argument("--seconds", type=float, nargs="+", default=[10.0], help="audio durations (default 10)")
    bench.add_argument("--no-peer", action="store_true", help="measure MusicLM only")
    add_threads_argument(bench)
    bench.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="default cpu")
    add_json_flag(bench)
    bench.set_defaults(handler=_cmd_bench)
