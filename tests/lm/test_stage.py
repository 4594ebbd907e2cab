"""StageLM: windowed sampling (context, strides, conditions per window), determinism, files."""

from __future__ import annotations

import pytest
import torch

from musiclm.errors import ConfigError
from musiclm.lm.config import TransformerConfig
from musiclm.lm.layout import TokenSpaces
from musiclm.lm.sampling import SamplingParams
from musiclm.lm.stage import StageError, StageLM, check_stage_chain
from musiclm.lm.stage_config import StageConfig, stage_preset

SPACES = TokenSpaces(mulan_levels=2, mulan_codebook=4, semantic_clusters=6, acoustic_codebook=8, coarse_levels=2,
                     fine_levels=2)


def tiny_stage(stage: str, window: float, stride: float, seed: int = 0) -> StageLM:
    torch.manual_seed(seed)
    config = StageConfig(stage=stage, tokens=SPACES, window_seconds=window, stride_seconds=stride,
                         transformer=TransformerConfig(dim=16, depth=1, heads=2, ffn_dim=32, dropout=0.0),
                         sampling=SamplingParams(temperature=1.0, cfg_scale=1.0)).resolved()
    return StageLM(config)


class Recorder:
    """A condition function that records the windows it was asked for."""

    def __init__(self, stage: StageLM, batch: int):
        self.stage, self.batch, self.calls = stage, batch, []

    def __call__(self, start: int, first_new: int, end: int):
        self.calls.append((start, first_new, end))
        mulan = torch.full((self.batch, 2), len(self.calls) % 4)
        cond = self.stage.layout.condition(mulan)
        return cond, None


def test_windows_keep_context_and_cover_every_frame():
    stage = tiny_stage("semantic", window=1.0, stride=0.4)  # 25-frame windows, 10 new frames after the first
    recorder = Recorder(stage, batch=2)
    out = stage.generate(60, recorder, batch=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 60, 1)
    assert recorder.calls[0] == (0, 0, 25)
    for start, first_new, end in recorder.calls[1:]:
        assert first_new - start == 15 and end - first_new <= 10  # context = window - stride
    assert recorder.calls[-1][2] == 60
    assert int(out.max()) < SPACES.semantic_clusters


def test_prompt_is_kept_and_continued():
    stage = tiny_stage("semantic", window=1.0, stride=0.4)
    prompt = torch.randint(0, 6, (1, 8))
    recorder = Recorder(stage, batch=1)
    out = stage.generate(30, recorder, batch=1, prompt=prompt)
    assert torch.equal(out[0, :8, 0], prompt[0])
    assert recorder.calls[0] == (0, 8, 25)  # the prompt is the first window's context
    assert stage.generate(5, recorder, batch=1, prompt=prompt).shape == (1, 5, 1)  # shorter than the prompt


