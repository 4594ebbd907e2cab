"""Autoregressive sampling from a stage :class:`~musiclm.lm.transformer.Transformer`.

Every step samples one token per sequence from a half-open vocabulary range (how the stages interleave RVQ
levels with per-level vocabulary offsets), with temperature, top-k, top-p (nucleus) filtering and optional
classifier-free guidance; ``level_temperature`` gives each RVQ level of a multi-level stage its own share of
the temperature. Draws use the Gumbel-max trick with noise indexed by token id, so the tiny float differences
between cached and uncached logits almost never change a draw: for one seed, the cached and the uncached paths
give the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from musiclm.errors import ConfigError
from musiclm.lm.transformer import DecodingWeights, KVCache, SequenceError, Transformer


@dataclass
class SamplingParams:
    """How each token is drawn from the model's logits."""

    temperature: float = 1.0  # 0 => greedy argmax
    top_k: int | None = None  # None/0 => off
    top_p: float | None = None  # None/1.0 => off
    cfg_scale: float = 1.0  # 1.0 => no classifier-free guidance
    level_temperature: list[float] | None = None  # per target level: temperature x this (None => 1 for all)

    def validate(self) -> None:
        if not _is_number(self.temperature) or not self.temperature >= 0 or self.temperature == float("inf"):
            raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 0):
            raise ConfigError(f"top_k must be an integer >= 0 (0 or None = off), got {self.top_k!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0):
            raise ConfigError(f"top_p must be within (0, 1] (None or 1 = off), got {self.top_p!r}")
        if not _is_number(self.cfg_scale) or not 0.0 <= self.cfg_scale < float("inf"):
            raise ConfigError(f"cfg_scale must be a finite number >= 0 (1 = no guidance), got {self.cfg_scale!r}")
        if self.level_temperature is not None:
            scales = self.level_temperature
            if (not isinstance(scales, list | tuple) or not scales
                    or not all(_is_number(v) and 0 < v < float("inf") for v in scales)):
                raise ConfigError(f"level_temperature must be a non-empty list of finite numbers > 0 (one per "
                                  f"target level), got {scales!r}")

    def per_level(self, levels: int) -> list[SamplingParams]:
        """The params of each of ``levels`` target levels: ``temperature`` scaled by ``level_temperature``."""
        if self.level_temperature is None:
            return [self] * levels
        if len(self.level_temperature) != levels:
            raise ConfigError(f"level_temperature has {len(self.level_temperature)} values for a stage of "
                              f"{levels} target levels")
        return [replace(self, temperature=self.temperature * scale, level_temperature=None)
                for scale in self.level_temperature]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(U))``, ``U ~ Uniform(0, 1)`` from ``generator`` (moved to ``device``)."""
    uniform = torch.rand(shape, generator=generator, device=generator.device)
    return uniform.clamp_(min=1e-20).log_().neg_().log_().neg_().to(device, non_blocking=True)


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + cfg_scale * (cond - uncond)``."""
    return torch.lerp(uncond, cond, cfg_scale) if cfg_scale != 1.0 else cond


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature-scaled float32 logits with tokens outside the top-k and the top-p nucleus set to -inf."""
    scaled = logits.float()
    if params.temperature != 1.0:
        scaled = scaled / params.temperature
    vocab = scaled.shape[-1]
    if params.top_k and params.top_k < vocab:
        threshold = torch.topk(scaled, params.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        ordered = torch.sort(scaled, dim=-1, descending=True).values
        probs = torch.softmax(ordered, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        kept = (mass_before < params.top_p).sum(dim=-1, keepdim=True).clamp_min_(1)  # always keep the best token
        threshold = ordered.gather(-1, kept - 1)
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    return scaled


def sample_from_logits(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """One token index per row of ``logits`` ``[B, V]`` -> ``[B]`` (long).

    Temperature, then top-k, then top-p; the draw is ``argmax(filtered + gumbel)`` with the noise drawn from
    ``generator`` for every one of the ``V`` candidates. Temperature 0 is the plain argmax (no noise drawn).
    """
    if logits.dim() != 2 or logits.shape[-1] < 1:
        raise SequenceError(f"logits must be [batch, vocab] with vocab >= 1, got {tuple(logits.shape)}")
    if params.greedy:
        return logits.argmax(dim=-1)
    scores = filter_logits(logits, params)
    scores = scores + gumbel_noise(tuple(scores.shape), generator, scores.device)
    return scores.argmax(dim=-1)


def _check_ranges(token_ranges: torch.Tensor, vocab: int) -> list[tuple[int, int]]:
    if not isinstance(token_ranges, torch.Tensor) or token_ranges.dim() != 2 or token_ranges.shape[1] != 2:
        got = tuple(token_ranges.shape) if isinstance(token_ranges, torch.Tensor) else type(token_ranges).__name__
        raise SequenceError(f"token_ranges must be a [steps, 2] tensor of [lo, hi) pairs, got {got}")
    if token_ranges.dtype.is_floating_point:
        raise SequenceError("token_ranges must hold integers")
    ranges = [(int(lo), int(hi)) for lo, hi in token_ranges.tolist()]
    for step, (lo, hi) in enumerate(ranges):
        if not 0 <= lo < hi <= vocab:
            raise SequenceError(f"token_ranges[{step}] = [{lo}, {hi}) is not a non-empty range within [0, {vocab})")
    return ranges


def _check_forced(forced: torch.Tensor, ranges: list[tuple[int, int]], batch: int) -> torch.Tensor:
    if not isinstance(forced, torch.Tensor) or tuple(forced.shape) != (batch, len(ranges)):
        got = tuple(forced.shape) if isinstance(forced, torch.Tensor) else type(forced).__name__
        raise SequenceError(f"forced must be a [{batch}, {len(ranges)}] tensor of ids (-1: sampled), got {got}")
    if forced.dtype.is_floating_point:
        raise SequenceError("forced must hold integer ids")
    forced = forced.long().cpu()
    bounds = torch.tensor(ranges, dtype=torch.long)
    given = forced >= 0
    outside = given & ((forced < bounds[:, 0]) | (forced >= bounds[:, 1]))
    if bool(outside.any()) or bool((forced < -1).any()):
        step = int((outside | (forced < -1)).any(dim=0).nonzero()[0])
        raise SequenceError(f"forced ids of step {step} lie outside its range [{ranges[step][0]}, "
                            f"{ranges[step][1]}) (use -1 for a sampled step)")
    return forced


@torch.no_grad()
def generate_tokens(model: Transformer, prefix: torch.Tensor, token_ranges: torch.Tensor, params: SamplingParams,
                    generator: torch.Generator, *, uncond_prefix: torch.Tensor | None = None,
                    use_cache: bool = True, progress: Callable[[int], None] | None = None,
                    weight_dtype: torch.dtype | None = None, aligned: torch.Tensor | None = None,
                    forced: torch.Tensor | None = None) -> torch.Tensor:
    """Continue ``prefix`` ``[B, P]`` by ``steps = len(token_ranges)`` tokens -> ``[B, steps]`` (long).

    Step ``i`` draws each row's token from the vocabulary range ``token_ranges[i] = [lo, hi)``. With
    ``uncond_prefix`` (same shape, conditioning replaced by null tokens) and ``params.cfg_scale != 1`` the
    conditional and unconditional sequences run as one batch of ``2B`` and their logits are combined as
    ``uncond + cfg_scale * (cond - uncond)``; each drawn token is appended to both. ``use_cache=False``
    recomputes the whole sequence every step (the reference path). ``progress(n)`` is called after each step
    with the number of steps done (1..steps). The model runs in eval mode; its training flag is restored.

    ``weight_dtype`` (e.g. ``torch.float16``) runs the one-token steps' matrix products with weight copies in
    that dtype (:class:`~musiclm.lm.transformer.DecodingWeights`): on a CPU about twice as fast for up to 4
    rows (batch, x2 with guidance), with logits within about 1e-3 of the model's own, so the cached and
    uncached paths may then differ in rare near-tie draws. ``None`` (the default) uses the model's weights.

    ``aligned`` (``[B, P + steps - 1]`` ids, for a model with an aligned embedding) is the aligned condition of
    every input position: the prefix's, then that of each fed token. The unconditional rows of guidance get
    id 0 (no aligned condition) throughout, so guidance strengthens it together with the prefix's condition.

    ``forced`` (``[B, steps]`` ids, -1 where the token is sampled) fixes the tokens of some steps: a forced
    step emits its given id (which must lie in that step's range) and the sequence goes on from it. The noise
    of every step is still drawn, so the free steps of a row draw the same noise as without forcing.

    With ``params.level_temperature`` each distinct range of ``token_ranges`` is a target level (in the order
    the steps first reach them: level 1 of a frame first) and takes its own share of the temperature.
    """
    params.validate()
    if not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator")
    config = model.config
    model.check_tokens(prefix)
    ranges = _check_ranges(token_ranges, config.vocab_size)
    batch, prefix_len = prefix.shape
    steps = len(ranges)
    step_params = None
    if params.level_temperature is not None:
        levels = {span: level for level, span in enumerate(dict.fromkeys(ranges))}
        per_level = params.per_level(len(levels))
        step_params = [per_level[levels[span]] for span in ranges]
    device = model.embedding.weight.device
    if steps == 0:
        return torch.empty(batch, 0, dtype=torch.long, device=device)
    if prefix_len + steps > config.max_seq_len:
        raise SequenceError(f"prefix ({prefix_len}) + generated ({steps}) tokens exceed max_seq_len = "
                            f"{config.max_seq_len}")
    if uncond_prefix is not None:
        if tuple(uncond_prefix.shape) != tuple(prefix.shape):
            raise SequenceError(f"uncond_prefix must have the prefix's shape {tuple(prefix.shape)}, "
                                f"got {tuple(uncond_prefix.shape)}")
        model.check_tokens(uncond_prefix)
    guided = params.cfg_scale != 1.0
    if guided and uncond_prefix is None:
        raise ConfigError(f"cfg_scale = {params.cfg_scale} needs uncond_prefix (the prefix with its conditioning "
                          "replaced by null tokens); use cfg_scale = 1 for unconditional generation")
    rows = prefix.to(device=device, dtype=torch.long)
    if guided:
        rows = torch.cat([rows, uncond_prefix.to(device=device, dtype=torch.long)])  # type: ignore[union-attr]
    if aligned is not None:
        if aligned.dim() != 2 or aligned.shape[0] != batch or aligned.shape[1] < prefix_len + steps - 1:
            raise SequenceError(f"aligned ids must be [{batch}, >= {prefix_len + steps - 1}], "
                                f"got {tuple(aligned.shape)}")
        aligned = aligned[:, :prefix_len + steps - 1].to(device=device, dtype=torch.long)
        if guided:
            aligned = torch.cat([aligned, torch.zeros_like(aligned)])
        model.check_aligned(aligned)  # the ids of every position, not just the prefix's
    if forced is not None:
        forced = _check_forced(forced, ranges, batch).to(device)

    def step_logits(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return guided_logits(last[:batch], last[batch:], params.cfg_scale) if guided else last

    weights = None
    if weight_dtype is not None and weight_dtype != model.embedding.weight.dtype:
        weights = DecodingWeights(model, weight_dtype)
    out = torch.empty(batch, steps, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            cache = KVCache.allocate(model, rows.shape[0], max(prefix_len + steps - 1, prefix_len))
            logits = model(rows, cache, last_only=True, vocab_range=ranges[0], weights=weights, check=False,
                           aligned=None if aligned is None else aligned[:, :prefix_len])
        else:
            sequence = torch.empty(rows.shape[0], prefix_len + steps, dtype=torch.long, device=device)
            sequence[:, :prefix_len] = rows
            logits = model(rows, last_only=True, vocab_range=ranges[0], weights=weights, check=False,
                           aligned=None if aligned is None else aligned[:, :prefix_len])
        for step, (lo, _) in enumerate(ranges):
            token = sample_from_logits(step_logits(logits), params if step_params is None else step_params[step],
                                       generator) + lo
            if forced is not None:
                token = torch.where(forced[:, step] >= 0, forced[:, step], token)
            out[:, step] = token
            if step + 1 < steps:
                fed = token.repeat(2) if guided else token
                at = prefix_len + step  # the fed token's position
                if use_cache:
                    logits = model(fed.unsqueeze(1), cache, last_only=True, vocab_range=ranges[step + 1],
                                   weights=weights, check=False,
                                   aligned=None if aligned is None else aligned[:, at:at + 1])
                else:
                    sequence[:, at] = fed
                    logits = model(sequence[:, :at + 1], last_only=True, vocab_range=ranges[step + 1],
                                   weights=weights, check=False,
                                   aligned=None if aligned is None else aligned[:, :at + 1])
            if progress is not None:
                progress(step + 1)
    finally:
        model.train(was_training)
    return out
