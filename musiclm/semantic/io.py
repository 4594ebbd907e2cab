"""Loading trained semantic models: from a training run folder or from an exported tokenizer folder."""

from __future__ import annotations

import os
from pathlib import Path

from musiclm.config import from_dict
from musiclm.semantic.config import SemanticTrainingConfig
from musiclm.semantic.model import SemanticModel, truncate
from musiclm.train.checkpoint import Checkpoint, CheckpointError, CheckpointManager, load_weights

TOKENIZER_CONFIG = "config.yaml"
TOKENIZER_WEIGHTS = "semantic.safetensors"


def model_from_run(run_dir: str | os.PathLike[str], prefer_ema: bool = True
                   ) -> tuple[SemanticModel, SemanticTrainingConfig, Checkpoint]:
    """The model of the latest checkpoint of a ``musiclm semantic train`` run (EMA weights when present)."""
    checkpoint = CheckpointManager(run_dir).latest()
    if checkpoint is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found (is this a `musiclm semantic train` run folder?)")
    recipe_config = dict(checkpoint.state().get("recipe_config") or {})
    if "model" not in recipe_config or "targets" not in recipe_config:
        raise CheckpointError(f"{checkpoint.path}: not a semantic training checkpoint")
    recipe_config.pop("corpora", None)
    config = from_dict(SemanticTrainingConfig, recipe_config)
    model = SemanticModel(config.model)
    ema = checkpoint.path / "ema-semantic.safetensors"
    load_weights(model, ema if prefer_ema and ema.exists() else checkpoint.path / "model-semantic.safetensors")
    return model.eval(), config, checkpoint


def load_encoder(source: str | os.PathLike[str], layer: int) -> SemanticModel:
    """The first ``layer`` blocks (no heads, eval mode) of a run folder's latest model or a tokenizer folder."""
    source = Path(source)
    if (source / "checkpoints").exists():
        model, _, _ = model_from_run(source)
        if layer > model.config.num_layers:
            raise CheckpointError(f"{source}: the model has {model.config.num_layers} layers, asked for {layer}")
        return truncate(model, layer).eval()
    if (source / TOKENIZER_CONFIG).exists():
        from musiclm.semantic.tokenizer import SemanticTokenizer

        tokenizer = SemanticTokenizer.from_pretrained(source)
        if layer > tokenizer.model.config.num_layers:
            raise CheckpointError(f"{source}: the tokenizer keeps {tokenizer.model.config.num_layers} layers, "
                                  f"asked for {layer}")
        return truncate(tokenizer.model, layer).eval()
    raise CheckpointError(f"{source}: neither a semantic run folder (with checkpoints/) nor a tokenizer folder "
                          f"(with {TOKENIZER_CONFIG})")

