"""``musiclm semantic ...``: tokenize audio, train the self-supervised model, fit k-means, export, evaluate.

Picked up by :func:`musiclm.cli._extensions`; handlers import torch-heavy modules lazily. The workflow:

1. ``musiclm semantic train --corpus C --run-dir R0``                      (iteration 0: hand-made targets)
2. ``musiclm semantic eval --run R0 --corpus C --layers 2,3,4,5,6``        (pick the layer)
3. ``musiclm semantic train --corpus C --run-dir R1 --iteration 1 --teacher R0 --teacher-layer L`` (optional)
4. ``musiclm semantic fit-kmeans R1 --corpus C --layer L`` then ``musiclm semantic export R1 -o DIR``
5. ``musiclm semantic tokenize song.wav --model DIR -o tokens.npy``; ``musiclm semantic eval --model DIR ...``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from musiclm.bundled import component_folder, model_env
from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_train_arguments, run_training, set_threads, train_config

MODEL_ENV = model_env("semantic")
KMEANS_DIR = "kmeans"


class SemanticUsageError(MusicLMError):
    """A semantic command's argument is unusable."""


def _load_tokenizer(args: argparse.Namespace) -> Any:
    from musiclm.semantic.tokenizer import SemanticTokenizer

    folder = component_folder(args.model, "semantic", "semantic tokenizer", SemanticUsageError)
    return SemanticTokenizer.from_pretrained(folder, device=args.device)


def kmeans_path(run: str | os.PathLike[str], layer: int, clusters: int) -> Path:
    return Path(run) / KMEANS_DIR / f"layer-{layer}-k{clusters}.safetensors"


# ------------------------------------------------------------------------------------------ tokenize
def _cmd_tokenize(args: argparse.Namespace) -> None:
    import time

    import numpy as np

    from musiclm.audio import load_audio
    from musiclm.fileio import atomic_path

    set_threads(args)
    tokenizer = _load_tokenizer(args)
    wav, rate = load_audio(args.file, sample_rate=None, allow_silent=True)
    started = time.perf_counter()
    tokens = tokenizer.tokenize(wav, rate)[0].cpu().numpy().astype(np.int64)
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"input": str(args.file), "seconds": round(len(wav) / rate, 3), "sample_rate": rate,
                              "frames": int(tokens.shape[0]), "token_rate": tokenizer.token_rate,
                              "num_clusters": tokenizer.num_clusters, "layer": tokenizer.layer,
                              "audio_seconds_per_second": round(len(wav) / rate / max(elapsed, 1e-9), 1)}
    if args.output:
        out = Path(args.output)
        if out.suffix != ".npy":
            raise SemanticUsageError(f"{out}: the tokens file must end in .npy")
        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.save(handle, tokens)
        result["output"] = str(out)
    result["tokens"] = tokens.tolist()

    def human(r: dict[str, Any]) -> str:
        shown = " ".join(map(str, r["tokens"][:50])) + (" ..." if len(r["tokens"]) > 50 else "")
        where = f" -> {r['output']}" if "output" in r else ""
        return (f"{r['input']}: {r['frames']} tokens ({r['seconds']} s at {r['token_rate']} Hz, layer {r['layer']}, "
                f"K={r['num_clusters']}){where}\n{shown}")

    emit(result, args, human)


# --------------------------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.config import merge
    from musiclm.semantic.config import SemanticTrainingConfig
    from musiclm.semantic.recipe import train_semantic

    set_threads(args)
    config = train_config(args, SemanticTrainingConfig, "semantic")
    extra: dict[str, Any] = {}
    if args.iteration == 1:
        teacher = args.teacher or config.targets.teacher
        if not teacher:
            raise SemanticUsageError("--iteration 1 needs --teacher RUN_OR_MODEL (the iteration-0 run folder)")
        extra.update({"targets.iteration": 1, "targets.features": ["teacher"], "targets.teacher": str(teacher),
                      "targets.clusters": [config.targets.teacher_clusters]})
        if args.teacher_layer is not None:
            extra["targets.teacher_layer"] = args.teacher_layer
    elif args.teacher or args.teacher_layer is not None:
        raise SemanticUsageError("--teacher and --teacher-layer belong to --iteration 1")
    run_training(args, merge(config, extra) if extra else config, "semantic", train_semantic)


