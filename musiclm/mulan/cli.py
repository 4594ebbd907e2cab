"""``musiclm mulan ...``: embed, search, tag, train, fit-quantizer, export, tune-text and eval the MuLan model.

Picked up by :func:`musiclm.cli._extensions`; handlers import torch-heavy modules lazily so ``musiclm --help``
stays fast. Commands that use a trained model take ``--model DIR`` (default ``$MUSICLM_MULAN`` or the bundled
``musiclm/pretrained/mulan``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musiclm.bundled import component_folder, model_env
from musiclm.cli import add_device_flag, add_json_flag, add_model_flags, emit
from musiclm.errors import MusicLMError
from musiclm.progress import counter
from musiclm.train.command import add_train_arguments, run_training, set_threads, train_config

MODEL_ENV = model_env("mulan")


class MuLanUsageError(MusicLMError):
    """A MuLan command's argument is unusable."""


def _load(args: argparse.Namespace) -> Any:
    from musiclm.mulan.api import MuLan

    set_threads(args)
    folder = component_folder(args.model, "mulan", "MuLan model", MuLanUsageError)
    return MuLan.from_pretrained(folder, device=args.device)




# ------------------------------------------------------------------------------------------------ embed
def _cmd_embed(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.fileio import atomic_path

    if bool(args.text) == bool(args.audio):
        raise MuLanUsageError("give either --text (repeatable) or --audio FILE (repeatable)")
    mulan = _load(args)
    emb = mulan.embed_text(args.text) if args.text else mulan.embed_files(args.audio)
    inputs = args.text or args.audio
    result: dict[str, Any] = {"inputs": inputs, "dim": int(emb.shape[1])}
    if args.output:
        out = Path(args.output)
        if out.suffix != ".npy":
            raise MuLanUsageError(f"{out}: the embeddings file must end in .npy")
        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.save(handle, emb.numpy())
        result["output"] = str(out)
    else:
        result["embeddings"] = [[round(x, 6) for x in row] for row in emb.tolist()]
    if args.tokens:
        result["tokens"] = mulan.tokens(emb).tolist()
    emit(result, args, human=lambda r: "\n".join(
        f"{name}: {'tokens ' + str(r['tokens'][i]) if 'tokens' in r else ''}"
        + (f" [{', '.join(f'{x:.3f}' for x in r['embeddings'][i][:6])}, ...]" if "embeddings" in r else "")
        for i, name in enumerate(r["inputs"])) + (f"\nwrote {r['output']}" if "output" in r else ""))


# ----------------------------------------------------------------------------------------------- search
def _cmd_search(args: argparse.Namespace) -> None:
    from musiclm.mulan.search import search

    mulan = _load(args)
    hits = search(mulan, args.corpus, args.query, top=args.top, split=args.split)
    result = {"query": args.query, "corpus": str(args.corpus), "results": hits}
    emit(result, args, human=lambda r: "\n".join(
        f"{h['rank']:2d}. {h['score']:.3f}  {h['id']}  {(h['caption'] or '')[:100]}" for h in r["results"]))


# -------------------------------------------------------------------------------------------------- tag
def _cmd_tag(args: argparse.Namespace) -> None:
    import torch

    from musiclm.mulan.zeroshot import (
        class_embeddings,
        genre_prompts,
        instrument_prompts,
        mood_prompts,
        scores,
        tempo_prompts,
    )

    mulan = _load(args)
    audio = mulan.embed_files([args.file])
    result: dict[str, Any] = {"file": str(args.file)}
    scale = 1.0 / mulan.temperature
    for name, (classes, prompts), count in (("genre", genre_prompts(), args.top),
                                            ("instruments", instrument_prompts(), args.top),
                                            ("mood", mood_prompts(), args.top),
                                            ("tempo", tempo_prompts(), 1)):
        sim = scores(audio, class_embeddings(mulan.embed_text, prompts))[0]
        prob = torch.softmax(sim * scale, dim=0)
        order = sim.argsort(descending=True)[:count].tolist()
        result[name] = [{"tag": classes[i], "score": round(float(sim[i]), 4), "probability": round(float(prob[i]), 4)}
                        for i in order]
    emit(result, args, human=lambda r: "\n".join(
        f"{k:12s} " + ", ".join(f"{t['tag']} ({t['probability']:.2f})" for t in r[k])
        for k in ("genre", "instruments", "mood", "tempo")))


# ------------------------------------------------------------------------------------------------ train
def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.mulan.config import MuLanTrainingConfig
    from musiclm.mulan.recipe import train_mulan

    set_threads(args)
    run_training(args, train_config(args, MuLanTrainingConfig, "mulan"), "mulan", train_mulan)


# ---------------------------------------------------------------------------------------- fit-quantizer
def _parse_sizes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise MuLanUsageError(f"--compare takes comma-separated codebook sizes, got {text!r}") from exc
    if any(s < 2 for s in sizes):
        raise MuLanUsageError("codebook sizes must be >= 2")
    return sizes


def _cmd_fit_quantizer(args: argparse.Namespace) -> None:
    from musiclm.config import merge, parse_overrides
    from musiclm.mulan.api import run_config
    from musiclm.mulan.fit import fit_run_quantizer

    set_threads(args)
    qcfg = run_config(args.run).model.quantizer
    overrides = parse_overrides(args.set or [])
    if overrides:
        qcfg = merge(qcfg, overrides)
    _, result = fit_run_quantizer(args.run, args.corpus, qcfg, compare=_parse_sizes(args.compare),
                                  device=args.device, progress=counter("embedding training clips", not args.json))
    fit = result["fit"]

    def human(r: dict[str, Any]) -> str:
        lines = [f"{fit['points']} embeddings -> {fit['num_quantizers']} levels x {fit['codebook_size']} codes "
                 f"(requested {fit['requested_codebook_size']})"]
        lines += [f"level {s['level']:2d}: {s['codes_used']:4d} codes used, perplexity {s['perplexity']:7.1f}, "
                  f"cosine {s['cosine']:.4f}" for s in fit["levels"]]
        for row in r.get("comparison", []):
            lines.append(", ".join(f"{k}={v}" for k, v in row.items()))
        return "\n".join(lines)

    emit(result, args, human=human)


# ----------------------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> None:
    from musiclm.mulan.api import WEIGHTS_FILE, MuLan
    from musiclm.mulan.model import count_parameters
    from musiclm.weights import run_quantizer_problem

    set_threads(args)
    run = Path(args.run)
    problem = run_quantizer_problem(run)
    if problem:
        if args.no_fit:
            raise MuLanUsageError(f"{run}: {problem}; run `musiclm mulan fit-quantizer {run}` first")
        from musiclm.mulan.fit import fit_run_quantizer

        fit_run_quantizer(run, device="cpu", progress=counter("fitting the quantiser", not args.json))
    mulan = MuLan.from_run(run, prefer_ema=not args.no_ema)
    folder = mulan.save(args.output)
    size = (folder / WEIGHTS_FILE).stat().st_size
    emit({"run": str(run), "weights_from": mulan.source, "output": str(folder),
          "size_mb": round(size / 2**20, 2), "audio_parameters": count_parameters(mulan.model.audio),
          "text_parameters_saved": sum(v.numel() for k, v in mulan.model.text.state_dict().items()),
          "text_backbone": mulan.config.text.backbone, "codebook_size": mulan.codebook_size,
          "levels": mulan.num_quantizers, "fingerprint": mulan.fingerprint(),
          "token_fingerprint": mulan.token_fingerprint()}, args)


# -------------------------------------------------------------------------------------------- tune-text
def _cmd_tune_text(args: argparse.Namespace) -> None:
    import json

    from musiclm.config import merge, parse_overrides
    from musiclm.fileio import atomic_write_text
    from musiclm.mulan.text_tuning import TextTuningConfig, tune_text

    config = TextTuningConfig()
    overrides = parse_overrides(args.set or [])
    if overrides:
        config = merge(config, overrides)
    mulan = _load(args)
    tuned, report = tune_text(mulan, args.corpus, config, progress=lambda label: counter(label, not args.json))
    folder = tuned.save(args.output)
    atomic_write_text(folder / "tune-text.json", json.dumps(report, indent=2))
    report = {"model": str(mulan.source), "output": str(folder), **report}

    def human(r: dict[str, Any]) -> str:
        lines = [f"{r['clips']} clips, {r['views']} text views; wrote {r['output']} "
                 f"(audio side unchanged: token fingerprint {r['token_fingerprint']})"]
        for name in ("valid_before", "valid_after"):
            v = r[name]
            if v:
                lines.append(f"{name.replace('_', ' '):12s} R@10 caption {v['caption_r10']:.3f}  seen phrasing "
                             f"{v['seen_phrasing_r10']:.3f}  held-out phrasing {v['held_out_phrasing_r10']:.3f}  "
                             f"gap {v['gap_points']:.1f} points ({v['clips']} clips)")
        return "\n".join(lines)

    emit(report, args, human=human)


# ------------------------------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> None:
    from musiclm.mulan.eval import evaluate_mulan, save_report, summary

    mulan = _load(args)
    report = evaluate_mulan(mulan, args.corpus, split=args.split, max_clips=args.max_clips,
                            musiccaps_csv=args.musiccaps, seed=args.seed,
                            progress=counter("embedding clips", not args.json))
    if args.output:
        save_report(report, args.output)
    emit(report, args, human=summary)


def register(subparsers: Any) -> None:
    """Add ``musiclm mulan ...`` to the main parser."""
    mulan = subparsers.add_parser("mulan", help="MuLan music-text embedding: search, tag, embed; train, export")
    sub = mulan.add_subparsers(dest="mulan_command", metavar="ACTION", required=True)

    emb = sub.add_parser("embed", help="texts or audio files -> 128-d MuLan embeddings (and tokens)")
    emb.add_argument("--text", action="append", help="a text to embed (repeatable)")
    emb.add_argument("--audio", action="append", help="an audio file to embed (repeatable)")
    emb.add_argument("-o", "--output", help="write the embeddings [N, 128] to this .npy file")
    emb.add_argument("--tokens", action="store_true", help="also print the conditioning tokens")
    add_model_flags(emb, "mulan", "MuLan")
    emb.set_defaults(handler=_cmd_embed)

    se = sub.add_parser("search", help="the clips of a corpus folder closest to a text query")
    se.add_argument("query", help='e.g. "a calm piano piece"')
    se.add_argument("--corpus", required=True, help="corpus folder (its embeddings are cached inside it)")
    se.add_argument("--top", type=int, default=5)
    se.add_argument("--split", choices=["train", "valid", "test"], help="search one split only")
    add_model_flags(se, "mulan", "MuLan")
    se.set_defaults(handler=_cmd_search)

    tag = sub.add_parser("tag", help="zero-shot tags of an audio file: genre, instruments, mood, tempo")
    tag.add_argument("file")
    tag.add_argument("--top", type=int, default=3, help="tags per category (tempo: always 1)")
    add_model_flags(tag, "mulan", "MuLan")
    tag.set_defaults(handler=_cmd_tag)

    tr = sub.add_parser("train", help="train (or resume) MuLan on corpus folders; works under torchrun")
    add_train_arguments(tr, "mulan")
    tr.set_defaults(handler=_cmd_train)

    fq = sub.add_parser("fit-quantizer", help="fit the 12-level embedding quantiser of a run on its training audio")
    fq.add_argument("run", help="run folder of `musiclm mulan train`")
    fq.add_argument("--corpus", action="append", help="corpus folder (default: the run's own corpora)")
    fq.add_argument("--set", action="append", metavar="KEY=VALUE", help="quantiser override, e.g. codebook_size=256")
    fq.add_argument("--compare", help="also compare these codebook sizes on the test split, e.g. 16,64,256,1024")
    fq.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(fq)
    add_json_flag(fq)
    fq.set_defaults(handler=_cmd_fit_quantizer)

    ex = sub.add_parser("export", help="a run (with its quantiser; fitted now if missing) -> fp16 model folder")
    ex.add_argument("run", help="run folder of `musiclm mulan train`")
    ex.add_argument("-o", "--output", required=True, help="model folder to write")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    ex.add_argument("--no-fit", action="store_true", help="fail instead of fitting a missing quantiser")
    ex.add_argument("--threads", type=int, help="CPU threads for torch")
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)

    tt = sub.add_parser("tune-text", help="retrain only the text projection against fixed audio embeddings "
                                          "(audio tokens, stores and stages stay valid)")
    tt.add_argument("--corpus", action="append", required=True, help="corpus folder (repeatable)")
    tt.add_argument("-o", "--output", required=True, help="model folder to write")
    tt.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="setting override, e.g. steps=3000 or feature_noise=0.5 (see docs/MULAN.md)")
    add_model_flags(tt, "mulan", "MuLan")
    tt.set_defaults(handler=_cmd_tune_text)

    ev = sub.add_parser("eval", help="retrieval, zero-shot and paraphrase robustness on held-out clips")
    ev.add_argument("--corpus", required=True, help="corpus folder")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--max-clips", type=int, default=1000)
    ev.add_argument("--musiccaps", help="MusicCaps CSV: list the top clips for 20 of its captions")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("-o", "--output", help="also write the full report as JSON here")
    add_model_flags(ev, "mulan", "MuLan")
    ev.set_defaults(handler=_cmd_eval)
