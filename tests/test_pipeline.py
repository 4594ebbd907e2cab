"""The MusicLM pipeline on a tiny random model: shapes, determinism, guidance, story, continuation, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from musiclm.errors import AudioError
from musiclm.pipeline import MAX_DURATION, GenerationError, MusicLM, story_from_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generate_shapes_rate_and_rows(tiny_musiclm):
    audio, rate = tiny_musiclm.generate(["a calm piano piece", "fast loud drums"], duration=1.5, num_samples=2,
                                        seed=0)
    assert rate == 24_000
    assert audio.shape == (4, 36_000) and audio.dtype == torch.float32
    assert bool(torch.isfinite(audio).all())


def test_same_seed_same_audio_other_seed_other_audio(tiny_musiclm):
    a, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=3)
    b, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=3)
    c, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def _semantic_tokens(model: MusicLM, text: str, cfg: float, seed: int = 0) -> torch.Tensor:
    sampling = model.sampling(cfg=cfg)
    mulan = [(0.0, model.mulan.text_tokens([text]))]
    stage = model.stages["semantic"]
    layout = stage.layout

    def condition(start, first_new, end):
        cond = layout.condition(mulan[0][1])
        return cond, layout.drop_condition(cond, torch.ones(1, dtype=torch.bool))

    return stage.generate(50, condition, 1, params=sampling.semantic,
                          generator=torch.Generator().manual_seed(seed))


def test_guidance_changes_the_tokens_and_scale_one_is_plain_sampling(tiny_musiclm):
    # random tiny weights barely separate cond and null logits, so a strong scale and several seeds
    changed = [not torch.equal(_semantic_tokens(tiny_musiclm, "a calm piano piece", cfg=1.0, seed=s),
                               _semantic_tokens(tiny_musiclm, "a calm piano piece", cfg=50.0, seed=s))
               for s in range(3)]
    assert any(changed)
    assert torch.equal(_semantic_tokens(tiny_musiclm, "a calm piano piece", cfg=1.0),
                       _semantic_tokens(tiny_musiclm, "a calm piano piece", cfg=1.0))


def test_sampling_overrides_per_stage(tiny_musiclm):
    defaults = tiny_musiclm.sampling()
    assert (defaults.semantic.temperature, defaults.coarse.temperature, defaults.fine.temperature) == (1.0, 0.95, 0.4)
    one = tiny_musiclm.sampling(temperature=0.7, top_k=5, cfg=2.0)
    assert one.coarse.temperature == 0.7 and one.fine.top_k == 5
    assert one.semantic.cfg_scale == 2.0 and one.fine.cfg_scale == 1.0  # the fine stage sees no MuLan tokens
    three = tiny_musiclm.sampling(temperature=[1.0, 0.9, 0.3])
    assert three.fine.temperature == 0.3
    with pytest.raises(GenerationError, match="three"):
        tiny_musiclm.sampling(temperature=[1.0, 0.9])
    with pytest.raises(GenerationError, match="semantic stage"):
        tiny_musiclm.sampling(temperature=-1.0)


def test_a_stages_level_temperature_applies_under_a_temperature_override(tiny_model_dir):
    model = MusicLM.from_pretrained(tiny_model_dir)
    coarse = model.stages["coarse"]
    levels = coarse.config.tokens.coarse_levels
    scales = [1.0] + [0.5] * (levels - 1)
    coarse.config.sampling = replace(coarse.config.sampling, level_temperature=scales)
    sampling = model.sampling(temperature=0.8)
    assert sampling.coarse.level_temperature == scales
    assert [p.temperature for p in sampling.coarse.per_level(levels)] == [0.8] + [0.4] * (levels - 1)
    audio, _ = model.generate("a calm piano piece", duration=1.0, seed=0)
    coarse.config.sampling = replace(coarse.config.sampling, level_temperature=None)
    assert not torch.equal(audio, model.generate("a calm piano piece", duration=1.0, seed=0)[0])
    coarse.config.sampling = replace(coarse.config.sampling, level_temperature=[1.0] * (levels + 1))
    with pytest.raises(GenerationError, match=f"coarse stage: level_temperature has {levels + 1} values"):
        model.generate("a calm piano piece", duration=1.0, seed=0)


def test_story_switches_conditioning_at_the_given_time(tiny_musiclm):
    seen = []
    stage = tiny_musiclm.stages["semantic"]
    original = stage.generate

    def spy(frames, condition, batch, **kwargs):
        def recording(start, first_new, end):
            cond, uncond = condition(start, first_new, end)
            seen.append((first_new, cond[0, :12].tolist()))
            return cond, uncond
        return original(frames, recording, batch, **kwargs)

    stage.generate = spy
    try:
        audio, _ = tiny_musiclm.generate_story([(0.0, "a calm piano piece"), (3.0, "loud fast drums")], 6.0)
    finally:
        del stage.generate
    assert audio.shape == (1, 144_000)
    first = tiny_musiclm.stages["semantic"].layout.mulan_tokens(tiny_musiclm.mulan.text_tokens(["a calm piano piece"]))
    second = tiny_musiclm.stages["semantic"].layout.mulan_tokens(tiny_musiclm.mulan.text_tokens(["loud fast drums"]))
    for first_new, tokens in seen:
        expected = first if first_new / 25 < 3.0 else second
        assert tokens == expected[0].tolist()
    assert any(f / 25 >= 3.0 for f, _ in seen) and any(f / 25 < 3.0 for f, _ in seen)


def test_story_spec_parsing_and_errors(tiny_musiclm):
    assert story_from_spec("0:a calm intro; 15 : the drums come in") == [(0.0, "a calm intro"),
                                                                          (15.0, "the drums come in")]
    for spec, message in [("calm intro", "SECONDS:TEXT"), ("x:calm", "not a time"), (" ; ", "empty")]:
        with pytest.raises(GenerationError, match=message):
            story_from_spec(spec)
    for story, message in [([(1.0, "a")], "start at 0"), ([(0.0, "a"), (0.0, "b")], "not after"),
                           ([(0.0, "a"), (9.0, "b")], "after the end"), ([(0.0, "")], "empty")]:
        with pytest.raises(GenerationError, match=message):
            tiny_musiclm.generate_story(story, 5.0)


def test_continuation_keeps_the_prompt_tokens(tiny_musiclm, sine):
    prompt = sine(330.0, seconds=1.0, sr=16_000)
    audio, _rate = tiny_musiclm.generate_continuation(prompt, 16_000, "a calm piano piece", duration=2.0)
    assert audio.shape == (1, 48_000)
    tokens = tiny_musiclm._prompt_tokens(prompt, 16_000, 1, 2.0)
    assert tokens["semantic"].shape[1] * 2 == tokens["acoustic"].shape[1]
    # the prompt's codes are re-synthesised: decoding them alone reproduces the start of the output
    codes = tokens["acoustic"].transpose(1, 2)
    start = tiny_musiclm.codec.decode(codes, length=codes.shape[2] * 480)
    head = audio[:, : start.shape[1] - 4800]
    assert torch.allclose(head, start[:, : head.shape[1]], atol=1e-4)


def test_continuation_errors(tiny_musiclm, sine):
    with pytest.raises(GenerationError, match="shorter than the total"):
        tiny_musiclm.generate_continuation(sine(seconds=3.0), 24_000, "x", duration=2.0)
    with pytest.raises(AudioError, match="silent"):
        tiny_musiclm.generate_continuation(np.zeros(24_000, np.float32), 24_000, "x", duration=2.0)
    with pytest.raises(AudioError, match="NaN"):
        tiny_musiclm.generate_continuation(np.full(24_000, np.nan, np.float32), 24_000, "x", duration=2.0)
    with pytest.raises(AudioError, match="at least"):
        tiny_musiclm.generate_continuation(sine(seconds=0.1), 24_000, "x", duration=2.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"texts": ""}, "empty"), ({"texts": []}, "no prompt"), ({"texts": "x" * 5000}, "limit"),
    ({"texts": "x", "duration": 0}, "> 0"), ({"texts": "x", "duration": -3}, "> 0"),
    ({"texts": "x", "duration": MAX_DURATION + 1}, "maximum"), ({"texts": "x", "duration": float("nan")}, "> 0"),
    ({"texts": "x", "num_samples": 0}, ">= 1"),
])
def test_bad_requests_get_clear_errors(tiny_musiclm, kwargs, message):
    with pytest.raises(GenerationError, match=message):
        tiny_musiclm.generate(**kwargs)


def test_best_of_keeps_the_candidate_closest_to_the_prompt(tiny_musiclm):
    texts = ["a calm piano piece"]
    candidates, _ = tiny_musiclm.generate(texts, duration=1.0, num_samples=3, seed=9)
    scores = tiny_musiclm.mulan_similarity(candidates, texts * 3)
    best, _ = tiny_musiclm.generate(texts, duration=1.0, best_of=3, seed=9)
    assert torch.equal(best[0], candidates[int(scores.argmax())])


def test_save_and_load_round_trip(tiny_musiclm, tiny_model_dir):
    loaded = MusicLM.from_pretrained(tiny_model_dir)
    a, _ = loaded.generate("a calm piano piece", duration=1.0, seed=2)
    b, _ = MusicLM.from_pretrained(tiny_model_dir).generate("a calm piano piece", duration=1.0, seed=2)
    assert torch.equal(a, b)
    with pytest.raises(GenerationError, match="incomplete model folder"):
        MusicLM.from_pretrained(tiny_model_dir / "codec")


def test_unconditional_generation_uses_null_tokens(tiny_musiclm):
    audio, rate = tiny_musiclm.generate_unconditional(2, duration=1.0, seed=1)
    assert audio.shape == (2, rate)
    again, _ = tiny_musiclm.generate_unconditional(2, duration=1.0, seed=1)
    assert torch.equal(audio, again)
    with pytest.raises(GenerationError):
        tiny_musiclm.generate_unconditional(0, duration=1.0)


def test_ablation_coarse_stage_without_semantic_tokens_skips_the_semantic_stage(tiny_musiclm):
    from musiclm.lm.stage import StageLM

    coarse = tiny_musiclm.stages["coarse"]
    config = replace(coarse.config, semantic_conditioning=False).resolved()
    ablation = tiny_musiclm.with_stage(StageLM(config))
    stages = []
    audio, rate = ablation.generate("a calm piano piece", duration=1.0, progress=lambda s, d, t: stages.append(s))
    assert audio.shape == (1, rate)
    assert "semantic" not in stages and "coarse" in stages and "fine" in stages
    assert tiny_musiclm.stages["coarse"] is coarse  # the original pipeline is untouched


def test_loud_decodes_are_scaled_below_full_scale(tiny_musiclm, monkeypatch):
    from musiclm.pipeline import OUTPUT_PEAK

    quiet, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=2)
    original = tiny_musiclm.codec.decode
    monkeypatch.setattr(tiny_musiclm.codec, "decode", lambda codes, length: original(codes, length=length) * 0
                        + torch.linspace(-3.0, 2.0, length))
    loud, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=2)
    assert abs(float(loud.abs().max()) - OUTPUT_PEAK) < 1e-6  # scaled, not clipped: the shape is kept
    assert torch.allclose(loud[0], torch.linspace(-3.0, 2.0, 24_000) * OUTPUT_PEAK / 3.0, atol=1e-6)
    assert float(quiet.abs().max()) <= OUTPUT_PEAK


def test_draft_mode_skips_the_fine_stage_and_decodes_the_same_coarse_codes(tiny_musiclm, monkeypatch):
    decoded = []
    original = tiny_musiclm.codec.decode
    monkeypatch.setattr(tiny_musiclm.codec, "decode",
                        lambda codes, length: decoded.append(codes.clone()) or original(codes, length=length))
    full, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=5)
    fine_calls = []
    fine = tiny_musiclm.stages["fine"]
    monkeypatch.setattr(fine, "generate", lambda *a, **k: fine_calls.append(1))
    monkeypatch.setattr(tiny_musiclm, "skip_fine_stage", True)
    draft, _ = tiny_musiclm.generate("a calm piano piece", duration=1.0, seed=5)
    coarse_levels = tiny_musiclm.stages["coarse"].config.tokens.coarse_levels
    assert not fine_calls and draft.shape == full.shape
    assert decoded[1].shape[1] == coarse_levels < decoded[0].shape[1]
    assert torch.equal(decoded[1], decoded[0][:, :coarse_levels])  # the same coarse tokens, per-stage seeds
    assert tiny_musiclm.with_stage(tiny_musiclm.stages["coarse"]).skip_fine_stage
    monkeypatch.setattr(tiny_musiclm, "skip_fine_stage", False)
    view = tiny_musiclm.as_draft()
    assert view.skip_fine_stage and not tiny_musiclm.skip_fine_stage
    assert all(view.stages[name] is tiny_musiclm.stages[name] for name in ("semantic", "coarse", "fine"))
    assert view.codec is tiny_musiclm.codec and view.mulan is tiny_musiclm.mulan


def test_resynthesis_renders_the_semantic_tokens_of_the_audio(tiny_musiclm, sine, monkeypatch):
    wav = sine(330.0, seconds=0.6, sr=24_000)
    coarse = tiny_musiclm.stages["coarse"]
    seen = []
    real_generate = coarse.generate

    def capture(frames, condition, batch, **kwargs):
        seen.append(condition(0, 0, frames)[0])
        return real_generate(frames, condition, batch, **kwargs)

    monkeypatch.setattr(coarse, "generate", capture)
    stages = []
    audio, rate = tiny_musiclm.resynthesize(wav, 24_000, ["a calm piano piece", "fast drums"], duration=1.0,
                                            progress=lambda s, d, t: stages.append(s))
    assert audio.shape == (2, rate) and bool(torch.isfinite(audio).all())
    assert "semantic" not in stages and "coarse" in stages  # the semantic stage did not run
    # the coarse condition holds the audio's own semantic tokens (looped: 0.6 s of audio for 1 s of output)
    tokens = tiny_musiclm.semantic_tokenizer.tokenize(torch.as_tensor(wav)[None], 24_000)[0]
    layout = coarse.layout
    offset = layout.vocab.offset("semantic")
    q = coarse.config.tokens.mulan_levels
    in_condition = seen[0][0, q:q + len(tokens)] - offset
    assert torch.equal(in_condition.cpu(), tokens.cpu().long())
    again, _ = tiny_musiclm.resynthesize(wav, 24_000, ["a calm piano piece", "fast drums"], duration=1.0)
    assert torch.equal(audio, again)  # seeded
    with pytest.raises(AudioError, match=r"\[samples\]"):
        tiny_musiclm.resynthesize(np.zeros((1, 1, 10), np.float32), 24_000, "x")


def test_resynthesis_can_keep_the_audios_first_coarse_levels(tiny_musiclm, sine, monkeypatch):
    wav = sine(330.0, seconds=1.0, sr=24_000)
    codec = tiny_musiclm.codec
    own = codec.encode(torch.as_tensor(wav)[None], 24_000, bitrate=None).cpu()
    decoded = []
    real_decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda codes, **kw: decoded.append(codes.cpu()) or real_decode(codes, **kw))
    levels = tiny_musiclm.stages["coarse"].config.tokens.coarse_levels
    for keep in (1, levels):
        audio, rate = tiny_musiclm.resynthesize(wav, 24_000, "a calm piano piece", duration=1.0, keep_levels=keep)
        assert audio.shape == (1, rate)
        frames = min(own.shape[2], decoded[-1].shape[2])
        assert torch.equal(decoded[-1][:, :keep, :frames], own[:, :keep, :frames])
    tiny_musiclm.resynthesize(wav, 24_000, "a calm piano piece", duration=1.0)
    assert not torch.equal(decoded[-1][:, :1], own[:, :1, :decoded[-1].shape[2]])  # sampled without it
    with pytest.raises(GenerationError, match="keep_levels"):
        tiny_musiclm.resynthesize(wav, 24_000, "x", duration=1.0, keep_levels=levels + 1)


def test_stages_refuse_a_mulan_they_were_not_trained_with(tiny_musiclm):
    codec_print = tiny_musiclm.codec.token_fingerprint()
    stages = {}
    for name in ("semantic", "coarse", "fine"):
        stage = tiny_musiclm.stages[name]
        stages[name] = type(stage)(replace(stage.config, store_fingerprint=f"{codec_print}/s/0123456789abcdef"),
                                   stage.model)
    with pytest.raises(GenerationError, match="another MuLan"):
        MusicLM(tiny_musiclm.mulan, tiny_musiclm.codec, stages["semantic"], stages["coarse"], stages["fine"])
    # stages record the audio side (token fingerprint); stores made before that recorded the whole model
    mulan = tiny_musiclm.mulan
    for recorded in (mulan.token_fingerprint(), mulan.fingerprint()):
        for name in ("semantic", "coarse"):
            stage = tiny_musiclm.stages[name]
            stages[name] = type(stage)(replace(stage.config, store_fingerprint=f"{codec_print}/s/{recorded}"),
                                       stage.model)
        MusicLM(mulan, tiny_musiclm.codec, stages["semantic"], stages["coarse"], stages["fine"])


def test_acoustic_stages_refuse_a_codec_with_other_codes_but_not_a_retrained_decoder(tiny_musiclm):
    from musiclm.codec.api import Codec

    codec = tiny_musiclm.codec
    retuned, recoded = Codec(codec.model), Codec(codec.model)
    with torch.no_grad():
        retuned.model.decoder.net[0].conv.weight.mul_(1.5)
        recoded.model.encoder.net[0].conv.weight.mul_(1.5)
    assert retuned.token_fingerprint() == codec.token_fingerprint() != recoded.token_fingerprint()

    def stages_recording(codec_print: str) -> dict:
        prints = f"{codec_print}/s/{tiny_musiclm.mulan.token_fingerprint()}"
        return {name: type(stage)(replace(stage.config, store_fingerprint=prints), stage.model)
                for name, stage in tiny_musiclm.stages.items()}

    s = stages_recording(codec.token_fingerprint())
    for accepted in (codec, retuned):
        MusicLM(tiny_musiclm.mulan, accepted, s["semantic"], s["coarse"], s["fine"])
    with pytest.raises(GenerationError, match="another codec"):
        MusicLM(tiny_musiclm.mulan, recoded, s["semantic"], s["coarse"], s["fine"])
    s = stages_recording(codec.fingerprint())  # stores made before token fingerprints name the whole codec
    MusicLM(tiny_musiclm.mulan, codec, s["semantic"], s["coarse"], s["fine"])
    with pytest.raises(GenerationError, match="another codec"):
        MusicLM(tiny_musiclm.mulan, retuned, s["semantic"], s["coarse"], s["fine"])


def test_a_text_tuned_mulan_keeps_the_stages_valid(tiny_musiclm):
    from musiclm.mulan.text_tuning import _fresh, with_projection

    mulan = tiny_musiclm.mulan
    tuned = with_projection(mulan, _fresh(mulan.model.text.projection, 3), mulan.model.logit_scale)
    assert tuned.fingerprint() != mulan.fingerprint() and tuned.token_fingerprint() == mulan.token_fingerprint()
    s = tiny_musiclm.stages
    model = MusicLM(tuned, tiny_musiclm.codec, s["semantic"], s["coarse"], s["fine"])
    text = ["a calm piano piece"]
    assert not torch.equal(model.mulan.tokens(model.mulan.embed_text(text)), mulan.tokens(mulan.embed_text(text)))
