"""Semi-hard triplet loss with in-batch mining (FaceNet's recipe, as MusicLM trains its melody model).

Every (anchor, positive) pair of the batch is a triplet with one mined negative: the closest negative that
is still farther from the anchor than the positive (semi-hard); when the anchor has no such negative, the
farthest negative (the gentlest one) is used instead, so early training is not dominated by the hardest
negatives. Distances are squared Euclidean distances of unit vectors (``2 - 2 cos``, range 0-4).

Rows with the same label are positives of each other; rows with different labels are negatives. ``items``
optionally says which dataset item a row came from: two rows with one label from different items (the same
melody cut at two different points of the tune) are neither positives nor negatives.
"""

from __future__ import annotations

import torch

from musiclm.train.distributed import gather_with_grad


def pair_masks(labels: torch.Tensor, items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean masks ``[N, N]`` (the diagonal is neither)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    if items is not None:
        positive &= items[:, None] == items[None, :]
    return positive, ~same


def semi_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    items: torch.Tensor | None = None,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over (anchor, positive) pairs of ``relu(d(a, p) - d(a, n) + margin)`` with semi-hard ``n``.

    ``embeddings`` are unit vectors ``[N, D]``, ``labels`` and ``items`` integer ids ``[N]``. Under DDP
    every rank gathers all rows (gradients flow through its own), so negatives come from the global batch.
    Returns the loss and logs: the fraction of triplets with a non-zero loss, the mean positive and mined
    negative distances, and ``nn_acc``, how often a row's nearest neighbour is one of its positives.
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"expected embeddings [N, D] and labels [N], got {tuple(embeddings.shape)} and "
                         f"{tuple(labels.shape)}")
    if gather:
        embeddings, labels = gather_with_grad(embeddings), gather_with_grad(labels)
        if items is not None:
            items = gather_with_grad(items)
    x = embeddings.float()
    distance = (2.0 - 2.0 * x @ x.t()).clamp_min(0.0)
    positive, negative = pair_masks(labels.to(x.device), None if items is None else items.to(x.device))
    positive &= negative.any(dim=1, keepdim=True)  # an anchor needs a negative to form a triplet
    if not positive.any():
        zero = x.sum() * 0.0
        return zero, {"active": 0.0, "d_pos": 0.0, "d_neg": 0.0, "nn_acc": 0.0}
    d_ap = distance.unsqueeze(2)  # [anchor, positive, 1]
    d_an = distance.unsqueeze(1)  # [anchor, 1, negative]
    neg = negative.unsqueeze(1)
    outside = neg & (d_an > d_ap)  # negatives farther than the positive
    inf = torch.tensor(float("inf"), device=x.device)
    semi_hard = torch.where(outside, d_an, inf).amin(dim=2)  # [anchor, positive]
    gentlest = torch.where(neg, d_an, -inf).amax(dim=2)  # [anchor, 1]
    mined = torch.where(outside.any(dim=2), semi_hard, gentlest.expand_as(semi_hard))
    losses = torch.relu(distance - mined + margin)[positive]
    loss = losses.mean()
    with torch.no_grad():
        nearest = torch.where(positive | negative, distance, inf).argmin(dim=1)
        rows = torch.arange(len(x), device=x.device)
        has_pos = positive.any(dim=1)
        logs = {
            "active": float((losses > 0).float().mean()),
            "d_pos": float(distance[positive].mean()),
            "d_neg": float(mined[positive].mean()),
            "nn_acc": float(positive[rows, nearest][has_pos].float().mean()),
        }
    return loss, logs