def test_same_seed_same_tokens_and_cached_equals_uncached():
    stage = tiny_stage("fine", window=0.2, stride=0.1)  # 10 frames x 2 levels per window
    stage.decode_dtype = None  # exact float32 steps (the CPU default reads fp16 weight copies)
    coarse = torch.randint(0, 8, (2, 30, 2))

    def condition(start, first_new, end):
        return stage.layout.condition(coarse[:, start:end]), None

    runs = [stage.generate(30, condition, batch=2, generator=torch.Generator().manual_seed(5), use_cache=cache)
            for cache in (True, True, False)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0], runs[2])
    other = stage.generate(30, condition, batch=2, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(runs[0], other)


def test_forced_values_are_kept_across_windows_and_the_rest_is_sampled():
    stage = tiny_stage("fine", window=0.2, stride=0.1)  # 10 frames x 2 levels per window
    coarse = torch.randint(0, 8, (2, 30, 2))

    def condition(start, first_new, end):
        return stage.layout.condition(coarse[:, start:end]), None

    forced = torch.full((2, 30, 2), -1)
    forced[..., 0] = torch.randint(0, 8, (2, 30))  # the first level given, the second sampled
    out = stage.generate(30, condition, batch=2, generator=torch.Generator().manual_seed(1), forced=forced)
    assert torch.equal(out[..., 0], forced[..., 0])
    assert int(out[..., 1].min()) >= 0 and int(out[..., 1].max()) < SPACES.acoustic_codebook
    prompt = torch.randint(0, 8, (2, 4, 2))  # frames under the prompt keep the prompt
    out = stage.generate(30, condition, batch=2, prompt=prompt, forced=forced)
    assert torch.equal(out[:, :4], prompt) and torch.equal(out[:, 4:, 0], forced[:, 4:, 0])
    with pytest.raises(StageError, match="forced values"):
        stage.generate(30, condition, batch=2, forced=forced[:, :20])


def test_progress_counts_every_token():
    stage = tiny_stage("semantic", window=1.0, stride=0.5)
    seen = []
    stage.generate(40, Recorder(stage, 1), batch=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (40, 40)
    assert [d for d, _ in seen] == list(range(1, 41))


def test_save_and_load_give_identical_samples(tmp_path):
    stage = tiny_stage("semantic", window=1.0, stride=0.5)
    loaded = StageLM.from_pretrained(stage.save(tmp_path / "lm"), stage="semantic")
    assert loaded.config == stage.config
    a = stage.generate(20, Recorder(stage, 1), batch=1, generator=torch.Generator().manual_seed(1))
    b = loaded.generate(20, Recorder(loaded, 1), batch=1, generator=torch.Generator().manual_seed(1))
    # weights are stored in fp16: a reloaded stage equals the original rounded to fp16
    with torch.no_grad():
        for p in stage.model.parameters():
            p.copy_(p.half().float())
    c = stage.generate(20, Recorder(stage, 1), batch=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(b, c)
    assert a.shape == b.shape
    with pytest.raises(StageError, match="not the coarse stage"):
        StageLM.from_pretrained(tmp_path / "lm", stage="coarse")
    with pytest.raises(StageError, match="not a stage model folder"):
        StageLM.from_pretrained(tmp_path / "missing")


def test_config_checks():
    with pytest.raises(ConfigError, match="stride"):
        StageConfig(stage="semantic", tokens=SPACES, window_seconds=1.0, stride_seconds=2.0).resolved().validate()
    with pytest.raises(ConfigError, match="vocab_size"):
        StageConfig(stage="semantic", tokens=SPACES).validate()  # not resolved
    for stage in ("semantic", "coarse", "fine"):
        small = stage_preset(stage, "small")
        small.validate()
        assert small.model.transformer.max_seq_len >= small.model.sequence_length()
    coarse = stage_preset("coarse", "small").model
    assert coarse.window_frames() % 2 == 0  # acoustic windows cover whole semantic frames


def test_stage_chain_must_agree():
    semantic, coarse, fine = (tiny_stage(s, 1.0, 0.5) for s in ("semantic", "coarse", "fine"))
    check_stage_chain(semantic, coarse, fine)
    other = StageConfig(stage="fine", tokens=TokenSpaces(acoustic_codebook=16, coarse_levels=2, fine_levels=2),
                        window_seconds=1.0, stride_seconds=0.5,
                        transformer=TransformerConfig(dim=16, depth=1, heads=2, ffn_dim=32)).resolved()
    with pytest.raises(ConfigError, match="acoustic"):
        check_stage_chain(semantic, coarse, StageLM(other))


def test_semantic_stage_with_melody_slots_sizes_its_window():
    from dataclasses import replace

    spaces = replace(SPACES, melody_levels=2, melody_codebook=4, melody_slots=3)
    config = StageConfig(stage="semantic", tokens=spaces, window_seconds=1.0, stride_seconds=0.5,
                         transformer=TransformerConfig(dim=16, depth=1, heads=2, ffn_dim=32, dropout=0.0),
                         sampling=SamplingParams(temperature=1.0, cfg_scale=1.0)).resolved()
    stage = StageLM(config)
    mulan = torch.zeros(1, 2, dtype=torch.long)
    melody = torch.ones(1, 3, 2, dtype=torch.long)
    assert stage.layout.condition(mulan, melody).shape[1] == config.condition_length()
    out = stage.generate(40, lambda start, first, end: (stage.layout.condition(mulan, melody), None), batch=1)
    assert out.shape == (1, 40, 1)


def test_stages_must_agree_on_the_models_they_share():
    from dataclasses import replace

    def stage(name: str, prints: str, **changes) -> StageLM:
        base = tiny_stage(name, 1.0, 0.5)
        return StageLM(replace(base.config, store_fingerprint=prints, **changes).resolved(), base.model)

    old, new_mulan, new_codec = "c1/s1/m1", "c1/s1/m2", "c2/s1/m2"
    check_stage_chain(stage("semantic", old), stage("coarse", old), stage("fine", old))
    # a retrained MuLan: the fine stage reads no MuLan tokens, so it may stay
    check_stage_chain(stage("semantic", new_mulan), stage("coarse", new_mulan), stage("fine", old))
    with pytest.raises(ConfigError, match=r"different MuLan models \(coarse: m1, semantic: m2\)"):
        check_stage_chain(stage("semantic", new_mulan), stage("coarse", old), stage("fine", old))
    with pytest.raises(ConfigError, match="different codec models"):
        check_stage_chain(stage("semantic", new_mulan), stage("coarse", new_mulan), stage("fine", new_codec))
    # the ablation coarse stage reads no semantic tokens
    ablation = stage("coarse", "c1/s9/m2", semantic_conditioning=False)
    check_stage_chain(stage("semantic", new_mulan), ablation, stage("fine", old))
    with pytest.raises(ConfigError, match="different semantic tokenizer models"):
        check_stage_chain(stage("semantic", new_mulan), stage("coarse", "c1/s9/m2"), stage("fine", old))


def test_store_mismatch_names_only_the_models_a_stage_uses(tiny_musiclm):
    from dataclasses import replace

    from musiclm.lm.stage import store_mismatch

    fine = tiny_musiclm.stages["fine"].config
    semantic = tiny_musiclm.stages["semantic"].config
    assert store_mismatch(fine, "c1/s1/m1") == []  # nothing recorded: nothing to check
    fine, semantic = (replace(c, store_fingerprint="c1/s1/m1") for c in (fine, semantic))
    assert store_mismatch(fine, "c1/s1/m1") == [] and store_mismatch(semantic, "c1/s1/m1") == []
    assert store_mismatch(fine, "c1/s2/m2") == []  # the fine stage reads codec tokens only
    assert store_mismatch(semantic, "c2/s1/m2") == ["MuLan"]
    assert store_mismatch(semantic, "c1/s2/m2") == ["semantic tokenizer", "MuLan"]
    assert store_mismatch(fine, "c2/s1/m1") == ["codec"]
