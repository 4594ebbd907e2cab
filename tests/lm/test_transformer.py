from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from musiclm.config import from_dict, to_dict
from musiclm.errors import ConfigError, MusicLMError
from musiclm.lm.config import TRANSFORMER_PRESETS, TransformerConfig, transformer_config
from musiclm.lm.transformer import (
    DecodingWeights,
    KVCache,
    SequenceError,
    Transformer,
    apply_rotary,
    rotary_tables,
)

VOCAB = 50


def tiny_config(**overrides) -> TransformerConfig:
    values = {"vocab_size": VOCAB, "dim": 32, "depth": 2, "heads": 2, "ffn_dim": 64, "max_seq_len": 64}
    return TransformerConfig(**{**values, **overrides})


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(**overrides)).eval()


def random_tokens(batch: int, steps: int, seed: int = 0, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ config
def test_presets_and_overrides():
    small = transformer_config()
    assert (small.dim, small.depth, small.heads, small.ffn_dim) == (256, 6, 4, 1024)
    paper = transformer_config("paper")
    assert (paper.dim, paper.depth, paper.heads, paper.ffn_dim, paper.dropout) == (1024, 24, 16, 4096, 0.1)
    custom = transformer_config("small", vocab_size=1234, max_seq_len=100)
    assert custom.vocab_size == 1234 and custom.max_seq_len == 100 and custom.dim == 256
    assert set(TRANSFORMER_PRESETS) >= {"small", "paper"}


def test_config_round_trips_through_dicts():
    config = transformer_config("paper", vocab_size=777, tie_embeddings=False)
    assert from_dict(TransformerConfig, to_dict(config)) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dim": 30, "heads": 4}, "must divide dim"),
        ({"dim": 36, "heads": 4}, "even"),  # head dim 9
        ({"depth": 0}, "depth"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"max_seq_len": 0}, "max_seq_len"),
        ({"dropout": 1.0}, "dropout"),
        ({"rope_base": 0.5}, "rope_base"),
    ],
)
def test_config_validation_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides).validate()
    with pytest.raises(ConfigError):
        Transformer(tiny_config(**overrides))


def test_transformer_config_rejects_unknown_names():
    with pytest.raises(ConfigError, match="no transformer preset"):
        transformer_config("huge")
    with pytest.raises(ConfigError, match="unknown key"):
        transformer_config("small", width=3)
    with pytest.raises(ConfigError, match="integer"):
        transformer_config("small", dim=256.5)


# ------------------------------------------------------------------------------------------------ model
def test_output_shape_and_parameter_count():
    tied, untied = tiny_model(), tiny_model(tie_embeddings=False)
    logits = tied(random_tokens(3, 7))
    assert logits.shape == (3, 7, VOCAB) and logits.dtype == torch.float32
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 32
    assert not any("rope" in name or "rotary" in name for name in tied.state_dict())


def test_initial_loss_is_near_log_vocab():
    for tie in (True, False):
        model = tiny_model(tie_embeddings=tie, vocab_size=500, max_seq_len=128)
        tokens = random_tokens(8, 64, vocab=500)
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 500), tokens[:, 1:].reshape(-1)).item()
        assert abs(loss - math.log(500)) < 0.1, (tie, loss)


def test_attention_is_causal():
    model = tiny_model()
    tokens = random_tokens(2, 12)
    changed = tokens.clone()
    changed[:, 8] = (changed[:, 8] + 1) % VOCAB
    a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=0)
    assert (a[:, 8:] - b[:, 8:]).abs().max() > 1e-4


def test_cached_prefill_and_steps_equal_uncached_forward():
    model = tiny_model(seed=1)
    tokens = random_tokens(3, 20, seed=1)
    full = model(tokens)
    cache = KVCache.allocate(model, batch=3, max_len=20)
    parts = [model(tokens[:, :6], cache), model(tokens[:, 6:9], cache)]  # prefill, then a chunk behind a cache
    parts += [model(tokens[:, i:i + 1], cache) for i in range(9, 20)]
    assert cache.length == 20 and cache.remaining == 0
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-5)


