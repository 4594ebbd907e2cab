"""Codec training losses: multi-resolution mel and STFT reconstruction, hinge GAN, feature matching,
and EnCodec's loss balancer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.codec.discriminators import DiscOutput
from musiclm.features import LogMel, Spectrogram

_EPS = 1e-7


class MultiResolutionMelLoss(nn.Module):
    """Mean L1 distance between log-mel spectrograms at several window lengths (hop = window / 4)."""

    def __init__(self, sample_rate: int, ffts: tuple[int, ...], bins: tuple[int, ...]):
        super().__init__()
        self.mels = nn.ModuleList(
            LogMel(sample_rate, n_fft=n, hop_length=n // 4, n_mels=m, eps=1e-5) for n, m in zip(ffts, bins)
        )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.l1_loss(mel(fake), mel(real)) for mel in self.mels]).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over window lengths (Yamamoto et al.)."""

    def __init__(self, ffts: tuple[int, ...]):
        super().__init__()
        self.specs = nn.ModuleList(Spectrogram(n, n // 4, power=1.0) for n in ffts)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        losses = []
        for spec in self.specs:
            s_fake, s_real = spec(fake), spec(real)
            convergence = (s_real - s_fake).norm(dim=(1, 2)) / s_real.norm(dim=(1, 2)).clamp_min(1e-3)
            log_mag = F.l1_loss(torch.log(s_fake + 1e-5), torch.log(s_real + 1e-5))
            losses.append(convergence.mean() + log_mag)
        return torch.stack(losses).mean()


def discriminator_hinge_loss(real: list[DiscOutput], fake: list[DiscOutput]) -> torch.Tensor:
    """Mean over sub-discriminators of ``relu(1 - D(x)) + relu(1 + D(G(x)))``."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)]
    return torch.stack(terms).mean()


def generator_hinge_loss(fake: list[DiscOutput]) -> torch.Tensor:
    """Mean over sub-discriminators of ``relu(1 - D(G(x)))``."""
    return torch.stack([F.relu(1 - logits).mean() for logits, _ in fake]).mean()


def feature_matching_loss(real: list[DiscOutput], fake: list[DiscOutput]) -> torch.Tensor:
    """L1 between discriminator features of real and decoded audio, relative to the real features' scale."""
    terms = []
    for (_, real_features), (_, fake_features) in zip(real, fake):
        for r, f in zip(real_features, fake_features):
            r = r.detach()
            terms.append(F.l1_loss(f, r) / r.abs().mean().clamp_min(1e-3))
    return torch.stack(terms).mean()


def discriminator_accuracy(real: list[DiscOutput], fake: list[DiscOutput]) -> float:
    """Share of logits on the right side of zero (real > 0, fake < 0), for logs."""
    right = sum(float((r > 0).float().mean() + (f < 0).float().mean()) for (r, _), (f, _) in zip(real, fake))
    return right / (2 * len(real))


def balanced_loss(losses: dict[str, torch.Tensor], weights: dict[str, float], output: torch.Tensor,
                  balance: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """One loss to call ``backward()`` on whose gradient into ``output`` is the balanced mix of ``losses``.

    With ``balance``, each loss's gradient with respect to ``output`` is normalised to unit norm (per batch
    item, averaged) and weighted by ``weight / sum(weights)`` (EnCodec's balancer): a term's share of the
    update no longer depends on its scale, which keeps the adversarial terms from swamping reconstruction
    when they start. Without it, this is the plain weighted sum. The returned value is the weighted sum
    either way (for logs); the second result holds the gradient norm of each term.
    """
    active = {name: loss for name, loss in losses.items() if weights.get(name, 0.0) > 0}
    if not active:
        raise ValueError("no loss with a positive weight")
    total_weight = sum(weights[name] for name in active)
    weighted = sum(weights[name] * loss for name, loss in active.items())
    if not balance:
        return weighted, {}
    combined = torch.zeros_like(output)
    norms = {}
    for name, loss in active.items():
        (grad,) = torch.autograd.grad(loss, output, retain_graph=True)
        norm = grad.flatten(1).norm(dim=1).mean()
        norms[f"grad_norm_{name}"] = float(norm)
        combined = combined + grad * (weights[name] / total_weight / (norm + _EPS))
    surrogate = (output * combined.detach()).sum()
    value = weighted.detach() if torch.is_tensor(weighted) else torch.tensor(float(weighted))
    return surrogate - surrogate.detach() + value, norms
