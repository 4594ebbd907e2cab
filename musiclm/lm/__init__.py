"""The generation stages: one decoder-only Transformer, three token layouts, windowed sampling, training."""
