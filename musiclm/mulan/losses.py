"""Symmetric contrastive (InfoNCE) loss of MuLan, with negatives gathered from every rank.

Rows that share a group id (clips cut from the same piece) are positives of each other rather than false
negatives: the target of a row is spread evenly over its group (multi-positive InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musiclm.train.distributed import gather_with_grad


def contrastive_loss(
    audio: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    groups: torch.Tensor | None = None,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean of the audio->text and text->audio cross-entropies over the (gathered) batch.

    ``audio`` and ``text`` are unit vectors ``[B, D]`` (row i of each is a pair); ``scale`` is 1/temperature;
    ``groups`` ``[B]`` are integer ids (equal ids are positives). Under DDP every rank gathers all rows
    (gradients flow through its own), so each rank computes the same global loss.
    """
    if audio.shape != text.shape or audio.dim() != 2:
        raise ValueError(f"audio {tuple(audio.shape)} and text {tuple(text.shape)} must both be [B, D]")
    if gather:
        audio, text = gather_with_grad(audio), gather_with_grad(text)
        if groups is not None:
            groups = gather_with_grad(groups)
    logits = scale * audio.float() @ text.float().t()  # [audio, text]
    n = logits.shape[0]
    if groups is None:
        positive = torch.eye(n, dtype=torch.bool, device=logits.device)
    else:
        groups = groups.to(logits.device)
        positive = groups[:, None] == groups[None, :]
    targets = positive.float() / positive.float().sum(1, keepdim=True)
    a2t = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2a = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    loss = 0.5 * (a2t + t2a)
    with torch.no_grad():
        rows = torch.arange(n, device=logits.device)
        a2t_acc = positive[rows, logits.argmax(1)].float().mean()
        t2a_acc = positive.t()[rows, logits.t().argmax(1)].float().mean()
        logs = {"a2t_acc": float(a2t_acc), "t2a_acc": float(t2a_acc), "temperature": float(1.0 / scale.detach()),
                "positives_per_row": float(positive.float().sum(1).mean())}
    return loss, logs
