"""Learning-rate schedules as multipliers of the base rate (for ``torch.optim.lr_scheduler.LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(
    warmup_steps: int, total_steps: int, min_ratio: float = 0.1, cosine: bool = True
) -> Callable[[int], float]:
    """Linear warmup from ~0 to 1 over ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps``.

    With ``cosine=False`` the rate stays at 1 after warmup.
    """

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if not cosine:
            return 1.0
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