def test_last_only_and_vocab_range_select_from_the_full_logits():
    model = tiny_model(tie_embeddings=False)
    tokens = random_tokens(2, 9)
    full = model(tokens)
    torch.testing.assert_close(model(tokens, last_only=True), full[:, -1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(tokens, vocab_range=(10, 20)), full[..., 10:20], rtol=0, atol=1e-6)
    with pytest.raises(SequenceError, match="vocab_range"):
        model(tokens, vocab_range=(20, 20))


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = rotary_tables(64, 8, 10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> float:
        return float(apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n]))

    assert score(5, 2) == pytest.approx(score(40, 37), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert float(apply_rotary(q, cos[17], sin[17]).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_dropout_only_in_training_mode():
    model = tiny_model(dropout=0.3)
    tokens = random_tokens(2, 10)
    torch.testing.assert_close(model(tokens), model(tokens), rtol=0, atol=0)
    model.train()
    assert (model(tokens) - model(tokens)).abs().max() > 1e-4


def test_state_dict_round_trip():
    model, other = tiny_model(seed=0), tiny_model(seed=5)
    tokens = random_tokens(2, 10)
    assert (model(tokens) - other(tokens)).abs().max() > 1e-4
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(tokens), model(tokens), rtol=0, atol=0)


def test_half_precision_cache_follows_the_model_dtype():
    model = tiny_model().half()
    cache = KVCache.allocate(model, batch=1, max_len=8)
    assert cache.keys.dtype == torch.float16 and cache.keys.shape == (2, 1, 2, 8, 16)
    tokens = random_tokens(1, 8)
    steps = torch.cat([model(tokens[:, :4], cache)] + [model(tokens[:, i:i + 1], cache) for i in range(4, 8)], 1)
    torch.testing.assert_close(steps.float(), model(tokens).float(), rtol=0, atol=1e-2)


def test_half_precision_decoding_weights_stay_close():
    model = tiny_model(seed=3, tie_embeddings=False)
    tokens = random_tokens(2, 12)
    reference = model(tokens)
    everywhere = DecodingWeights(model, torch.float16, max_rows=None)
    assert everywhere.head.dtype == torch.float16 and len(everywhere.blocks) == 2
    half = model(tokens, weights=everywhere)
    assert half.dtype == torch.float32 and (half - reference).abs().max() > 0
    torch.testing.assert_close(half, reference, rtol=0, atol=5e-3)

    steps_only = DecodingWeights(model, torch.float16)  # on a CPU: only forwards of <= 4 token rows
    assert steps_only.applies_to(4) and not steps_only.applies_to(5)
    cache = KVCache.allocate(model, batch=2, max_len=12)
    prefill = model(tokens[:, :5], cache, weights=steps_only)
    torch.testing.assert_close(prefill, reference[:, :5], rtol=0, atol=1e-5)  # 10 rows: the model's own weights
    steps = [model(tokens[:, i:i + 1], cache, weights=steps_only) for i in range(5, 12)]
    assert cache.keys.dtype == torch.float32
    torch.testing.assert_close(torch.cat(steps, 1), reference[:, 5:], rtol=0, atol=5e-3)


def test_model_learns_a_copy_task():
    # one thread: with two, float reductions differ and 100 steps of this tiny run land either side of the bar
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _learn_copy_task()
    finally:
        torch.set_num_threads(threads)


def _learn_copy_task():
    torch.manual_seed(0)
    model = Transformer(tiny_config(dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        half = torch.randint(0, VOCAB, (32, 8), generator=generator)
        sequence = torch.cat([half, half], dim=1)  # the second half repeats the first: only copying helps
        logits = model(sequence[:, :-1])
        loss = F.cross_entropy(logits[:, 7:].reshape(-1, VOCAB), sequence[:, 8:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(VOCAB), abs=0.15)
    assert losses[-1] < 0.6 * math.log(VOCAB), losses[-1]


# ------------------------------------------------------------------------------------------------ errors
def test_bad_tokens_are_clear_errors():
    model = tiny_model()
    with pytest.raises(SequenceError, match="outside the vocabulary"):
        model(torch.tensor([[1, 2, VOCAB]]))
    with pytest.raises(SequenceError, match="outside the vocabulary"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(SequenceError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(SequenceError, match=r"\[batch, time\]"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(MusicLMError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_cache_limits_are_clear_errors():
    model = tiny_model()
    with pytest.raises(SequenceError, match="max_seq_len"):
        KVCache.allocate(model, batch=1, max_len=65)
    cache = KVCache.allocate(model, batch=2, max_len=5)
    with pytest.raises(SequenceError, match="rows"):
        model(torch.zeros(1, 3, dtype=torch.long), cache)
    model(torch.zeros(2, 4, dtype=torch.long), cache)
    with pytest.raises(SequenceError, match="do not fit"):
        model(torch.zeros(2, 2, dtype=torch.long), cache)
    other = KVCache.allocate(tiny_model(depth=3), batch=2, max_len=5)
    with pytest.raises(SequenceError, match="another model"):
        model(torch.zeros(2, 1, dtype=torch.long), other)
    cache.reset()
    assert cache.length == 0 and model(torch.zeros(2, 5, dtype=torch.long), cache).shape == (2, 5, VOCAB)


# ------------------------------------------------------------------------------------- aligned condition
def test_aligned_embedding_starts_at_zero_and_id_zero_stays_neutral():
    model = tiny_model(aligned_vocab=5)
    assert torch.count_nonzero(model.aligned_embedding.weight) == 0
    plain = tiny_model()
    model.load_state_dict({**plain.state_dict(), "aligned_embedding.weight": model.aligned_embedding.weight})
    tokens = random_tokens(2, 10)
    none = torch.zeros_like(tokens)
    assert torch.equal(model(tokens), model(tokens, aligned=none))
    torch.testing.assert_close(model(tokens, aligned=torch.ones_like(tokens)), plain(tokens))  # a zero table
    assert model.aligned_embedding.padding_idx == 0  # training never moves the "none" row
    with torch.no_grad():
        model.aligned_embedding.weight.normal_()  # even a "none" row that was moved by hand adds nothing
    ids = torch.randint(1, 5, tokens.shape, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(model(tokens, aligned=ids), model(tokens))
    torch.testing.assert_close(model(tokens, aligned=none), plain(tokens))


def test_aligned_ids_through_the_cache_match_one_pass():
    model = tiny_model(aligned_vocab=5)
    with torch.no_grad():
        model.aligned_embedding.weight.normal_()
    tokens = random_tokens(2, 12)
    ids = torch.randint(0, 5, tokens.shape, generator=torch.Generator().manual_seed(2))
    full = model(tokens, aligned=ids)
    cache = KVCache.allocate(model, 2, 12)
    first = model(tokens[:, :7], cache, aligned=ids[:, :7])
    steps = [model(tokens[:, i:i + 1], cache, aligned=ids[:, i:i + 1]) for i in range(7, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("aligned, message", [
    (torch.zeros(2, 9, dtype=torch.long), "shape"),
    (torch.full((2, 10), 5), "outside"),
    (torch.zeros(2, 10), "integers"),
])
def test_bad_aligned_ids_are_clear_errors(aligned, message):
    with pytest.raises(SequenceError, match=message):
        tiny_model(aligned_vocab=5)(random_tokens(2, 10), aligned=aligned)
    with pytest.raises(SequenceError, match="no aligned"):
        tiny_model()(random_tokens(2, 10), aligned=torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ConfigError, match="aligned_vocab"):
        tiny_config(aligned_vocab=-1).validate()


# ------------------------------------------------------------------------------------------------ prefix modulation
def modulated_model(seed: int = 0) -> Transformer:
    """A model whose first 3 tokens modulate every block, with a non-zero (trained-like) modulation."""
    model = tiny_model(seed, prefix_modulation=3, modulation_rank=4)
    with torch.no_grad():
        model.modulation.up.weight.normal_(std=0.5)
    return model


def test_prefix_modulation_starts_as_the_identity():
    model = tiny_model(prefix_modulation=3, modulation_rank=4)
    assert torch.count_nonzero(model.modulation.up.weight) == 0
    plain = tiny_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("modulation.")}
    plain.load_state_dict(state)
    tokens = random_tokens(2, 10)
    assert torch.equal(model(tokens), plain(tokens))


def test_prefix_modulation_carries_the_prefix_to_every_position():
    model = modulated_model()
    tokens = random_tokens(2, 12)
    other = tokens.clone()
    other[:, 1] = (other[:, 1] + 1) % VOCAB
    scales = model.modulation(model.embedding(tokens[:, :3]))
    assert scales.shape == (2, 2, 4, 1, 32)
    assert not torch.allclose(scales, model.modulation(model.embedding(other[:, :3])))
    moved = (model(other) - model(tokens))[:, 3:].abs().amax(dim=-1)
    assert bool((moved > 1e-4).all())
    # tokens after the prefix do not modulate: causality holds for them
    later = tokens.clone()
    later[:, 5] = (later[:, 5] + 1) % VOCAB
    torch.testing.assert_close(model(later)[:, :5], model(tokens)[:, :5])


def test_prefix_modulation_through_the_cache_matches_one_pass():
    model = modulated_model()
    tokens = random_tokens(2, 12)
    full = model(tokens)
    cache = KVCache.allocate(model, 2, 12)
    first = model(tokens[:, :5], cache)
    assert cache.modulation is not None
    steps = [model(tokens[:, i:i + 1], cache) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, atol=1e-5, rtol=1e-4)
    cache.reset()
    assert cache.modulation is None
    with pytest.raises(SequenceError, match="needs at least 3 tokens"):
        model(tokens[:, :2], cache)
    cache.reset()
    cache.length = 4  # a cache filled by another path holds no modulation
    with pytest.raises(SequenceError, match="holds no modulation"):
        model(tokens[:, 4:5], cache)


@pytest.mark.parametrize("overrides, message", [
    ({"prefix_modulation": -1}, "prefix_modulation"),
    ({"prefix_modulation": 3, "modulation_rank": 0}, "modulation_rank"),
    ({"prefix_modulation": 65}, "exceeds max_seq_len"),
])
def test_bad_prefix_modulation_settings_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides).validate()
