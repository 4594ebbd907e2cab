"""Weight folders: fp16 rounding, fingerprints, and a model saved with its embedding quantiser.

MuLan and the melody model share one folder format: ``config.yaml`` beside one fp16 safetensors file holding
the network under ``model.`` and, once fitted, the residual quantiser under ``quantizer.`` (loading never
unpickles). Fingerprints hash a config and tensors at the fp16 precision they are saved at, so a model in
memory and the same model saved and loaded give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_file

from musiclm import __version__
from musiclm.config import load_yaml, save_yaml
from musiclm.fileio import atomic_path
from musiclm.mulan.quantizer import EmbeddingQuantizer
from musiclm.train.checkpoint import CheckpointError, load_state, read_safetensors

CONFIG_FILE = "config.yaml"
ConfigT = TypeVar("ConfigT")


def round_fp16(module: torch.nn.Module) -> None:
    """Round every floating-point tensor of ``module`` to fp16 precision in place (what saving keeps)."""
    with torch.no_grad():
        for tensor in list(module.state_dict().values()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def weights_digest(config: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) of a config and tensors at fp16 precision, the precision they are saved at."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for key, tensor in sorted(state.items()):
        digest.update(key.encode())
        value = tensor.detach().cpu()
        digest.update((value.half() if value.is_floating_point() else value).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def state_with_quantizer(model: torch.nn.Module, quantizer: EmbeddingQuantizer | None) -> dict[str, torch.Tensor]:
    """The tensors of a model folder: ``model.*`` and, when fitted, ``quantizer.*``."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    if quantizer is not None:
        state.update({f"quantizer.{k}": v for k, v in quantizer.state_dict().items()})
    return state


def save_with_quantizer(folder: str | os.PathLike[str], model: torch.nn.Module, quantizer: EmbeddingQuantizer | None,
                        config: Any, weights_file: str, kind: str) -> Path:
    """Write ``config.yaml`` and the fp16 ``weights_file`` into ``folder`` (atomically, file by file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in state_with_quantizer(model, quantizer).items()}
    meta = {"musiclm_version": __version__, "format": f"musiclm-{kind}",
            "quantizer": "fitted" if quantizer is not None else "none"}
    with atomic_path(folder / weights_file) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    save_yaml(config, folder / CONFIG_FILE)
    return folder


def load_with_quantizer(folder: str | os.PathLike[str], config_type: type[ConfigT],
                        build: Callable[[ConfigT], torch.nn.Module], weights_file: str, what: str
                        ) -> tuple[torch.nn.Module, EmbeddingQuantizer | None]:
    """The model (built by ``build(config)``) and quantiser (None when none was fitted) of a folder written by
    :func:`save_with_quantizer`; clear errors name ``what`` the folder should have been."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).exists() or not (folder / weights_file).exists():
        raise CheckpointError(f"{folder}: not a {what} folder (needs {CONFIG_FILE} and {weights_file})")
    config = load_yaml(config_type, folder / CONFIG_FILE)
    tensors = read_safetensors(folder / weights_file)
    model = build(config)
    state = {k[len("model."):]: v.float() if v.is_floating_point() else v
             for k, v in tensors.items() if k.startswith("model.")}
    load_state(model, state, folder / weights_file)
    quantizer = None
    if "quantizer.codebooks" in tensors:
        books = tensors["quantizer.codebooks"].float()
        quantizer = EmbeddingQuantizer(books.shape[0], books.shape[1], books.shape[2])
        quantizer.codebooks.copy_(books)
    return model, quantizer


# ------------------------------------------------------------------------------- a run's fitted quantiser
RUN_QUANTIZER_FILE = "quantizer.safetensors"  # in a run folder: the quantiser fitted after training
RUN_QUANTIZER_REPORT = "quantizer.json"  # beside it: the fit's report
FITTED_STEP_KEY = "checkpoint_step"  # in the report: the checkpoint the quantiser was fitted on


def quantizer_staleness(run_dir: str | os.PathLike[str], step: int) -> str | None:
    """Why a run's fitted quantiser does not belong to its checkpoint at ``step`` (None when it does, or when
    its report predates this record). A quantiser fitted on an older checkpoint would give tokens of the
    embeddings of weights that no longer exist."""
    report = Path(run_dir) / RUN_QUANTIZER_REPORT
    try:
        fitted = json.loads(report.read_text(encoding="utf-8")).get(FITTED_STEP_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    if fitted is None or int(fitted) == int(step):
        return None
    return f"the run's quantiser was fitted on step {int(fitted)}, its latest checkpoint is step {int(step)}"


def run_quantizer_problem(run_dir: str | os.PathLike[str]) -> str | None:
    """Why the run has no quantiser for its latest checkpoint (none fitted, or a stale one); None when it has."""
    from musiclm.train.checkpoint import CheckpointManager

    if not (Path(run_dir) / RUN_QUANTIZER_FILE).exists():
        return "no fitted quantiser"
    checkpoint = CheckpointManager(run_dir).latest()
    return None if checkpoint is None else quantizer_staleness(run_dir, checkpoint.step)


def load_run_quantizer(run_dir: str | os.PathLike[str], step: int, fit_command: str) -> EmbeddingQuantizer | None:
    """The run's fitted quantiser when it belongs to the checkpoint at ``step`` (a stale one is not loaded:
    a warning names ``fit_command``, e.g. ``musiclm mulan fit-quantizer``); None when there is none."""
    import logging

    from musiclm.mulan.quantizer import load_quantizer

    path = Path(run_dir) / RUN_QUANTIZER_FILE
    if not path.exists():
        return None
    stale = quantizer_staleness(run_dir, step)
    if stale:
        logging.getLogger("musiclm").warning("%s: %s; not loading it (run `%s %s`)", run_dir, stale, fit_command,
                                             run_dir)
        return None
    return load_quantizer(path)
