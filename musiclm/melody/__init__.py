"""Melody conditioning: a melody embedding model (ViT over a pitch spectrogram, semi-hard triplet loss) and
the residual quantiser that turns its 4 s window embeddings into melody tokens.

``MelodyModel`` (:mod:`musiclm.melody.api`) is the inference face; :mod:`musiclm.melody.pairs` makes the
training pairs from the corpus engine; :mod:`musiclm.melody.recipe` trains on the engine.
"""
