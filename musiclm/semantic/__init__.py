"""Semantic tokens: a self-supervised music model plus k-means, 25 tokens per second (MusicLM's stage-1 vocabulary).

:class:`~musiclm.semantic.tokenizer.SemanticTokenizer` is the inference API (audio -> tokens);
:mod:`musiclm.semantic.recipe` trains the model by masked prediction on the shared engine;
:mod:`musiclm.semantic.evaluate` measures how much melody, harmony, rhythm and timbre the tokens carry.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TOKEN_RATE", "SemanticTokenizer"]

TOKEN_RATE = 25


def __getattr__(name: str) -> Any:  # keep `import musiclm.semantic.config` free of torch
    if name == "SemanticTokenizer":
        from musiclm.semantic.tokenizer import SemanticTokenizer

        return SemanticTokenizer
    raise AttributeError(name)
