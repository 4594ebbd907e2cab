"""What every ``musiclm <model> train`` command shares: its arguments, its config, the run and its report.

A model's CLI adds its own options and calls :func:`add_train_arguments`, :func:`train_config` and
:func:`run_training`; the training itself lives in the model's recipe.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from musiclm.cli import add_device_flag, add_json_flag, emit
from musiclm.errors import MusicLMError

T = TypeVar("T")


def add_train_arguments(parser: argparse.ArgumentParser, model: str, data_help: str = "corpus folder (repeatable)",
                        data_flag: str = "--corpus") -> None:
    """The options of a train command: data folders (``--corpus``, stored as ``args.corpus`` whatever the flag),
    run folder, config, overrides, budgets, threads, device."""
    parser.add_argument(data_flag, dest="corpus", action="append", required=True, help=data_help)
    parser.add_argument("--run-dir", required=True, help="run folder (re-running the command resumes it)")
    parser.add_argument("--preset", default="small", help="small (CPU) or paper (GPU)")
    parser.add_argument("--config", help=f"a full YAML config (see `musiclm config show {model}`)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.max_steps=100")
    parser.add_argument("--budget-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    parser.add_argument("--budget-steps", type=int, help="stop (with a checkpoint) after this many steps")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_flag(parser)
    add_json_flag(parser)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on a busy machine)")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` to torch (no-op when absent)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    if threads < 1:
        raise MusicLMError(f"--threads must be >= 1 (got {threads})")
    import torch

    torch.set_num_threads(threads)


def train_config(args: argparse.Namespace, config_type: type[T], model: str) -> T:
    """The preset or ``--config`` file, then ``--set`` overrides, then the budget, device and progress
    options (applied to the config's ``train`` section)."""
    from musiclm.config import load_yaml, merge, parse_overrides, preset

    config = load_yaml(config_type, args.config) if args.config else preset(model, args.preset)
    overrides = parse_overrides(args.set or [])
    if args.budget_minutes is not None:
        overrides["train.budget_minutes"] = args.budget_minutes
    if args.budget_steps is not None:
        overrides["train.budget_steps"] = args.budget_steps
    if args.device != "auto":
        overrides["train.device"] = args.device
    if args.no_progress:
        overrides["train.progress"] = False
    return merge(config, overrides) if overrides else config


def run_training(args: argparse.Namespace, config: Any, model: str,
                 train: Callable[[Any, list[str], Path], Any]) -> None:
    """Save the config into the run folder (rank 0), train, leave the process group, report the result."""
    from musiclm.config import save_yaml
    from musiclm.train.distributed import teardown_distributed

    run = Path(args.run_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        save_yaml(config, run / f"{model}-train.yaml")
    try:
        result = train(config, args.corpus, run)
    finally:
        teardown_distributed()
    if main_rank:
        emit({"run_dir": str(run), "step": result.step, "reason": result.reason,
              "checkpoint": str(result.checkpoint) if result.checkpoint else None,
              "last_logs": {k: round(v, 6) for k, v in result.last_logs.items()}}, args)
