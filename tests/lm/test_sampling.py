from __future__ import annotations

import math

import pytest
import torch

from musiclm.errors import ConfigError
from musiclm.lm.config import TransformerConfig
from musiclm.lm.sampling import SamplingParams, generate_tokens, guided_logits, sample_from_logits
from musiclm.lm.transformer import SequenceError, Transformer

VOCAB = 50


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    values = {"vocab_size": VOCAB, "dim": 32, "depth": 2, "heads": 2, "ffn_dim": 64, "max_seq_len": 64}
    return Transformer(TransformerConfig(**{**values, **overrides})).eval()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prefixes(batch: int = 3, length: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A prefix and its 'unconditional' twin whose first 3 tokens (the condition) are null tokens (id 0)."""
    prefix = torch.randint(1, VOCAB, (batch, length), generator=gen(seed))
    uncond = prefix.clone()
    uncond[:, :3] = 0
    return prefix, uncond


def full_ranges(steps: int) -> torch.Tensor:
    return torch.tensor([[0, VOCAB]]).repeat(steps, 1)


def entropy(samples: torch.Tensor) -> float:
    p = torch.bincount(samples.flatten(), minlength=VOCAB).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


# ------------------------------------------------------------------------------------------------ params
@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SamplingParams(temperature=-0.1), "temperature"),
        (SamplingParams(temperature=float("nan")), "temperature"),
        (SamplingParams(top_k=-1), "top_k"),
        (SamplingParams(top_k=2.5), "top_k"),  # type: ignore[arg-type]
        (SamplingParams(top_p=0.0), "top_p"),
        (SamplingParams(top_p=1.5), "top_p"),
        (SamplingParams(cfg_scale=-1.0), "cfg_scale"),
    ],
)
def test_bad_params_are_clear_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        params.validate()
    with pytest.raises(ConfigError, match=message):
        generate_tokens(tiny_model(), prefixes()[0], full_ranges(2), params, gen(0))


def test_neutral_params_are_valid():
    for params in (SamplingParams(), SamplingParams(temperature=0, top_k=0, top_p=1.0, cfg_scale=0.0)):
        params.validate()


# ------------------------------------------------------------------------------------------------ sample_from_logits
def test_greedy_is_argmax_and_top_k_1_and_tiny_top_p_match_it():
    logits = torch.randn(16, VOCAB, generator=gen(0))
    best = logits.argmax(dim=-1)
    assert torch.equal(sample_from_logits(logits, SamplingParams(temperature=0), gen(0)), best)
    for seed in range(5):
        assert torch.equal(sample_from_logits(logits, SamplingParams(top_k=1), gen(seed)), best)
        assert torch.equal(sample_from_logits(logits, SamplingParams(top_p=1e-6), gen(seed)), best)
        assert torch.equal(sample_from_logits(logits, SamplingParams(temperature=3.0, top_k=1), gen(seed)), best)


def test_sampling_follows_the_softmax_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -30.0]).repeat(20_000, 1)
    draws = sample_from_logits(logits, SamplingParams(), gen(1))
    freq = torch.bincount(draws, minlength=5).float() / draws.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0], dim=0), rtol=0, atol=0.01)
    assert freq[4] == 0


def test_top_k_and_top_p_restrict_the_candidates():
    logits = torch.tensor([3.0, 2.5, 2.0, 0.0, -1.0, -2.0]).repeat(5000, 1)
    top_k = sample_from_logits(logits, SamplingParams(top_k=2), gen(0))
    assert set(top_k.tolist()) == {0, 1}
    probs = torch.softmax(logits[0], dim=0)  # 0.49, 0.30, 0.18, ...: the 0.75 nucleus is {0, 1}, 0.8 adds 2
    assert set(sample_from_logits(logits, SamplingParams(top_p=0.75), gen(0)).tolist()) == {0, 1}
    assert set(sample_from_logits(logits, SamplingParams(top_p=0.8), gen(0)).tolist()) == {0, 1, 2}
    assert probs[:2].sum() < 0.8 < probs[:3].sum()
    both = sample_from_logits(logits, SamplingParams(top_k=3, top_p=0.75), gen(0))
    assert set(both.tolist()) == {0, 1}


def test_temperature_changes_the_distribution():
    logits = torch.randn(1, VOCAB, generator=gen(3)).repeat(4000, 1)
    cold = sample_from_logits(logits, SamplingParams(temperature=0.5), gen(0))
    hot = sample_from_logits(logits, SamplingParams(temperature=2.0), gen(0))
    assert entropy(hot) > entropy(cold) + 0.2
    assert entropy(hot) < math.log(VOCAB)


def test_sampling_is_determined_by_the_generator():
    logits = torch.randn(64, VOCAB, generator=gen(0))
    a = sample_from_logits(logits, SamplingParams(), gen(7))
    assert torch.equal(a, sample_from_logits(logits, SamplingParams(), gen(7)))
    assert not torch.equal(a, sample_from_logits(logits, SamplingParams(), gen(8)))


def test_guidance_formula_on_hand_made_logits():
    cond = torch.tensor([[1.0, 2.0, 0.0]])
    uncond = torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(guided_logits(cond, uncond, 3.0), torch.tensor([[1.0, 6.0, -2.0]]))
    torch.testing.assert_close(guided_logits(cond, uncond, 1.0), cond)
    torch.testing.assert_close(guided_logits(cond, uncond, 0.0), uncond)


# ------------------------------------------------------------------------------------------------ generate_tokens
@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(temperature=0.7, top_k=10, top_p=0.9)])
def test_cached_and_uncached_generation_give_identical_tokens(params, cfg_scale):
    model = tiny_model(seed=2)
    prefix, uncond = prefixes()
    params = SamplingParams(params.temperature, params.top_k, params.top_p, cfg_scale)
    for seed in range(4):
        cached = generate_tokens(model, prefix, full_ranges(30), params, gen(seed), uncond_prefix=uncond)
        uncached = generate_tokens(model, prefix, full_ranges(30), params, gen(seed), uncond_prefix=uncond,
                                   use_cache=False)
        assert cached.shape == (3, 30) and cached.dtype == torch.long
        assert torch.equal(cached, uncached), seed


def test_prefix_modulation_samples_the_same_cached_and_uncached():
    """A model whose 3 condition tokens modulate every block: cached and uncached sampling agree under CFG
    (the unconditional rows get the modulation of their own, null, condition)."""
    model = tiny_model(seed=3, prefix_modulation=3, modulation_rank=4)
    with torch.no_grad():
        model.modulation.up.weight.normal_(std=0.5)
    prefix, uncond = prefixes()
    for cfg_scale in (1.0, 3.0):
        params = SamplingParams(cfg_scale=cfg_scale)
        for seed in range(3):
            cached = generate_tokens(model, prefix, full_ranges(25), params, gen(seed), uncond_prefix=uncond)
            uncached = generate_tokens(model, prefix, full_ranges(25), params, gen(seed), uncond_prefix=uncond,
                                       use_cache=False)
            assert torch.equal(cached, uncached), (cfg_scale, seed)


def test_decoding_weight_dtype():
    model = tiny_model(seed=6)
    prefix, uncond = prefixes()
    params = SamplingParams(cfg_scale=2.0)
    exact = generate_tokens(model, prefix, full_ranges(20), params, gen(0), uncond_prefix=uncond)
    same = generate_tokens(model, prefix, full_ranges(20), params, gen(0), uncond_prefix=uncond,
                           weight_dtype=torch.float32)
    assert torch.equal(exact, same)
    agree = []
    for seed in range(3):
        half = generate_tokens(model, prefix[:1], full_ranges(20), params, gen(seed), uncond_prefix=uncond[:1],
                               weight_dtype=torch.float16)
        full = generate_tokens(model, prefix[:1], full_ranges(20), params, gen(seed), uncond_prefix=uncond[:1])
        agree.append((half == full).float().mean().item())
    assert sum(agree) / len(agree) > 0.8, agree  # logits move by ~1e-3: only rare near-tie draws change


def test_token_ranges_are_respected_on_every_step():
    model = tiny_model()
    ranges = torch.tensor([[0, 5], [5, 25], [25, 50], [7, 8]] * 5)
    for use_cache in (True, False):
        tokens = generate_tokens(model, prefixes(batch=4)[0], ranges, SamplingParams(temperature=2.0), gen(0),
                                 use_cache=use_cache)
        assert ((tokens >= ranges[:, 0]) & (tokens < ranges[:, 1])).all()
        assert (tokens[:, 3::4] == 7).all()


def test_forced_steps_emit_their_ids_and_the_rest_is_sampled_around_them():
    model = tiny_model(seed=3)
    prefix, uncond = prefixes()
    params = SamplingParams(cfg_scale=2.0)
    free = generate_tokens(model, prefix, full_ranges(12), params, gen(0), uncond_prefix=uncond)
    none_forced = torch.full((3, 12), -1)
    same = generate_tokens(model, prefix, full_ranges(12), params, gen(0), uncond_prefix=uncond, forced=none_forced)
    assert torch.equal(free, same)  # nothing forced: the plain draw
    forced = none_forced.clone()
    forced[:, ::3] = torch.randint(0, VOCAB, (3, 4), generator=gen(9))
    runs = [generate_tokens(model, prefix, full_ranges(12), params, gen(0), uncond_prefix=uncond, forced=forced,
                            use_cache=cache) for cache in (True, False)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, ::3], forced[:, ::3])
    # the first step is forced and its context changes every later draw: forcing really feeds the sequence
    assert not torch.equal(runs[0][:, 1:], free[:, 1:])
    # the step after a forced one is the model's draw given the forced token (greedy: its argmax)
    greedy = generate_tokens(model, prefix, full_ranges(2), SamplingParams(temperature=0), gen(0),
                             forced=torch.tensor([[5, -1]] * 3))
    expected = model(torch.cat([prefix, torch.full((3, 1), 5)], dim=1))[:, -1].argmax(dim=-1)
    assert torch.equal(greedy[:, 0], torch.full((3,), 5)) and torch.equal(greedy[:, 1], expected)


@pytest.mark.parametrize(("forced", "message"), [
    (torch.full((3, 5), -1), r"\[3, 4\]"),
    (torch.full((3, 4), -1.0), "integer"),
    (torch.tensor([[-1, -1, 30, -1]] * 3), "step 2 lie outside its range"),
    (torch.tensor([[-2, -1, -1, -1]] * 3), "step 0"),
])
def test_bad_forced_ids_are_clear_errors(forced, message):
    ranges = torch.tensor([[0, 10], [10, 20], [0, 10], [10, 20]])
    with pytest.raises(SequenceError, match=message):
        generate_tokens(tiny_model(), prefixes()[0], ranges, SamplingParams(), gen(0), forced=forced)


def test_greedy_generation_is_the_argmax_continuation():
    model = tiny_model(seed=4)
    prefix = prefixes(batch=2)[0]
    ranges = torch.tensor([[0, 50], [10, 20]] * 6)
    tokens = generate_tokens(model, prefix, ranges, SamplingParams(temperature=0), gen(0))
    sequence = prefix
    for lo, hi in ranges.tolist():
        best = model(sequence)[:, -1, lo:hi].argmax(dim=-1) + lo
        sequence = torch.cat([sequence, best[:, None]], dim=1)
    assert torch.equal(tokens, sequence[:, prefix.shape[1]:])
    assert torch.equal(tokens, generate_tokens(model, prefix, ranges, SamplingParams(temperature=0), gen(99)))


def test_generation_is_determined_by_the_seed():
    model = tiny_model()
    prefix = prefixes()[0]
    a = generate_tokens(model, prefix, full_ranges(20), SamplingParams(), gen(0))
    assert torch.equal(a, generate_tokens(model, prefix, full_ranges(20), SamplingParams(), gen(0)))
    assert not torch.equal(a, generate_tokens(model, prefix, full_ranges(20), SamplingParams(), gen(1)))


def test_classifier_free_guidance():
    model = tiny_model(seed=3)
    prefix, uncond = prefixes()
    plain = generate_tokens(model, prefix, full_ranges(20), SamplingParams(), gen(0))
    scale_one = generate_tokens(model, prefix, full_ranges(20), SamplingParams(cfg_scale=1.0), gen(0),
                                uncond_prefix=uncond)
    assert torch.equal(plain, scale_one)
    guided = generate_tokens(model, prefix, full_ranges(20), SamplingParams(cfg_scale=3.0), gen(0),
                             uncond_prefix=uncond)
    assert not torch.equal(plain, guided)
    same = generate_tokens(model, prefix, full_ranges(20), SamplingParams(cfg_scale=3.0), gen(0),
                           uncond_prefix=prefix)  # identical halves: guidance has nothing to amplify
    assert torch.equal(plain, same)
    with pytest.raises(ConfigError, match="uncond_prefix"):
        generate_tokens(model, prefix, full_ranges(2), SamplingParams(cfg_scale=3.0), gen(0))
    with pytest.raises(SequenceError, match="shape"):
        generate_tokens(model, prefix, full_ranges(2), SamplingParams(cfg_scale=3.0), gen(0),
                        uncond_prefix=uncond[:, 1:])


def test_greedy_guidance_matches_the_formula():
    model = tiny_model(seed=5)
    prefix, uncond = prefixes(batch=2)
    tokens = generate_tokens(model, prefix, full_ranges(5), SamplingParams(temperature=0, cfg_scale=2.5), gen(0),
                             uncond_prefix=uncond)
    cond_seq, uncond_seq = prefix, uncond
    for _ in range(5):
        c, u = model(cond_seq)[:, -1], model(uncond_seq)[:, -1]
        best = (u + 2.5 * (c - u)).argmax(dim=-1, keepdim=True)
        cond_seq, uncond_seq = torch.cat([cond_seq, best], 1), torch.cat([uncond_seq, best], 1)
    assert torch.equal(tokens, cond_seq[:, prefix.shape[1]:])


def test_progress_and_training_mode_are_handled():
    model = tiny_model(dropout=0.5)
    model.train()
    calls: list[int] = []
    prefix = prefixes()[0]
    tokens = generate_tokens(model, prefix, full_ranges(7), SamplingParams(), gen(0), progress=calls.append)
    assert calls == list(range(1, 8))
    assert model.training
    model.eval()
    assert torch.equal(tokens, generate_tokens(model, prefix, full_ranges(7), SamplingParams(), gen(0)))
    assert not model.training


def test_bad_inputs_are_clear_errors():
    model = tiny_model()
    prefix = prefixes()[0]
    with pytest.raises(SequenceError, match="token_ranges"):
        generate_tokens(model, prefix, torch.tensor([[0, 51]]), SamplingParams(), gen(0))
    with pytest.raises(SequenceError, match="token_ranges"):
        generate_tokens(model, prefix, torch.tensor([[5, 5]]), SamplingParams(), gen(0))
    with pytest.raises(SequenceError, match="token_ranges"):
        generate_tokens(model, prefix, torch.tensor([0, 50]), SamplingParams(), gen(0))
    with pytest.raises(SequenceError, match="max_seq_len"):
        generate_tokens(model, prefix, full_ranges(59), SamplingParams(), gen(0))
    with pytest.raises(SequenceError, match="vocabulary"):
        generate_tokens(model, prefix + VOCAB, full_ranges(2), SamplingParams(), gen(0))
    with pytest.raises(SequenceError, match="at least one token"):
        generate_tokens(model, prefix[:, :0], full_ranges(2), SamplingParams(), gen(0))
    assert generate_tokens(model, prefix, full_ranges(58), SamplingParams(), gen(0)).shape == (3, 58)
    assert generate_tokens(model, prefix, full_ranges(0), SamplingParams(), gen(0)).shape == (3, 0)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_aligned_ids_steer_sampling_and_cached_equals_uncached(cfg_scale):
    model = tiny_model(seed=3, aligned_vocab=4)
    with torch.no_grad():
        model.aligned_embedding.weight.normal_(std=3.0, generator=gen(9))
    prefix, uncond = prefixes()
    params = SamplingParams(cfg_scale=cfg_scale)
    steps = 20
    aligned = torch.randint(1, 4, (3, prefix.shape[1] + steps - 1), generator=gen(5))
    cached = generate_tokens(model, prefix, full_ranges(steps), params, gen(0), uncond_prefix=uncond,
                             aligned=aligned)
    uncached = generate_tokens(model, prefix, full_ranges(steps), params, gen(0), uncond_prefix=uncond,
                               aligned=aligned, use_cache=False)
    assert torch.equal(cached, uncached)
    plain = generate_tokens(model, prefix, full_ranges(steps), params, gen(0), uncond_prefix=uncond)
    assert not torch.equal(cached, plain)
    zeros = generate_tokens(model, prefix, full_ranges(steps), params, gen(0), uncond_prefix=uncond,
                            aligned=torch.zeros_like(aligned))
    assert torch.equal(zeros, plain)  # id 0: no aligned condition
    with pytest.raises(SequenceError, match="aligned ids must be"):
        generate_tokens(model, prefix, full_ranges(steps), params, gen(0), uncond_prefix=uncond,
                        aligned=aligned[:, :-1])


def test_level_temperature_gives_each_level_its_own_temperature():
    """Two interleaved levels (ranges [0, 25) and [25, 50)): a near-zero share on level 2 makes its draws the
    argmax, level 1 keeps sampling; a list of the wrong length or with bad values is refused."""
    model = tiny_model(seed=4)
    prefix, _ = prefixes(batch=4)
    ranges = torch.tensor([[0, 25], [25, 50]]).repeat(10, 1)
    mixed = SamplingParams(temperature=1.0, level_temperature=[1.0, 1e-6])
    out = generate_tokens(model, prefix, ranges, mixed, gen(0))
    plain = generate_tokens(model, prefix, ranges, SamplingParams(), gen(0))
    assert torch.equal(out[:, 0], plain[:, 0])  # level 1, first step: the same draw
    greedy = SamplingParams(temperature=0.0)
    for step in range(1, 20, 2):  # every level-2 step is the argmax given what came before
        expected = generate_tokens(model, torch.cat([prefix, out[:, :step]], dim=1), ranges[step:step + 1],
                                   greedy, gen(0))
        assert torch.equal(out[:, step], expected[:, 0]), step
    assert not torch.equal(out, generate_tokens(model, prefix, ranges, greedy, gen(0)))  # level 1 still samples
    assert SamplingParams(temperature=0.8, level_temperature=[1.0, 0.5]).per_level(2)[1].temperature == 0.4
    with pytest.raises(ConfigError, match="2 values for a stage of 1"):
        generate_tokens(model, prefix, full_ranges(3), SamplingParams(level_temperature=[1.0, 0.5]), gen(0))
    for bad in ([], [1.0, 0.0], [float("inf")], "0.5"):
        with pytest.raises(ConfigError, match="level_temperature"):
            SamplingParams(level_temperature=bad).validate()
