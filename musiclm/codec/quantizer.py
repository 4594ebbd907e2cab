"""Residual vector quantisation (SoundStream's RVQ) on vector-quantize-pytorch codebooks.

Each level is a ``VectorQuantize`` codebook with EMA updates and dead-code replacement; the residual loop,
the quantiser dropout (bit-rate scalability), the k-means initialisation and the dead-code rule are here,
because the library's defaults assume batches far larger than a CPU run has:

- k-means initialisation on the first batch: with 400 vectors (batch 8 x 50 frames) for 1024 codes, level 1
  memorises the batch, the residual becomes ~0 and levels 2-12 start degenerate (measured: perplexity 1.0
  at levels 3-12). Here the first ``init_vectors`` latents are gathered into a reservoir (the codec runs
  unquantised for those few steps) and every level is initialised by k-means on the reservoir's residuals.
- latent drift: the encoder's latent is a large per-channel offset plus variations ~50x smaller, and Adam
  moves that offset by about one standard deviation of the variations per step (measured at batch 8, even
  as a plain autoencoder), so fixed codebooks fall behind and every level collapses onto 1-2 codes within a
  few steps. The codebooks therefore live in a normalised space: the latent minus a running per-channel mean,
  divided by a running overall spread (EMA buffers, identical on every rank, frozen at inference). The
  decoder still receives the de-normalised sum of codes, so nothing else changes.
- dead codes: a code that no vector chose during the last ``dead_code_window`` x ``codebook_size`` vectors
  (about 10 steps at batch 8 x 1 s, every step at GPU batch sizes) is re-seeded with a random vector of the
  current batch, as SoundStream describes; an EMA usage threshold (the library's) re-seeds far too late at
  small batches, or nearly every code at every step when the threshold exceeds the average usage.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from musiclm.codec.config import CodecConfig


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, F], the sum of the used levels (gradients reach the input)
    codes: torch.Tensor  # [B, levels, F] int64
    commitment: torch.Tensor  # scalar, mean over the used levels
    levels: int


def _synced_seed(device: torch.device) -> int:
    """A random integer from the global torch RNG that every DDP rank agrees on."""
    value = torch.randint(0, 2**31 - 1, (), device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(value, src=0)
    return int(value.item())


class ResidualQuantizer(nn.Module):
    """``num_quantizers`` codebooks applied to successive residuals of a ``[B, D, F]`` latent."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            VectorQuantize(
                dim=config.latent_dim,
                codebook_size=config.codebook_size,
                decay=config.codebook_decay,
                kmeans_init=False,  # random codes; replaced by the reservoir k-means below when enabled
                threshold_ema_dead_code=0,  # dead codes are handled here (see the module docstring)
                commitment_weight=1.0,
                channel_last=False,
            )
            for _ in range(config.num_quantizers)
        )
        reservoir = config.init_vectors if config.kmeans_init else 0
        self.register_buffer("init_reservoir", torch.zeros(reservoir, config.latent_dim))
        self.register_buffer("init_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("warmup_batches_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(not config.kmeans_init))
        self.register_buffer("unused_steps", torch.zeros(config.num_quantizers, config.codebook_size))
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim, 1))
        self.register_buffer("latent_scale", torch.ones(()))

    @property
    def num_quantizers(self) -> int:
        return len(self.layers)

    def training_levels(self) -> int:
        """Levels used for this training batch: all, or (with probability ``quantizer_dropout``) a smaller
        multiple of ``dropout_levels_multiple`` (3, 6 or 9 of 12: the 1.5/3 kbps rates and one between)."""
        cfg = self.config
        choices = [n for n in range(cfg.dropout_levels_multiple, self.num_quantizers, cfg.dropout_levels_multiple)]
        if cfg.quantizer_dropout <= 0 or not choices:
            return self.num_quantizers
        rng = random.Random(_synced_seed(self.layers[0].zero.device))
        if rng.random() >= cfg.quantizer_dropout:
            return self.num_quantizers
        return rng.choice(choices)

    def _dead_after_steps(self, vectors: int) -> int:
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return max(1, math.ceil(self.config.dead_code_window * self.config.codebook_size / (vectors * world)))

    @torch.no_grad()
    def _replace_dead_codes(self, level: int, residual: torch.Tensor, indices: torch.Tensor) -> int:
        """Re-seed the codes of ``level`` unused for too long with vectors of ``residual`` [B, D, F]."""
        size = self.config.codebook_size
        counts = torch.bincount(indices.reshape(-1), minlength=size).float()
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed:
            dist.all_reduce(counts)
        unused = self.unused_steps[level]
        unused.add_(1).mul_(counts == 0)
        vectors = residual.detach().float().transpose(1, 2).reshape(-1, residual.shape[1])
        dead = unused >= self._dead_after_steps(vectors.shape[0])
        count = int(dead.sum())
        if count == 0:
            return 0
        picks = torch.randint(0, vectors.shape[0], (count,), device=vectors.device)
        fresh = vectors[picks]
        if distributed:
            dist.broadcast(fresh, src=0)
        codebook = self.layers[level]._codebook
        uniform = vectors.shape[0] * (dist.get_world_size() if distributed else 1) / size
        codebook.embed.data[0, dead] = fresh
        codebook.embed_avg.data[0, dead] = fresh * uniform
        codebook.cluster_size.data[0, dead] = uniform
        unused[dead] = 0
        return count

    def forward(self, latent: torch.Tensor, levels: int | None = None) -> QuantizerOutput:
        """Quantise ``latent`` [B, D, F]; in training the codebooks update and ``levels`` defaults to
        :meth:`training_levels`, in eval mode to all levels."""
        if levels is None:
            levels = self.training_levels() if self.training else self.num_quantizers
        if not 1 <= levels <= self.num_quantizers:
            raise ValueError(f"levels must be within [1, {self.num_quantizers}], got {levels}")
        if not bool(self.initialized):
            if not self.training:
                raise RuntimeError("the quantiser is not initialised yet (it needs a few training steps)")
            if int(self.warmup_batches_seen) < self.config.quantizer_warmup_batches:
                self.warmup_batches_seen += 1
                return self._unquantized(latent, levels)
            if self._collect(latent):
                return self._unquantized(latent, levels)
        if self.training:
            self._track_latent_statistics(latent)
        residual = self.normalize(latent.float())
        quantized = torch.zeros_like(residual)
        codes, losses = [], []
        self.replaced_codes = 0
        for level, layer in enumerate(self.layers[:levels]):
            q, indices, loss = layer(residual)
            if self.training and self.config.dead_code_window > 0:
                self.replaced_codes += self._replace_dead_codes(level, residual, indices)
            residual = residual - q.detach()
            quantized = quantized + q
            codes.append(indices)
            losses.append(loss.reshape(()))
        commitment = torch.stack(losses).mean() if self.training else latent.new_zeros(())
        return QuantizerOutput(self.denormalize(quantized), torch.stack(codes, dim=1).long(), commitment, levels)

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        """The latent [B, D, F] centred and scaled by the running statistics (the space the codebooks live in)."""
        if not self.config.normalize_latent:
            return latent
        return (latent - self.latent_mean) / self.latent_scale

    def denormalize(self, latent: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize_latent:
            return latent
        return latent * self.latent_scale + self.latent_mean

    @torch.no_grad()
    def _track_latent_statistics(self, latent: torch.Tensor) -> None:
        """EMA of the latent's per-channel mean and overall spread (identical on every DDP rank)."""
        if not self.config.normalize_latent:
            return
        latent = latent.detach().float()
        mean = latent.mean(dim=(0, 2)).unsqueeze(-1)
        stats = torch.cat([mean.flatten(), (latent - mean).pow(2).mean().reshape(1)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
        decay = self.config.latent_stats_decay
        self.latent_mean.mul_(decay).add_((1 - decay) * stats[:-1].unsqueeze(-1))
        self.latent_scale.mul_(decay).add_((1 - decay) * stats[-1].clamp_min(1e-10).sqrt())

    @staticmethod
    def _unquantized(latent: torch.Tensor, levels: int) -> QuantizerOutput:
        codes = latent.new_full((latent.shape[0], levels, latent.shape[-1]), -1, dtype=torch.long)
        return QuantizerOutput(latent, codes, latent.new_zeros(()), levels)

    @torch.no_grad()
    def _collect(self, latent: torch.Tensor) -> bool:
        """Add a batch to the k-means reservoir; initialise when it is full. True while still collecting."""
        vectors = latent.detach().float().transpose(1, 2).reshape(-1, latent.shape[1])
        start, size = int(self.init_count), self.init_reservoir.shape[0]
        take = min(size - start, vectors.shape[0])
        self.init_reservoir[start : start + take] = vectors[torch.randperm(vectors.shape[0],
                                                                           device=vectors.device)[:take]]
        self.init_count += take
        if int(self.init_count) < size:
            return True
        self._initialize(per_step=vectors.shape[0])
        return False

    @torch.no_grad()
    def _initialize(self, per_step: int) -> None:
        """k-means on the reservoir, level after level on the residuals (rank 0's result under DDP)."""
        reservoir = self.init_reservoir
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        mean = reservoir.mean(0)
        scale = (reservoir - mean).pow(2).mean().clamp_min(1e-10).sqrt()
        if world > 1:
            dist.broadcast(mean, src=0)
            dist.broadcast(scale, src=0)
        self.latent_mean.copy_(mean.unsqueeze(-1))
        self.latent_scale.copy_(scale)
        residual = self.normalize(reservoir.t().unsqueeze(0))[0].t().contiguous()
        uniform = per_step * world / self.config.codebook_size
        for layer in self.layers:
            codebook = layer._codebook
            means = kmeans(residual, self.config.codebook_size, self.config.kmeans_iters)
            if world > 1:
                dist.broadcast(means, src=0)
            codebook.embed.data.copy_(means.unsqueeze(0))
            codebook.cluster_size.data.fill_(uniform)
            codebook.embed_avg.data.copy_(codebook.embed * uniform)
            residual = residual - means[nearest(residual, means)]
        self.initialized.fill_(True)
        self.init_reservoir.zero_()

    @torch.no_grad()
    def encode(self, latent: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Codes [B, levels, F] of ``latent`` [B, D, F] (nearest code per level, no codebook updates)."""
        levels = self.num_quantizers if levels is None else levels
        residual = self.normalize(latent.float()).transpose(1, 2)  # [B, F, D]
        codes = []
        for codebook in self.codebooks()[:levels]:
            indices = nearest(residual, codebook)
            residual = residual - codebook[indices]
            codes.append(indices)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """The latent [B, D, F] of codes [B, levels, F] (any number of leading levels)."""
        if codes.dim() != 3 or codes.shape[1] > self.num_quantizers:
            raise ValueError(f"codes must be [batch, levels <= {self.num_quantizers}, frames], "
                             f"got {tuple(codes.shape)}")
        codebooks = self.codebooks()
        latent = codebooks[0].new_zeros(codes.shape[0], codes.shape[2], codebooks[0].shape[1])
        for level in range(codes.shape[1]):
            latent = latent + codebooks[level][codes[:, level]]
        return self.denormalize(latent.transpose(1, 2))

    def codebooks(self) -> list[torch.Tensor]:
        """The current codebooks, each [codebook_size, D]."""
        return [layer.codebook.float() for layer in self.layers]


def nearest(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared Euclidean distance) for each vector, [..., D] -> [...]."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 does not change the argmin: one matmul
    return (vectors @ codebook.t() * 2.0 - codebook.pow(2).sum(-1)).argmax(-1)


def kmeans(data: torch.Tensor, clusters: int, iters: int) -> torch.Tensor:
    """Lloyd's k-means on ``data`` [N, D] from a random sample of the data; empty clusters keep their seed."""
    count = data.shape[0]
    picks = (torch.randperm(count, device=data.device)[:clusters] if count >= clusters
             else torch.randint(0, count, (clusters,), device=data.device))
    means = data[picks].clone()
    for _ in range(iters):
        assign = nearest(data, means)
        counts = torch.bincount(assign, minlength=clusters).float()
        sums = torch.zeros_like(means).index_add_(0, assign, data)
        filled = counts > 0
        means[filled] = sums[filled] / counts[filled].unsqueeze(-1)
    return means


def perplexity(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of the code histogram of each level: codes [B, L, F] -> [L] (1 = collapse)."""
    flat = codes.transpose(0, 1).reshape(codes.shape[1], -1)
    valid = flat >= 0
    counts = torch.zeros(flat.shape[0], codebook_size, device=codes.device)
    counts.scatter_add_(1, flat.clamp_min(0), valid.float())
    probs = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    return entropy.exp()
