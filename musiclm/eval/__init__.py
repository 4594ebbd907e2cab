"""Evaluation metrics of generated music, as in the MusicLM paper and its neighbours.

- :mod:`~musiclm.eval.frechet`: Fréchet (audio) distance between Gaussians fit to embeddings (FAD).
- :mod:`~musiclm.eval.embeddings`: the audio embedders FAD is computed with (VGGish, MuLan, the tagger).
- :mod:`~musiclm.eval.vggish`: the VGGish network and its 16 kHz log-mel front end (user-supplied weights).
- :mod:`~musiclm.eval.divergence`: KL divergence between a classifier's label distributions (KLD).
- :mod:`~musiclm.eval.adherence`: tempo, mode and melody (chroma) adherence, MuLan cycle consistency (MCC).
- :mod:`~musiclm.eval.memorization`: exact and approximate (Sinkhorn) memorisation of semantic tokens.
- :mod:`~musiclm.eval.tagger`: an independent audio tagger (the paper's classifier for KLD), trained on the
  corpus labels by :mod:`~musiclm.eval.tagger_recipe`.

Submodules are imported on demand; this package itself only defines the error type.
"""

from __future__ import annotations

from musiclm.errors import MusicLMError


class EvalError(MusicLMError):
    """An evaluation input is unusable (wrong shapes, too few samples, inconsistent sets)."""


__all__ = ["EvalError"]
