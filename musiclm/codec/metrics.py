"""Objective codec quality measures (per clip): log-mel L1, multi-resolution STFT distance, SI-SDR and how
often the dominant pitch class survives coding (chroma agreement)."""

from __future__ import annotations

import torch

from musiclm import SAMPLE_RATE
from musiclm.features import LogMel, Spectrogram

_MEL_CACHE: dict[tuple[int, str], LogMel] = {}
STFT_FFTS = (512, 1024, 2048)


def _logmel(sample_rate: int, device: torch.device) -> LogMel:
    key = (sample_rate, str(device))
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = LogMel(sample_rate, n_fft=1024, hop_length=256, n_mels=80).to(device)
    return _MEL_CACHE[key]


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    reference, estimate = torch.atleast_2d(reference).float(), torch.atleast_2d(estimate).float()
    length = min(reference.shape[-1], estimate.shape[-1])
    return reference[..., :length], estimate[..., :length].to(reference.device)


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Mean absolute difference of natural-log mel power spectra (80 bins, 1024/256) per clip, [B]."""
    reference, estimate = _pair(reference, estimate)
    mel = _logmel(sample_rate, reference.device)
    return (mel(reference) - mel(estimate)).abs().mean(dim=(1, 2))


def stft_distance(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1 averaged over windows of 512/1024/2048 per clip, [B]."""
    reference, estimate = _pair(reference, estimate)
    total = torch.zeros(reference.shape[0], device=reference.device)
    for n_fft in STFT_FFTS:
        spec = Spectrogram(n_fft, n_fft // 4, power=1.0).to(reference.device)
        s_ref, s_est = spec(reference), spec(estimate)
        convergence = (s_ref - s_est).norm(dim=(1, 2)) / s_ref.norm(dim=(1, 2)).clamp_min(1e-3)
        log_mag = (torch.log(s_ref + 1e-5) - torch.log(s_est + 1e-5)).abs().mean(dim=(1, 2))
        total += convergence + log_mag
    return total / len(STFT_FFTS)


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB per clip, [B] (higher is better).

    A silent reference has no defined SI-SDR: NaN is returned for it (callers average with ``nanmean``).
    """
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    energy = reference.pow(2).sum(-1)
    scale = (estimate * reference).sum(-1) / energy.clamp_min(1e-12)
    target = scale.unsqueeze(-1) * reference
    noise = estimate - target
    ratio = target.pow(2).sum(-1) / noise.pow(2).sum(-1).clamp_min(1e-12)
    value = 10 * torch.log10(ratio.clamp_min(1e-12))
    return torch.where(energy > 1e-9, value, torch.full_like(value, float("nan")))


def chroma_agreement(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int = SAMPLE_RATE
                     ) -> torch.Tensor:
    """Fraction of the reference's audible frames whose strongest pitch class the estimate keeps, per clip,
    [B] (MusicGen's melody measure applied to a roundtrip; 1 = every dominant pitch class kept). A codec that
    adds a tone of its own, or loses the pitch, scores low even when its spectra look close. Silent
    references give NaN."""
    from musiclm.eval.adherence import EvalError, chroma_similarity

    reference, estimate = _pair(reference, estimate)
    values = []
    for ref, est in zip(reference.cpu().numpy(), estimate.cpu().numpy()):
        try:
            values.append(chroma_similarity(ref, est, sample_rate))
        except EvalError:  # silent or too short: no pitch to keep
            values.append(float("nan"))
    return torch.tensor(values, dtype=torch.float32)


def quality_report(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int = SAMPLE_RATE
                   ) -> dict[str, float]:
    """Means over clips of :func:`mel_distance`, :func:`stft_distance`, :func:`si_sdr` and
    :func:`chroma_agreement`."""
    return {
        "mel_l1": float(mel_distance(reference, estimate, sample_rate).mean()),
        "stft": float(stft_distance(reference, estimate).mean()),
        "si_sdr": float(torch.nanmean(si_sdr(reference, estimate))),
        "chroma": float(torch.nanmean(chroma_agreement(reference, estimate, sample_rate))),
    }
