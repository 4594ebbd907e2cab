"""MuLan's text tower: all-MiniLM-L6-v2 (frozen, or with its top layers fine-tuned) plus a trainable projection.

The sentence encoder stays in its installed package and is loaded offline; it is never copied into
checkpoints or exported models. Only the projection and the fine-tuned layers (if any) are part of the
tower's ``state_dict``. With a frozen backbone, the mean-pooled backbone features of every unique string
are cached, so repeated captions cost one projection.

Text handling: an empty or all-whitespace string is a :class:`TextError`; text longer than
``max_tokens`` word pieces is truncated with a :class:`UserWarning`; any Unicode text is accepted (the
backbone is English-trained: other languages get an embedding, but not a meaningful one).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musiclm.errors import MusicLMError
from musiclm.mulan.config import TextTowerConfig

log = logging.getLogger("musiclm.mulan")

_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")


class TextError(MusicLMError):
    """A text cannot be embedded (empty, not a string) or the text backbone cannot be loaded."""


def backbone_path(name: str) -> Path:
    """The folder of a sentence-transformers model: ``name`` itself, or ``<package>.get_model_path()``."""
    path = Path(name)
    if path.is_dir():
        return path
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise TextError(f"text backbone {name!r} is neither a folder nor an installed package ({exc})") from exc
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise TextError(f"package {name!r} has no get_model_path(); pass a model folder instead")
    return Path(getter())


@lru_cache(maxsize=4)
def _load_backbone(name: str) -> tuple[nn.Module, Any]:
    """Load (once per process) the transformer and tokenizer of a sentence-transformers folder, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = backbone_path(name)
    try:
        st = SentenceTransformer(str(path), device="cpu")
    except Exception as exc:  # sentence-transformers raises many types
        raise TextError(f"cannot load the text backbone from {path} ({exc})") from exc
    transformer = st[0]
    model = getattr(transformer, "auto_model", None) or transformer.model
    return model.eval(), st.tokenizer


def load_backbone(name: str) -> tuple[nn.Module, Any]:
    """A private copy of the backbone's transformer (safe to fine-tune) and its shared tokenizer."""
    model, tokenizer = _load_backbone(name)
    return copy.deepcopy(model), tokenizer


def check_texts(texts: list[str] | tuple[str, ...]) -> list[str]:
    """Validate a batch of texts: strings, not empty or whitespace only."""
    if isinstance(texts, str):
        raise TextError("expected a list of texts, got one string (wrap it in a list)")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise TextError(f"text {i} is empty; MuLan needs a description to embed")
        out.append(text)
    return out


class TextTower(nn.Module):
    """Texts -> unnormalised ``[B, out_dim]`` vectors."""

    def __init__(self, config: TextTowerConfig, out_dim: int):
        super().__init__()
        self.config = config
        self.backbone, self.tokenizer = load_backbone(config.backbone)
        layers = self.backbone.config.num_hidden_layers
        if config.finetune_layers > layers:
            raise TextError(f"finetune_layers={config.finetune_layers} but the backbone has {layers} layers")
        self.first_tuned = layers - config.finetune_layers
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(self._is_tuned(name))
        width = self.backbone.config.hidden_size
        self.projection = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, config.hidden), nn.GELU(),
                                        nn.Dropout(config.dropout), nn.Linear(config.hidden, out_dim))
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.register_state_dict_post_hook(_drop_frozen_backbone)
        self.register_load_state_dict_pre_hook(_fill_frozen_backbone)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def frozen(self) -> bool:
        return self.config.finetune_layers == 0

    def _is_tuned(self, name: str) -> bool:
        """Whether backbone parameter ``name`` (relative to the backbone) is fine-tuned."""
        if self.frozen or name.startswith("pooler."):
            return False
        match = _LAYER_KEY.match(name)
        return bool(match) and int(match.group(1)) >= self.first_tuned

    def train(self, mode: bool = True) -> TextTower:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # no dropout in a frozen encoder: its features are cached
        return self

    # -------------------------------------------------------------------------------------- encoding
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Word pieces of ``texts``, truncated to ``max_tokens`` (warning when something is cut)."""
        limit = self.config.max_tokens
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        cut = [i for i, row in enumerate(ids) if len(row) > limit]
        if cut:
            longest = max(len(ids[i]) for i in cut)
            warnings.warn(f"{len(cut)} text(s) longer than {limit} tokens (up to {longest}) were truncated "
                          f"to the first {limit}", UserWarning, stacklevel=3)
            sep = ids[cut[0]][-1]
            ids = [row if len(row) <= limit else [*row[:limit - 1], sep] for row in ids]
        width = max(len(row) for row in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in ids], dtype=torch.long)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}

    def backbone_features(self, texts: list[str]) -> torch.Tensor:
        """Mean-pooled last hidden states ``[B, width]`` (the all-MiniLM sentence embedding before its norm)."""
        device = next(self.projection.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(texts).items()}
        hidden = self.backbone(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def features(self, texts: list[str]) -> torch.Tensor:
        """Backbone features of ``texts``; looked up in (and added to) the cache when the backbone is frozen."""
        if not self.frozen or self.config.cache_size == 0:
            return self.backbone_features(texts)
        device = next(self.projection.parameters()).device
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                computed = self.backbone_features(missing).float().cpu()
            for text, row in zip(missing, computed):
                self._cache[text] = row
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows).to(device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        texts = check_texts(texts)
        return self.projection(self.features(texts).float())

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)


def _frozen_keys(tower: TextTower, prefix: str, keys: list[str]) -> list[str]:
    start = prefix + "backbone."
    return [k for k in keys if k.startswith(start) and not tower._is_tuned(k[len(start):])]


def _drop_frozen_backbone(tower: TextTower, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: the frozen backbone lives in its package, not in checkpoints."""
    for key in _frozen_keys(tower, prefix, list(state_dict)):
        del state_dict[key]


def _fill_frozen_backbone(tower: TextTower, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: frozen backbone tensors are taken from the package copy already in the tower."""
    own = {prefix + "backbone." + k: v for k, v in tower.backbone.state_dict().items()}
    for key in _frozen_keys(tower, prefix, list(own)):
        state_dict.setdefault(key, own[key])
