"""The decoder-only Transformer of the three generation stages, with a preallocated key/value cache.

Pre-norm blocks (LayerNorm) of causal multi-head self-attention with rotary position embeddings (RoPE: the
attention score of two tokens depends only on their distance) and a GELU (tanh form) feed-forward network;
dropout on the embeddings, the attention weights and both residual branches; a final LayerNorm and an output
head tied to the token embedding (unless ``tie_embeddings`` is off). With ``aligned_vocab`` > 0 a second,
zero-initialised embedding table takes one more id per position (``aligned``: a condition aligned with the
sequence, such as the pitch contour of the semantic frame each position predicts) and adds its vector to the
token embedding there. Id 0 means "none" and stays the zero vector, so a stage trained without the table
starts out unchanged and still gives its own logits wherever no aligned condition is given.

With ``prefix_modulation`` = P > 0 the first P tokens of every sequence are a global condition (the MuLan
tokens of the semantic and coarse stages) that also reaches every block directly: their mean embedding passes
through a low-rank bottleneck to a scale and a shift of each block's two LayerNorms (adaptive LayerNorm, as in
DiT's adaLN), so the condition acts on every position of every layer and not only through attention to P
prefix tokens. Its output layer starts at zero, so a stage trained without it starts out unchanged.

Incremental decoding: a :class:`KVCache` holds the rotated keys and the values of every layer for the tokens
seen so far (and the modulation computed from the prefix, if any). ``model(tokens, cache)`` gives the new
tokens the positions following the cached ones, lets them attend to the cache and causally among themselves, and
appends their keys and values in place (no concatenation), so prefilling a prefix and then feeding one token
at a time gives, up to float rounding, the logits of one uncached forward over the whole sequence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from musiclm.errors import MusicLMError
from musiclm.lm.config import TransformerConfig

CPU_HALF_MAX_ROWS = 4
"""Above this many token rows per forward, float16 products on a CPU are slower than float32 ones (measured)."""


class SequenceError(MusicLMError, ValueError):
    """A token sequence the model cannot take: ids outside the vocabulary, too long, or a mismatched cache."""


class KVCache:
    """Keys and values of every layer, preallocated as ``[depth, batch, heads, max_len, head_dim]``.

    ``length`` tokens are stored; the model writes the next ones at ``length`` and advances it.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if keys.shape != values.shape or keys.dim() != 5:
            raise ValueError("keys and values must both be [depth, batch, heads, max_len, head_dim]")
        self.keys = keys
        self.values = values
        self.length = 0
        self.modulation: torch.Tensor | None = None  # [B, depth, 4, 1, dim] of a model with prefix_modulation

    @classmethod
    def allocate(cls, model_or_config: Transformer | TransformerConfig, batch: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` tokens.

        ``device`` and ``dtype`` default to those of the model's parameters (CPU float32 for a config).
        """
        if isinstance(model_or_config, Transformer):
            config = model_or_config.config
            weight = model_or_config.embedding.weight
            device = weight.device if device is None else device
            dtype = weight.dtype if dtype is None else dtype
        elif isinstance(model_or_config, TransformerConfig):
            config = model_or_config
        else:
            raise TypeError(f"expected a Transformer or a TransformerConfig, got {type(model_or_config).__name__}")
        if batch < 1:
            raise SequenceError(f"a cache needs a batch of at least 1 sequence, got {batch}")
        if not 1 <= max_len <= config.max_seq_len:
            raise SequenceError(f"a cache holds between 1 and max_seq_len = {config.max_seq_len} tokens, "
                                f"asked for {max_len}")
        shape = (config.depth, batch, config.heads, max_len, config.head_dim)
        dtype = torch.float32 if dtype is None else dtype
        return cls(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype))

    @property
    def batch(self) -> int:
        return self.keys.shape[1]

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    @property
    def remaining(self) -> int:
        """How many more tokens fit."""
        return self.max_len - self.length

    def reset(self) -> None:
        """Forget every stored token (the memory is kept for reuse)."""
        self.length = 0
        self.modulation = None


def rotary_tables(max_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and signed ``sin`` tables ``[max_len, head_dim]`` of the rotate-half RoPE convention.

    Rotating ``x`` at position ``p`` is ``x * cos[p] + roll(x, head_dim / 2) * sin[p]``: the sign of the first
    half of ``sin`` is flipped so that one ``roll`` replaces the usual split, negate and concatenate.
    """
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
    sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)
    return cos.float(), sin.float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the last dimension of ``x`` by the (broadcastable) ``cos`` / signed ``sin`` tables."""
    return torch.addcmul(x * cos, torch.roll(x, x.shape[-1] // 2, dims=-1), sin)


class Block(nn.Module):
    """Pre-norm causal self-attention with RoPE, then a pre-norm GELU feed-forward network."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.attn_norm = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.attn_out = nn.Linear(config.dim, config.dim, bias=False)
        self.ffn_norm = nn.LayerNorm(config.dim)
        self.ffn_in = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.ffn_out = nn.Linear(config.ffn_dim, config.dim, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.attn_dropout = config.dropout

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's weight matrices: qkv, attention output, FFN in, FFN out."""
        return self.qkv.weight, self.attn_out.weight, self.ffn_in.weight, self.ffn_out.weight

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None, layer: int,
                start: int, matrices: tuple[torch.Tensor, ...] | None = None,
                modulation: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, T, dim] at positions ``start..start+T-1``; ``cos``/``sin`` are [1, T, 1, 1, head_dim].

        ``modulation`` ([B, 4, 1, dim]: scale and shift after the attention norm, then after the FFN norm) adapts
        the two LayerNorms to a global condition. ``matrices`` replaces the block's own weight matrices (copies in
        another dtype: the matrix products run in that dtype, everything else in ``x``'s). Calls the functional
        ops directly and skips dropout outside training: one-token decoding steps are dominated by per-op
        overhead and weight reads, not arithmetic.
        """
        batch, steps, dim = x.shape
        qkv_w, out_w, ffn_in_w, ffn_out_w = self.matrices() if matrices is None else matrices
        train_dropout = self.training and self.attn_dropout > 0
        h = F.layer_norm(x, (dim,), self.attn_norm.weight, self.attn_norm.bias, self.attn_norm.eps)
        if modulation is not None:
            h = torch.addcmul(modulation[:, 1], h, 1.0 + modulation[:, 0])
        qkv = F.linear(h.to(qkv_w.dtype), qkv_w).view(batch, steps, 3, self.heads, self.head_dim)
        qk = apply_rotary(qkv[:, :, :2], cos, sin).to(x.dtype)  # [B, T, 2, H, hd], rotated in float32 (cos/sin)
        q = qk[:, :, 0].transpose(1, 2)  # [B, H, T, hd]
        k = qk[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)  # in the matrices' dtype until it is stored or used
        mask = None
        causal = steps > 1
        if cache is not None:
            end = start + steps
            cache.keys[layer, :, :, start:end] = k
            cache.values[layer, :, :, start:end] = v
            k = cache.keys[layer, :, :, :end]
            v = cache.values[layer, :, :, :end]
            if start > 0 and steps > 1:  # new tokens see the whole cache and, causally, each other
                mask = torch.ones(steps, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                causal = False
        else:
            v = v.to(x.dtype)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                  dropout_p=self.attn_dropout if train_dropout else 0.0)
        flat = self._residual(x.reshape(batch * steps, dim), attended.transpose(1, 2).reshape(batch * steps, dim),
                              out_w, train_dropout)
        h = F.layer_norm(flat, (dim,), self.ffn_norm.weight, self.ffn_norm.bias, self.ffn_norm.eps)
        if modulation is not None:
            h = torch.addcmul(modulation[:, 3], h.view(batch, steps, dim), 1.0 + modulation[:, 2]).view(-1, dim)
        h = F.gelu(F.linear(h.to(ffn_in_w.dtype), ffn_in_w), approximate="tanh")
        return self._residual(flat, h, ffn_out_w, train_dropout).view(batch, steps, dim)

    def _residual(self, flat: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, train_dropout: bool
                  ) -> torch.Tensor:
        """``flat + dropout(inputs @ weight.T)``, fused into one ``addmm`` in plain same-dtype inference."""
        if train_dropout:
            return flat + self.dropout(F.linear(inputs, weight))
        if weight.dtype != flat.dtype or self.training or autocast_enabled(flat.device.type):
            return flat + F.linear(inputs.to(weight.dtype), weight).to(flat.dtype)  # the sum stays in flat's dtype
        return torch.addmm(flat, inputs.to(flat.dtype), weight.t())


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (any torch >= 2.2)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


class PrefixModulation(nn.Module):
    """The mean embedding of a sequence's condition prefix -> a scale and a shift for each block's two norms.

    ``embedded`` [B, P, dim] -> ``[B, depth, 4, 1, dim]``: the mean over P, a LayerNorm (token embeddings are
    small, about 0.02, and a mean of P of them smaller still: unnormalised, the path would hardly train), then
    ``dim -> rank -> depth x 4 x dim`` with a SiLU between. The last layer starts at zero, so the modulation starts
    as the identity.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.depth = config.depth
        self.dim = config.dim
        self.norm = nn.LayerNorm(config.dim)
        self.down = nn.Linear(config.dim, config.modulation_rank)
        self.up = nn.Linear(config.modulation_rank, config.depth * 4 * config.dim)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        nn.init.normal_(self.down.weight, std=1.0 / math.sqrt(self.dim))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        pooled = self.norm(embedded.mean(dim=1))
        out = self.up(F.silu(self.down(pooled)))
        return out.view(embedded.shape[0], self.depth, 4, 1, self.dim)


class DecodingWeights:
    """Copies of a model's weight matrices in another dtype, for faster decoding (weight-only half precision).

    On a CPU, a one-token step mostly waits for the weights to arrive from memory: float16 copies halve the bytes
    and make the steps about twice as fast, while the norms, attention, the cache and the residual stream stay
    in the model's dtype (logits move by about 1e-3). CPUs multiply float16 matrices quickly only in
    matrix-vector shapes, so a forward with more than ``max_rows`` token rows (batch x new tokens: a prefill,
    an uncached pass) uses the model's own weights instead; ``max_rows`` defaults to 4 on a CPU and to no limit
    elsewhere. The copies are a snapshot: build them after training or loading.
    """

    def __init__(self, model: Transformer, dtype: torch.dtype, max_rows: int | None = -1) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"decoding weights need a floating-point dtype, got {dtype}")
        self.dtype = dtype
        on_cpu = model.embedding.weight.device.type == "cpu"
        self.max_rows = (CPU_HALF_MAX_ROWS if on_cpu else None) if max_rows == -1 else max_rows
        with torch.no_grad():
            self.blocks = [tuple(w.detach().to(dtype) for w in block.matrices()) for block in model.blocks]
            head = model.embedding.weight if model.head is None else model.head.weight
            self.head = head.detach().to(dtype)

    def applies_to(self, rows: int) -> bool:
        """Whether a forward over ``rows`` token rows uses these copies."""
        return self.max_rows is None or rows <= self.max_rows


class Transformer(nn.Module):
    """Token ids ``[B, T]`` -> next-token logits ``[B, T, vocab_size]`` (optionally through a :class:`KVCache`)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.aligned_embedding = (nn.Embedding(config.aligned_vocab, config.dim, padding_idx=0)
                                  if config.aligned_vocab else None)
        self.modulation = PrefixModulation(config) if config.prefix_modulation else None
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(config.dim)
        self.head = None if config.tie_embeddings else nn.Linear(config.dim, config.vocab_size, bias=False)
        self._rotary: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    def rotary(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 RoPE tables on ``device`` (kept out of the state dict and out of ``.half()``)."""
        tables = self._rotary.get(device)
        if tables is None:
            cos, sin = rotary_tables(self.config.max_seq_len, self.config.head_dim, self.config.rope_base)
            tables = self._rotary[device] = (cos.to(device), sin.to(device))
        return tables

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02) weights, residual output projections scaled by 1/sqrt(2 depth).

        The initial logits are small (std about 0.02 sqrt(dim)), so the initial loss is close to ln(vocab).
        """
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.aligned_embedding is not None:
            nn.init.zeros_(self.aligned_embedding.weight)
        if self.modulation is not None:
            self.modulation.reset_parameters()
        residual_std = 0.02 / math.sqrt(2 * self.config.depth)
        for block in self.blocks:
            nn.init.normal_(block.attn_out.weight, std=residual_std)
            nn.init.normal_(block.ffn_out.weight, std=residual_std)

    def num_parameters(self) -> int:
        """Trainable parameters (a tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def check_tokens(self, tokens: torch.Tensor, cache: KVCache | None = None) -> None:
        """Raise :class:`SequenceError` unless ``tokens`` is a valid ``[B, T]`` id tensor for this model/cache."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise SequenceError(f"tokens must be a [batch, time] tensor, got {got}")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise SequenceError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        batch, steps = tokens.shape
        if steps < 1 or batch < 1:
            raise SequenceError(f"tokens must hold at least one token per row and one row, got {tuple(tokens.shape)}")
        vocab = self.config.vocab_size
        low, high = (int(v) for v in torch.aminmax(tokens))
        if low < 0 or high >= vocab:
            bad = low if low < 0 else high
            raise SequenceError(f"token id {bad} is outside the vocabulary [0, {vocab})")
        start = 0 if cache is None else cache.length
        if start + steps > self.config.max_seq_len:
            raise SequenceError(f"sequence of {start + steps} tokens exceeds max_seq_len = {self.config.max_seq_len}")
        if cache is not None:
            if cache.batch != batch:
                raise SequenceError(f"the cache holds {cache.batch} sequences but tokens has {batch} rows")
            if steps > cache.remaining:
                raise SequenceError(f"{steps} new tokens do not fit in the cache: {cache.length} of {cache.max_len} "
                                    "positions are used")
            expected = (self.config.depth, batch, self.config.heads, cache.max_len, self.config.head_dim)
            if tuple(cache.keys.shape) != expected:
                raise SequenceError(f"the cache was allocated for another model: shape {tuple(cache.keys.shape)}, "
                                    f"expected {expected}")

    def check_aligned(self, aligned: torch.Tensor | None, tokens: torch.Tensor | None = None) -> None:
        """Raise :class:`SequenceError` unless ``aligned`` is None or valid aligned ids (of ``tokens``' shape,
        when given)."""
        if aligned is None:
            return
        if self.aligned_embedding is None:
            raise SequenceError("this model takes no aligned condition (aligned_vocab is 0)")
        if not isinstance(aligned, torch.Tensor) or (tokens is not None and aligned.shape != tokens.shape):
            got = tuple(aligned.shape) if isinstance(aligned, torch.Tensor) else type(aligned).__name__
            want = "" if tokens is None else f" {tuple(tokens.shape)}"
            raise SequenceError(f"aligned ids must be a tensor of the tokens' shape{want}, got {got}")
        if aligned.dtype.is_floating_point or aligned.dtype == torch.bool:
            raise SequenceError(f"aligned ids must be integers, got dtype {aligned.dtype}")
        low, high = (int(v) for v in torch.aminmax(aligned))
        if low < 0 or high >= self.config.aligned_vocab:
            raise SequenceError(f"aligned id {low if low < 0 else high} is outside [0, {self.config.aligned_vocab})")

    def _modulation(self, embedded: torch.Tensor, cache: KVCache | None, start: int) -> torch.Tensor | None:
        """The blocks' modulation from the first ``prefix_modulation`` tokens: computed at position 0 (and kept in
        the cache), read back from the cache for later tokens."""
        if self.modulation is None:
            return None
        prefix = self.config.prefix_modulation
        if start == 0:
            if embedded.shape[1] < prefix:
                raise SequenceError(f"this model takes its first {prefix} tokens as a condition: the first forward "
                                    f"of a sequence needs at least {prefix} tokens, got {embedded.shape[1]}")
            modulation = self.modulation(embedded[:, :prefix]).to(embedded.dtype)
            if cache is not None:
                cache.modulation = modulation
            return modulation
        if cache is None or cache.modulation is None:
            raise SequenceError("the cache holds no modulation: feed the condition prefix through it first")
        return cache.modulation

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, *, last_only: bool = False,
                vocab_range: tuple[int, int] | None = None, weights: DecodingWeights | None = None,
                check: bool = True, aligned: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[B, T, vocab]`` for ``tokens`` ``[B, T]``.

        Without ``cache`` the tokens sit at positions ``0..T-1`` under causal attention. With a cache holding
        ``L`` tokens they sit at ``L..L+T-1``, attend to the whole cache, and are appended to it.
        ``last_only`` gives only the last token's logits (``[B, 1, vocab]``); ``vocab_range = (lo, hi)`` gives
        only the logits of ids ``lo..hi-1`` (``[..., hi - lo]``, the head reads only those embedding rows).
        ``weights`` (:class:`DecodingWeights`) replaces the weight matrices for inference. ``check=False``
        skips input validation (for callers that produce the ids; saves a device sync per step). ``aligned``
        (``[B, T]`` ids below ``aligned_vocab``, 0 = none) adds the aligned embedding position by position.
        With ``prefix_modulation`` = P, the first forward of a sequence must hold its first P tokens; their
        modulation is kept in ``cache`` for the later ones (and, inside the prefix, each of the P positions is
        modulated by all P: they are a condition and carry no loss).
        """
        if check:
            self.check_tokens(tokens, cache)
            self.check_aligned(aligned, tokens)
            if vocab_range is not None and not 0 <= vocab_range[0] < vocab_range[1] <= self.config.vocab_size:
                raise SequenceError(f"vocab_range {tuple(vocab_range)} is not a non-empty range within "
                                    f"[0, {self.config.vocab_size})")
        steps = tokens.shape[1]
        start = 0 if cache is None else cache.length
        if weights is not None and not weights.applies_to(tokens.shape[0] * steps):
            weights = None
        x = self.embedding(tokens)
        modulation = self._modulation(x, cache, start)
        if aligned is not None and self.aligned_embedding is not None:
            x = x + self.aligned_embedding(aligned) * (aligned > 0).unsqueeze(-1).to(x.dtype)  # 0: none, always
        if self.training:
            x = self.embed_dropout(x)
        cos, sin = self.rotary(x.device)
        cos = cos[start:start + steps].view(1, steps, 1, 1, -1)
        sin = sin[start:start + steps].view(1, steps, 1, 1, -1)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer, start, None if weights is None else weights.blocks[layer],
                      None if modulation is None else modulation[:, layer])
        if cache is not None:
            cache.length = start + steps
        if last_only:
            x = x[:, -1:]
        x = F.layer_norm(x, (x.shape[-1],), self.final_norm.weight, self.final_norm.bias, self.final_norm.eps)
        if weights is not None:
            weight = weights.head
        else:
            weight = self.embedding.weight if self.head is None else self.head.weight
        if vocab_range is not None:
            weight = weight[vocab_range[0]:vocab_range[1]]
        return F.linear(x.to(weight.dtype), weight).to(x.dtype)
