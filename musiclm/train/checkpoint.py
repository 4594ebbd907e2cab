"""Atomic, self-describing training checkpoints.

A checkpoint is a folder ``<run>/checkpoints/step-00001234/`` holding

- ``model-<name>.safetensors`` (and ``ema-<name>.safetensors``): weights, never pickled;
- ``trainer.pt``: optimizer, scheduler and RNG states, only ever read with ``weights_only=True``;
- ``state.json``: step, data position, configs; written last.

The folder is assembled under a temporary name, every file fsync'ed, then renamed into place, so a process
killed at any moment leaves either the previous complete checkpoints or the new complete one: never a
partial folder under a final name. Old checkpoints are renamed away before deletion for the same reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from musiclm import __version__
from musiclm.errors import MusicLMError
from musiclm.fileio import atomic_path, atomic_write_text, fsync_dir, fsync_file

STATE_FILE = "state.json"
TRAINER_FILE = "trainer.pt"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


class CheckpointError(MusicLMError):
    """A checkpoint is missing, incomplete or does not fit the model."""


@dataclass
class Checkpoint:
    """A complete checkpoint on disk."""

    path: Path
    step: int

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{self.path}: unreadable {STATE_FILE} ({exc})") from exc


def state_dict_to_safetensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as contiguous CPU tensors, tied weights stored once per name."""
    tensors: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    return tensors


def save_weights(module: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write a module's weights as safetensors, atomically."""
    with atomic_path(path) as tmp:
        save_file(state_dict_to_safetensors(module), str(tmp), metadata=metadata)


def read_safetensors(path: str | os.PathLike[str],
                     error: type[MusicLMError] | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (never unpickles); a missing or unreadable file raises ``error``
    (default :class:`CheckpointError`) naming the file."""
    error = error or CheckpointError
    if not Path(path).is_file():
        raise error(f"{path}: no such weights file")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise error(f"{path}: unreadable safetensors file ({exc})") from exc


def load_weights(module: nn.Module, path: str | os.PathLike[str], *, strict: bool = True) -> None:
    """Load safetensors weights into ``module`` (errors name the file and the mismatching keys)."""
    load_state(module, read_safetensors(path), path, strict=strict)


def load_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], where: str | os.PathLike[str], *,
               strict: bool = True) -> None:
    """Load ``tensors`` into ``module`` (floating tensors cast to the module's dtypes, e.g. fp16 files into an
    fp32 model); a mismatch raises :class:`CheckpointError` naming ``where`` and the offending keys."""
    own = module.state_dict()
    wrong_shape = [k for k, v in tensors.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if wrong_shape or (strict and (missing or unexpected)):
        raise CheckpointError(
            f"{where}: does not fit the model (wrong shape {wrong_shape[:5]}, missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    cast = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in tensors.items()}
    module.load_state_dict(cast, strict=strict)


class CheckpointManager:
    """Saves, lists, loads and prunes the checkpoints of one run folder."""

    def __init__(self, run_dir: str | os.PathLike[str], keep: int = 3):
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    def clean_stale(self) -> list[Path]:
        """Remove leftovers of an interrupted save or prune (temporary and trash folders)."""
        removed = []
        if self.root.exists():
            for entry in self.root.iterdir():
                if entry.name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    def list(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first."""
        if not self.root.exists():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _STEP_DIR.match(entry.name)
            if match and (entry / STATE_FILE).exists():
                found.append(Checkpoint(entry, int(match.group(1))))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        found = self.list()
        return found[-1] if found else None

    def save(
        self,
        step: int,
        models: dict[str, nn.Module],
        trainer_state: dict[str, Any],
        state: dict[str, Any],
        ema_models: dict[str, nn.Module] | None = None,
    ) -> Checkpoint:
        """Write a complete checkpoint for ``step`` atomically and prune old ones."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        meta = {"step": str(step), "musiclm_version": __version__}
        for name, module in models.items():
            save_weights(module, tmp / f"model-{name}.safetensors", metadata=meta)
        for name, module in (ema_models or {}).items():
            save_weights(module, tmp / f"ema-{name}.safetensors", metadata=meta)
        trainer_path = tmp / TRAINER_FILE
        torch.save(trainer_state, trainer_path)
        fsync_file(trainer_path)
        full_state = {
            **state,
            "step": step,
            "models": sorted(models),
            "ema_models": sorted(ema_models or {}),
            "musiclm_version": __version__,
            "saved_at": time.time(),
        }
        atomic_write_text(tmp / STATE_FILE, json.dumps(full_state, indent=2, sort_keys=True))
        fsync_dir(tmp)
        if final.exists():
            trash = self.root / f".trash-{final.name}-{os.getpid()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(self.root)
        self.prune()
        return Checkpoint(final, step)

    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints (renamed away first, then removed)."""
        for old in self.list()[: -self.keep]:
            trash = self.root / f".trash-{old.path.name}"
            os.replace(old.path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def load_models(
        checkpoint: Checkpoint, models: dict[str, nn.Module], ema_models: dict[str, nn.Module] | None = None
    ) -> None:
        for name, module in models.items():
            load_weights(module, checkpoint.path / f"model-{name}.safetensors")
        for name, module in (ema_models or {}).items():
            path = checkpoint.path / f"ema-{name}.safetensors"
            if path.exists():
                load_weights(module, path)

    @staticmethod
    def load_trainer_state(checkpoint: Checkpoint) -> dict[str, Any]:
        path = checkpoint.path / TRAINER_FILE
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: unreadable trainer state ({exc})") from exc


def run_corpora(run_dir: str | os.PathLike[str]) -> list[str]:
    """The corpus folders the latest checkpoint of a run was trained on (its recipe config's ``corpora``)."""
    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint")
    return list(checkpoint.state().get("recipe_config", {}).get("corpora", []))