# ---------------------------------------------------------------------------------------- fit-kmeans
def _cmd_fit_kmeans(args: argparse.Namespace) -> None:
    from safetensors.torch import save_file

    from musiclm.device import resolve_device
    from musiclm.fileio import atomic_path
    from musiclm.semantic.io import model_from_run
    from musiclm.semantic.recipe import training_clips
    from musiclm.semantic.tokenizer import fit_token_kmeans

    set_threads(args)
    model, config, checkpoint = model_from_run(args.run, prefer_ema=not args.no_ema)
    tok = config.tokenizer
    layer = args.layer if args.layer is not None else tok.layer
    clusters = args.clusters or tok.num_clusters
    if not 1 <= layer <= model.config.num_layers:
        raise SemanticUsageError(f"--layer must be within [1, {model.config.num_layers}], got {layer}")
    clips = training_clips(args.corpus, args.clips or tok.kmeans_clips, model.config.sample_rate)
    centroids = fit_token_kmeans(model, clips, layer, clusters, args.max_frames or tok.kmeans_frames,
                                 tok.kmeans_seed, tok.kmeans_batch, resolve_device(args.device))
    out = kmeans_path(args.run, layer, clusters)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"layer": str(layer), "num_clusters": str(clusters), "step": str(checkpoint.step),
            "checkpoint": str(checkpoint.path)}
    with atomic_path(out) as tmp:
        save_file({"centroids": centroids.contiguous()}, str(tmp), metadata=meta)
    emit({"run": str(args.run), "kmeans": str(out), "layer": layer, "num_clusters": clusters,
          "checkpoint_step": checkpoint.step}, args)


# -------------------------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> None:
    from safetensors import safe_open

    from musiclm.semantic.io import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, model_from_run
    from musiclm.semantic.model import count_parameters
    from musiclm.semantic.tokenizer import SemanticTokenizer

    model, config, checkpoint = model_from_run(args.run, prefer_ema=not args.no_ema)
    if args.kmeans:
        path = Path(args.kmeans)
    else:
        pattern = f"layer-{args.layer}-k*.safetensors" if args.layer is not None else "layer-*-k*.safetensors"
        found = sorted((Path(args.run) / KMEANS_DIR).glob(pattern), key=lambda p: p.stat().st_mtime)
        if not found:
            raise SemanticUsageError(f"{args.run}: no k-means fitted yet; run `musiclm semantic fit-kmeans "
                                     f"{args.run} --corpus DIR --layer L` first")
        path = found[-1]
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        centroids = handle.get_tensor("centroids")
    layer = int(meta.get("layer", args.layer or 0))
    if meta.get("step") and int(meta["step"]) != checkpoint.step:
        raise SemanticUsageError(f"{path} was fit on step {meta['step']}, but the latest checkpoint is step "
                                 f"{checkpoint.step}; fit the k-means again")
    tok = config.tokenizer
    tokenizer = SemanticTokenizer(model, centroids, layer, tok.chunk_seconds, tok.context_seconds,
                                  source=f"{checkpoint.path} (step {checkpoint.step})")
    folder = tokenizer.save(args.output)
    size = (folder / TOKENIZER_WEIGHTS).stat().st_size
    emit({"run": str(args.run), "weights_from": tokenizer.config.source, "kmeans": str(path),
          "output": str(folder), "files": [TOKENIZER_CONFIG, TOKENIZER_WEIGHTS], "size_mb": round(size / 2**20, 2),
          "parameters": count_parameters(tokenizer.model), "layer": layer,
          "num_clusters": tokenizer.num_clusters, "token_rate": tokenizer.token_rate}, args)


# ---------------------------------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> None:
    from musiclm.device import resolve_device
    from musiclm.semantic.evaluate import evaluate_layers, evaluate_tokenizer

    set_threads(args)
    if bool(args.model) == bool(args.run):
        raise SemanticUsageError("pass either --model DIR (an exported tokenizer) or --run RUN (to compare layers)")
    if args.run:
        from musiclm.semantic.io import model_from_run

        model, config, checkpoint = model_from_run(args.run)
        top = model.config.num_layers
        layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(1, top + 1))
        bad = [x for x in layers if not 1 <= x <= model.config.num_layers]
        if bad:
            raise SemanticUsageError(f"--layers {bad} outside [1, {model.config.num_layers}]")
        result = evaluate_layers(model, args.corpus, layers, args.clusters or config.tokenizer.num_clusters,
                                 fit_clips=args.fit_clips, max_clips=args.max_clips, device=resolve_device(args.device))
        result.pop("tokenizers")
        result["run"], result["step"] = str(args.run), checkpoint.step
    else:
        codec = None
        if args.codec:
            from musiclm.codec.api import Codec

            codec = Codec.from_pretrained(args.codec, device=args.device)
        tokenizer = _load_tokenizer(args)
        result = evaluate_tokenizer(tokenizer, args.corpus, codec, max_clips=args.max_clips,
                                    baseline_clips=args.fit_clips)
    if args.json:
        emit(result, args)
    else:
        extra = f"\nbest layer: {result['best_layer']}" if "best_layer" in result else ""
        print(f"{result['clips']} held-out clips\n\n{result['table']}{extra}")


