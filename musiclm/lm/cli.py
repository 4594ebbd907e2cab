"""``musiclm lm ...``: train a generation stage on a token store, export it, evaluate it.

Picked up by :func:`musiclm.cli._extensions`. The workflow (see docs/GENERATION.md):

1. ``musiclm tokenize --corpus C --out TOKENS``                          (codec + semantic + MuLan tokens, once)
2. ``musiclm lm train --stage semantic --tokens TOKENS --run-dir R1``    (likewise coarse and fine; torchrun-ready)
3. ``musiclm lm export R1 -o MODEL/lm-semantic``                          (fp16 safetensors + config)
4. ``musiclm generate "a calm piano piece" --model MODEL``
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from musiclm.cli import add_json_flag, emit
from musiclm.errors import MusicLMError
from musiclm.train.command import add_threads_argument, add_train_arguments, run_training, set_threads, train_config


class LMUsageError(MusicLMError):
    """An ``lm`` command's argument is unusable."""


def stage_from_run(run_dir: str | os.PathLike[str], prefer_ema: bool = True) -> Any:
    """The :class:`~musiclm.lm.stage.StageLM` of the latest checkpoint of a ``musiclm lm train`` run."""
    from musiclm.config import from_dict
    from musiclm.lm.stage import StageLM
    from musiclm.lm.stage_config import StageTrainingConfig
    from musiclm.lm.transformer import Transformer
    from musiclm.train.checkpoint import CheckpointError, CheckpointManager, load_weights

    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found (is this a `musiclm lm train` run folder?)")
    recipe_config = dict(checkpoint.state().get("recipe_config") or {})
    if "config" not in recipe_config:
        raise CheckpointError(f"{checkpoint.path}: not a stage training checkpoint")
    config = from_dict(StageTrainingConfig, recipe_config["config"])
    model = Transformer(config.model.transformer)
    ema = checkpoint.path / "ema-lm.safetensors"
    weights = ema if prefer_ema and ema.exists() else checkpoint.path / "model-lm.safetensors"
    load_weights(model, weights)
    stage = StageLM(config.model, model)
    stage.source = f"{weights} (step {checkpoint.step})"
    return stage, checkpoint


def _cmd_train(args: argparse.Namespace) -> None:
    from musiclm.config import merge
    from musiclm.lm.recipe import train_stage
    from musiclm.lm.stage_config import StageTrainingConfig

    set_threads(args)
    model = f"lm-{args.stage}"
    config = train_config(args, StageTrainingConfig, model)
    if config.model.stage != args.stage:
        config = merge(config, {"model.stage": args.stage})
    if args.init_from:
        config = merge(config, {"init_from": str(args.init_from)})
    run_training(args, config, model, train_stage)


def _cmd_export(args: argparse.Namespace) -> None:
    from musiclm.lm.stage import WEIGHTS_FILE

    stage, checkpoint = stage_from_run(args.run, prefer_ema=not args.no_ema)
    folder = stage.save(args.output)
    size = (folder / WEIGHTS_FILE).stat().st_size
    emit({"run": str(args.run), "stage": stage.name, "step": checkpoint.step, "weights_from": stage.source,
          "output": str(folder), "size_mb": round(size / 2**20, 2), "parameters": stage.num_parameters(),
          "vocab_size": stage.layout.vocab_size, "window_seconds": stage.config.window_seconds}, args)


def _cmd_eval(args: argparse.Namespace) -> None:
    import numpy as np

    from musiclm.lm.data import StageDataset, collate_sequences
    from musiclm.lm.recipe import evaluate_stage, open_store, store_fingerprint, store_info_dict, target_bounds
    from musiclm.lm.stage import StageLM, store_mismatch

    set_threads(args)
    if bool(args.model) == bool(args.run):
        raise LMUsageError("pass either --model DIR (an exported stage) or --run RUN")
    stage = StageLM.from_pretrained(args.model) if args.model else stage_from_run(args.run)[0]
    store = open_store(args.tokens)
    info = store_info_dict(store)
    if info:
        mismatched = store_mismatch(stage.config, store_fingerprint(info))
        if mismatched:
            raise LMUsageError(f"{args.tokens} holds tokens of another {' and '.join(mismatched)} than the ones this "
                               f"stage was trained on (a store made before token fingerprints names the whole codec "
                               f"and MuLan: `musiclm tokenize --reuse` remakes it, copying their tokens)")
    dataset = StageDataset(store.select(args.split), stage.config, seed=args.seed, condition_dropout=False)
    picks = np.random.default_rng(args.seed).permutation(len(dataset))[: args.windows]
    items = [dataset[int(i)] for i in picks]
    batches = [collate_sequences(items[i:i + args.batch]) for i in range(0, len(items), args.batch)]
    metrics = evaluate_stage(stage.model, batches, stage.levels, target_bounds(stage.layout))
    emit({"stage": stage.name, "split": args.split, "windows": len(items), "source": stage.source,
          **{k: round(v, 5) for k, v in metrics.items()}}, args)


def register(subparsers: Any) -> None:
    """Add ``musiclm lm ...`` to the main parser."""
    lm = subparsers.add_parser("lm", help="generation stages (semantic, coarse, fine): train, export, evaluate")
    sub = lm.add_subparsers(dest="lm_command", metavar="ACTION", required=True)

    tr = sub.add_parser("train", help="train (or resume) one stage on a token store; works under torchrun")
    tr.add_argument("--stage", required=True, choices=["semantic", "coarse", "fine"])
    tr.add_argument("--init-from", metavar="STAGE_DIR", help="start a fresh run from the weights of an exported "
                    "stage of the same preset (e.g. MODEL/lm-semantic), for fine-tuning on a remade token store")
    add_train_arguments(tr, "lm-semantic", data_help="token store folder made by `musiclm tokenize`",
                        data_flag="--tokens")
    tr.set_defaults(handler=_cmd_train)

    ex = sub.add_parser("export", help="write a run's latest stage as an fp16 model folder")
    ex.add_argument("run", help="run folder of `musiclm lm train`")
    ex.add_argument("-o", "--output", required=True, help="output folder, e.g. MODEL/lm-coarse")
    ex.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    add_json_flag(ex)
    ex.set_defaults(handler=_cmd_export)

    ev = sub.add_parser("eval", help="validation loss, perplexity and per-level accuracy of a stage")
    ev.add_argument("--model", help="exported stage folder")
    ev.add_argument("--run", help="or a training run folder (latest checkpoint)")
    ev.add_argument("--tokens", required=True, help="token store folder")
    ev.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    ev.add_argument("--windows", type=int, default=64, help="random windows to score")
    ev.add_argument("--batch", type=int, default=8)
    ev.add_argument("--seed", type=int, default=0)
    add_threads_argument(ev)
    add_json_flag(ev)
    ev.set_defaults(handler=_cmd_eval)