def register(subparsers: Any) -> None:
    """Add ``musiclm semantic ...`` to the main parser."""
    semantic = subparsers.add_parser("semantic", help="semantic tokens (25 Hz): tokenize, train, fit k-means, "
                                                      "export, evaluate")
    sub = semantic.add_subparsers(dest="semantic_command", metavar="ACTION", required=True)

    tok = sub.add_parser("tokenize", help="audio file -> semantic tokens (25 per second)")
    tok.add_argument("file")
    tok.add_argument("-o", "--output", help="write the tokens as a .npy int64 array [frames]")
    tok.add_argument("--model", help=f"tokenizer folder (default: ${MODEL_ENV} or the bundled tokenizer)")
    tok.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(tok)
    add_json_flag(tok)
    tok.set_defaults(handler=_cmd_tokenize)

    tr = sub.add_parser("train", help="train (or resume) the self-supervised model; works under torchrun")
    tr.add_argument("--iteration", type=int, choices=[0, 1], default=0,
                    help="0: targets from hand-made features; 1: targets from a trained model's layer")
    tr.add_argument("--teacher", help="iteration 1: run or tokenizer folder of the iteration-0 model")
    tr.add_argument("--teacher-layer", type=int, help="iteration 1: the teacher layer to cluster")
    add_train_arguments(tr, "semantic")
    tr.set_defaults(handler=_cmd_train)

    km = sub.add_parser("fit-kmeans", help="fit the token k-means on one layer of a run's latest model")
    km.add_argument("run", help="run folder of `musiclm semantic train`")
    km.add_argument("--corpus", action="append", required=True, help="corpus folder (repeatable; train split)")
    km.add_argument("--layer", type=int, help="layer to cluster (default: the config's tokenizer.layer)")
    km.add_argument("--clusters", type=int, help="number of tokens K (default: the config's tokenizer.num_clusters)")
    km.add_argument("--clips", type=int, help="training clips to use (default: tokenizer.kmeans_clips)")
    km.add_argument("--max-frames", type=int, help="frames sampled for k-means (default: tokenizer.kmeans_frames)")
    km.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    km.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(km)
    add_json_flag(km)
    km.set_defaults(handler=_cmd_fit_kmeans)

    ex = sub.add_parser("export", help="latest checkpoint + fitted k-means -> tokenizer folder (fp16 safetensors)")
    ex.add_argument("run", help="run folder of `musiclm semantic train`")
    ex.add_argument("-o", "--output", required=True, help="tokenizer folder to write")
    ex.add_argument("--layer", type=int, help="use the k-means of this layer (default: the newest fitted)")
    ex.add_argument("--kmeans", help="an explicit k-means file (from fit-kmeans)")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even if EMA weights exist")
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)

    ev = sub.add_parser("eval", help="purity / NMI of tokens with melody, chords, beats and timbre (held-out clips)")
    ev.add_argument("--model", help="tokenizer folder to evaluate against the baselines")
    ev.add_argument("--run", help="or: a run folder, to compare its layers (k-means fit per layer)")
    ev.add_argument("--corpus", action="append", required=True, help="rendered corpus folder(s) with annotations")
    ev.add_argument("--layers", help="with --run: comma-separated layers (default: all)")
    ev.add_argument("--clusters", type=int, help="with --run: K (default: the config's tokenizer.num_clusters)")
    ev.add_argument("--codec", help="codec folder for baseline (b): its first RVQ level at 25 Hz")
    ev.add_argument("--max-clips", type=int, help="evaluate at most this many held-out clips")
    ev.add_argument("--fit-clips", type=int, default=300, help="training clips the k-means are fit on")
    ev.add_argument("--threads", type=int, help="CPU threads for torch")
    add_device_flag(ev)
    add_json_flag(ev)
    ev.set_defaults(handler=_cmd_eval)
