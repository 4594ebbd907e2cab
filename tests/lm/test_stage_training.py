"""Stage training on a real (tiny) token store: windows, condition dropout, the recipe, export, the chain."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.config import merge
from musiclm.data.manifest import ClipRecord, write_manifest
from musiclm.errors import ConfigError
from musiclm.lm.cli import stage_from_run
from musiclm.lm.config import TransformerConfig
from musiclm.lm.data import StageDataError, StageDataset, collate_sequences
from musiclm.lm.layout import IGNORE
from musiclm.lm.recipe import configure_for_store, store_info_dict, train_stage
from musiclm.lm.stage import StageLM
from musiclm.lm.stage_config import stage_preset
from musiclm.lm.transformer import Transformer
from musiclm.pipeline import MusicLM
from musiclm.tokenstore import TokenStore
from musiclm.tokenstore.build import TokenizerModels, build_store

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 24_000


@pytest.fixture(scope="module")
def store_dir(tiny_musiclm, tmp_path_factory):
    """Twelve 2 s clips of tones (train/valid/test) tokenized by the tiny random pipeline's models."""
    corpus = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        t = np.arange(2 * SR) / SR
        wav = (0.3 * np.sin(2 * np.pi * rng.uniform(150, 800) * t)).astype(np.float32)
        path = f"audio/clip{i:02d}.flac"
        save_audio(corpus / path, wav, SR)
        split = "valid" if i in (9, 10) else "test" if i == 11 else "train"
        records.append(ClipRecord(id=f"clip{i:02d}", path=path, seconds=2.0, sample_rate=SR, split=split,
                                  source="test", caption=f"a tone number {i}"))
    write_manifest(corpus, records)
    out = tmp_path_factory.mktemp("tokens")
    models = TokenizerModels(tiny_musiclm.codec, tiny_musiclm.semantic_tokenizer, tiny_musiclm.mulan)
    build_store([corpus], out, models, shard_size=8, progress=False)
    return out


def tiny_training(stage: str, store: TokenStore, steps: int = 12):
    config = merge(stage_preset(stage, "small"), {
                            "train.max_steps": steps, "train.batch_size": 4, "train.device": "cpu",
                            "train.checkpoint_minutes": None, "train.progress": False, "train.eval_every": steps,
                            "train.log_every": 1000, "train.optimizer.lr": 3e-3, "train.optimizer.warmup_steps": 1,
                            "eval_batches": 1})
    windows = {"semantic": (1.0, 0.5), "coarse": (0.8, 0.4), "fine": (0.4, 0.2)}[stage]
    model = replace(config.model, window_seconds=windows[0], stride_seconds=windows[1],
                    transformer=TransformerConfig(dim=32, depth=2, heads=2, ffn_dim=64, dropout=0.0))
    return configure_for_store(replace(config, model=model), store_info_dict(store))


@pytest.mark.parametrize("stage", ["semantic", "coarse", "fine"])
def test_windows_follow_the_store_and_the_layout(store_dir, stage):
    store = TokenStore.open(store_dir)
    config = tiny_training(stage, store).model
    data = StageDataset(store.select("train"), config, seed=1)
    item = data[0]
    assert item["tokens"].shape == item["labels"].shape == (config.sequence_length() - 1,)
    labelled = item["labels"] != IGNORE
    assert int(labelled.sum()) == config.window_frames() * data.layout.levels  # every target, nothing else
    # labels are the next tokens
    assert torch.equal(item["labels"][labelled][:-1], item["tokens"][1:][labelled[:-1] & labelled[1:]])
    again = data[0]
    assert torch.equal(item["tokens"], again["tokens"])  # a pure function of (seed, epoch, index)
    data.set_epoch(1)
    assert any(not torch.equal(data[i]["tokens"], StageDataset(store.select("train"), config, seed=1)[i]["tokens"])
               for i in range(len(data)))  # crops move between epochs
    if stage == "coarse":  # the semantic tokens in the condition are those of the window's time span
        layout = data.layout
        rng = np.random.default_rng([1, 1, 3])
        sequence, cond_len = data.sequence(3, rng)
        offset = layout.vocab.offset("semantic")
        q = config.tokens.mulan_levels
        semantic_in_condition = sequence[q:cond_len - 1] - offset
        codes = store.select("train").semantic(3)
        window = len(semantic_in_condition)
        starts = [s for s in range(len(codes) - window + 1)
                  if np.array_equal(codes[s:s + window], semantic_in_condition.numpy())]
        assert starts


def test_condition_dropout_rate(store_dir):
    store = TokenStore.open(store_dir)
    config = replace(tiny_training("semantic", store).model, condition_dropout=0.5)
    data = StageDataset(store.select("train"), config, seed=0)
    null_lo, null_hi = data.layout.vocab.range("mulan_null")
    dropped = 0
    total = 0
    for epoch in range(20):
        data.set_epoch(epoch)
        for i in range(len(data)):
            first = int(data[i]["tokens"][0])
            dropped += null_lo <= first < null_hi
            total += 1
    assert 0.35 < dropped / total < 0.65
    plain = StageDataset(store.select("train"), config, seed=0, condition_dropout=False)
    assert all(not null_lo <= int(plain[i]["tokens"][0]) < null_hi for i in range(len(plain)))


def test_train_export_and_chain_the_three_stages(store_dir, tiny_musiclm, tmp_path):
    store = TokenStore.open(store_dir)
    stages = {}
    for name in ("semantic", "coarse", "fine"):
        config = tiny_training(name, store)
        run = tmp_path / f"run-{name}"
        result = train_stage(config, [store_dir], run)
        assert result.step == config.train.max_steps
        assert np.isfinite(result.last_logs["lm/loss"]) if "lm/loss" in result.last_logs else True
        stage, checkpoint = stage_from_run(run)
        assert checkpoint.step == config.train.max_steps
        assert stage.config.store_fingerprint  # trained stages remember their token store
        stages[name] = StageLM.from_pretrained(stage.save(tmp_path / f"lm-{name}"), stage=name)
    model = MusicLM(tiny_musiclm.mulan, tiny_musiclm.codec, stages["semantic"], stages["coarse"], stages["fine"],
                    tiny_musiclm.semantic_tokenizer)
    audio, rate = model.generate(["a tone number 3"], duration=1.2, seed=0)
    assert audio.shape == (1, int(1.2 * rate))
    assert bool(torch.isfinite(audio).all())


def test_training_lowers_the_loss(store_dir, tmp_path):
    store = TokenStore.open(store_dir)
    config = tiny_training("semantic", store, steps=40)
    run = tmp_path / "run"
    from musiclm.lm.recipe import StageRecipe, evaluate_stage
    from musiclm.lm.transformer import Transformer

    recipe = StageRecipe(config, store_dir)
    batches = [recipe.collate([recipe.build_dataset()[i] for i in range(len(store.select("train")))])]
    torch.manual_seed(0)
    before = evaluate_stage(Transformer(config.model.transformer), batches, 1)["loss"]
    train_stage(config, [store_dir], run)
    stage, _ = stage_from_run(run)
    after = evaluate_stage(stage.model, batches, 1)["loss"]
    assert after < before - 0.5


class ClipsWithMelody:
    """Per-clip tokens held in memory, with melody windows (what a token store with a melody model gives)."""

    def __init__(self, count: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.sem = [rng.integers(0, 6, 50) for _ in range(count)]  # 2 s at 25 Hz
        self.mul = [rng.integers(0, 4, 2) for _ in range(count)]
        self.mel = [rng.integers(0, 4, (3, 2)) for _ in range(count)]

    has_melody = True

    def __len__(self) -> int:
        return len(self.sem)

    def codes(self, index):
        raise NotImplementedError("the semantic stage reads no codes")

    def semantic(self, index):
        return self.sem[index]

    def mulan_tokens(self, index):
        return self.mul[index]

    def melody(self, index):
        return self.mel[index]


def test_semantic_windows_carry_the_clips_melody_on_part_of_the_batches():
    from musiclm.lm.data import melody_rows
    from musiclm.lm.layout import TokenSpaces
    from musiclm.lm.stage_config import StageConfig

    spaces = TokenSpaces(mulan_levels=2, mulan_codebook=4, semantic_clusters=6, acoustic_codebook=8,
                         coarse_levels=2, fine_levels=2, melody_levels=2, melody_codebook=4, melody_slots=2,
                         melody_hop_seconds=0.5)
    config = StageConfig(stage="semantic", tokens=spaces, window_seconds=1.0, stride_seconds=0.5,
                         transformer=TransformerConfig(dim=16, depth=1, heads=2, ffn_dim=32),
                         melody_dropout=0.5).resolved()
    clips = ClipsWithMelody()
    data = StageDataset(clips, config, seed=0)
    null_lo, null_hi = data.layout.vocab.range("melody_null")
    with_melody = without = 0
    for epoch in range(10):
        data.set_epoch(epoch)
        for i in range(len(data)):
            melody_ids = data[i]["tokens"][2:6].tolist()
            if all(null_lo <= t < null_hi for t in melody_ids):
                without += 1
            else:
                with_melody += 1
                offsets = [data.layout.vocab.offset("melody0"), data.layout.vocab.offset("melody1")]
                values = np.array(melody_ids).reshape(2, 2) - offsets
                assert any(np.array_equal(values, clips.mel[i][k:k + 2]) for k in range(2))
    assert 0.3 < with_melody / (with_melody + without) < 0.7
    assert melody_rows(np.zeros((1, 2)), 0.0, 2, 3.0) is None
    assert melody_rows(np.arange(8).reshape(4, 2), 9.0, 2, 3.0).tolist() == [[4, 5], [6, 7]]  # clamped


def test_level_softmax_normalises_each_target_over_its_own_level():
    from musiclm.lm.layout import IGNORE, TokenSpaces, stage_layout
    from musiclm.lm.recipe import level_restricted, sequence_loss, target_bounds

    spaces = TokenSpaces(mulan_levels=2, mulan_codebook=4, semantic_clusters=6, acoustic_codebook=8,
                         coarse_levels=2, fine_levels=2)
    layout = stage_layout("coarse", spaces)
    lo, hi = target_bounds(layout)
    a0, a1 = layout.vocab.range("acoustic0"), layout.vocab.range("acoustic1")
    assert (int(lo[a0[0]]), int(hi[a0[0]])) == a0 and (int(lo[a1[1] - 1]), int(hi[a1[1] - 1])) == a1
    assert (int(lo[0]), int(hi[0])) == (0, layout.vocab.size)  # no target: the whole vocabulary
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, layout.vocab.size, generator=generator)
    labels = torch.tensor([[a0[0] + 3, a1[0] + 5, IGNORE]])
    restricted = level_restricted(logits, labels, (lo, hi))
    # each labelled position keeps exactly its level's logits; the unlabelled one keeps everything
    assert torch.isfinite(restricted[0, 0]).sum() == a0[1] - a0[0]
    assert torch.equal(restricted[0, 0, a0[0]:a0[1]], logits[0, 0, a0[0]:a0[1]])
    assert torch.isfinite(restricted[0, 1]).sum() == a1[1] - a1[0]
    assert torch.equal(restricted[0, 2], logits[0, 2])
    # the per-level loss is the cross-entropy of the level's own softmax, never above the full-vocabulary one
    full, per_level = sequence_loss(logits, labels), sequence_loss(restricted, labels)
    expected = -(torch.log_softmax(logits[0, 0, a0[0]:a0[1]], -1)[3] + torch.log_softmax(logits[0, 1, a1[0]:a1[1]],
                                                                                        -1)[5]) / 2
    assert torch.allclose(per_level, expected, atol=1e-5) and float(per_level) <= float(full)


def test_init_from_starts_a_fresh_run_from_an_exported_stage(store_dir, tmp_path):
    from musiclm.lm.recipe import StageRecipe
    from musiclm.lm.stage import StageError

    store = TokenStore.open(store_dir)
    config = tiny_training("semantic", store, steps=6)
    train_stage(config, [store_dir], tmp_path / "first")
    exported = stage_from_run(tmp_path / "first")[0].save(tmp_path / "lm-semantic")
    source = StageLM.from_pretrained(exported).model.state_dict()

    started = StageRecipe(replace(config, init_from=str(exported)), store_dir).build_models()["lm"].state_dict()
    assert all(torch.equal(started[k], source[k]) for k in source)
    fresh = StageRecipe(config, store_dir).build_models()["lm"].state_dict()
    assert not all(torch.equal(fresh[k], source[k]) for k in source)  # without it: random weights

    tuned = train_stage(replace(config, init_from=str(exported)), [store_dir], tmp_path / "tuned")
    assert tuned.step == config.train.max_steps
    # resuming needs the checkpoint only: the init folder may be gone by then
    exported.rename(tmp_path / "moved")
    longer = replace(config, init_from=str(exported), train=replace(config.train, max_steps=8))
    assert train_stage(longer, [store_dir], tmp_path / "tuned").step == 8
    train_stage(tiny_training("coarse", store, steps=1), [store_dir], tmp_path / "coarse")
    coarse = stage_from_run(tmp_path / "coarse")[0].save(tmp_path / "lm-coarse")
    with pytest.raises(StageError, match="coarse stage, not the semantic"):
        StageRecipe(replace(config, init_from=str(coarse)), store_dir).build_models()


class ClipsWithContour(ClipsWithMelody):
    has_contour = True

    def __init__(self, count: int = 6, seed: int = 0):
        super().__init__(count, seed)
        rng = np.random.default_rng(seed + 1)
        self.con = [rng.integers(0, 13, 48) for _ in range(count)]  # 2 frames short of the semantic tokens

    def contour(self, index):
        return self.con[index]


def contour_stage_config(stage: str, window_seconds: float, contour_dropout: float):
    """A tiny stage config over small token spaces that takes a 13-value pitch contour."""
    from musiclm.lm.layout import TokenSpaces
    from musiclm.lm.stage_config import StageConfig

    spaces = TokenSpaces(mulan_levels=2, mulan_codebook=4, semantic_clusters=6, acoustic_codebook=8,
                         coarse_levels=2, fine_levels=2, contour_values=13)
    return StageConfig(stage=stage, tokens=spaces, window_seconds=window_seconds,
                       stride_seconds=window_seconds / 2,
                       transformer=TransformerConfig(dim=16, depth=1, heads=2, ffn_dim=32),
                       contour_conditioning=True, contour_dropout=contour_dropout).resolved()


def test_semantic_windows_carry_each_frames_contour_aligned_with_the_frame_it_predicts():
    from musiclm.lm.recipe import evaluate_stage

    config = contour_stage_config("semantic", 1.0, 0.3)
    assert config.transformer.aligned_vocab == 14
    clips = ClipsWithContour()
    data = StageDataset(clips, config, seed=0)
    condition = config.condition_length()
    with_contour = without = 0
    for epoch in range(10):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            aligned, labels, tokens = item["aligned"], item["labels"], item["tokens"]
            assert aligned.shape == tokens.shape and int(aligned[:condition - 1].abs().sum()) == 0
            if int(aligned.abs().sum()) == 0:
                without += 1
                continue
            with_contour += 1
            # the position that predicts target frame f carries frame f's contour value + 1
            targets = labels[condition - 1:] - data.layout.vocab.offset("semantic")
            start = next(s for s in range(0, 26) if np.array_equal(clips.sem[i][s:s + 25], targets.numpy()))
            expected = np.asarray(clips.con[i][start:start + 25])
            expected = np.concatenate([expected, np.repeat(expected[-1:], 25 - len(expected))])
            assert aligned[condition - 1:].tolist() == (expected + 1).tolist()
            assert int((labels != IGNORE).sum()) == 25
    assert 0.55 < with_contour / (with_contour + without) < 0.85
    batch = collate_sequences([data[0], data[1]])
    assert batch["aligned"].shape == batch["tokens"].shape
    model = Transformer(config.transformer)
    assert evaluate_stage(model, [batch], 1)["loss"] > 0


def test_contour_conditioning_needs_a_store_with_contours_and_a_stage_that_sees_mulan():
    config = stage_preset("semantic", "small")
    config = replace(config, model=replace(config.model, contour_conditioning=True))
    info = {"codec": {"levels": 12, "codebook_size": 1024, "frame_rate": 50},
            "semantic": {"num_clusters": 512, "token_rate": 25},
            "mulan": {"num_quantizers": 12, "codebook_size": 64}}
    with pytest.raises(StageDataError, match="--contour"):
        configure_for_store(config, info)
    fine = replace(stage_preset("fine", "small"), model=replace(stage_preset("fine", "small").model,
                                                                 contour_conditioning=True))
    with pytest.raises(StageDataError, match="semantic and coarse"):
        configure_for_store(fine, {**info, "contour": {"values": 13, "fingerprint": "abc"}})
    out = configure_for_store(config, {**info, "contour": {"values": 13, "fingerprint": "abc"}})
    assert out.model.tokens.contour_values == 13 and out.model.contour_fingerprint == "abc"
    assert out.model.transformer.aligned_vocab == 14


def test_fine_tuning_a_stage_to_take_the_contour_starts_from_its_weights(store_dir, tiny_musiclm, tmp_path):
    """``init_from`` a semantic stage without a contour: the same logits without one at step 0; after training
    the contour moves them, and the exported stage samples with it."""
    from musiclm.lm.recipe import StageRecipe
    from musiclm.melody.contour import PitchContour

    contour_store = tmp_path / "tokens"
    models = TokenizerModels(tiny_musiclm.codec, tiny_musiclm.semantic_tokenizer, tiny_musiclm.mulan,
                             contour=PitchContour())
    corpus = Path(TokenStore.open(store_dir).info.corpora[0]["path"])
    build_store([corpus], contour_store, models, shard_size=8, progress=False)
    store = TokenStore.open(contour_store)
    plain = tiny_training("semantic", store)
    train_stage(plain, [contour_store], tmp_path / "plain")
    source = stage_from_run(tmp_path / "plain")[0].save(tmp_path / "lm-plain")
    config = replace(tiny_training("semantic", store, steps=20), init_from=str(source))
    config = replace(config, model=replace(config.model, contour_conditioning=True, contour_dropout=0.0))
    config = configure_for_store(config, store_info_dict(store))
    recipe = StageRecipe(config, contour_store)
    batch = recipe.collate([recipe.build_dataset()[i] for i in range(4)])
    assert int(batch["aligned"].max()) > 0
    start = recipe.build_models()["lm"].eval()
    before = StageLM.from_pretrained(source).model
    torch.testing.assert_close(start(batch["tokens"], aligned=batch["aligned"]), before(batch["tokens"]))
    train_stage(config, [contour_store], tmp_path / "contour")
    stage = StageLM.from_pretrained(stage_from_run(tmp_path / "contour")[0].save(tmp_path / "lm-contour"))
    assert stage.config.tokens.contour_values == 13 and stage.config.contour_fingerprint
    assert float(stage.model.aligned_embedding.weight.abs().sum()) > 0
    tokens = batch["tokens"]
    assert not torch.allclose(stage.model(tokens, aligned=batch["aligned"]), stage.model(tokens))


def test_coarse_windows_carry_the_contour_of_each_acoustic_frames_semantic_frame():
    config = contour_stage_config("coarse", 0.4, 0.0)

    class Clips(ClipsWithContour):
        def codes(self, index):
            rng = np.random.default_rng(index)
            return rng.integers(0, 8, (4, 100))  # 2 s at 50 Hz

    clips = Clips()
    data = StageDataset(clips, config, seed=0)
    condition = config.condition_length()
    for i in range(len(data)):
        aligned = data[i]["aligned"]
        semantic_in_condition = data[i]["tokens"][2:condition - 1] - data.layout.vocab.offset("semantic")
        first = next(s for s in range(0, 50) if np.array_equal(clips.sem[i][s:s + 10], semantic_in_condition.numpy()))
        values = np.asarray(clips.con[i])[np.minimum(np.arange(first, first + 10), 47)]
        expected = np.repeat(np.repeat(values, 2) + 1, 2)  # 2 acoustic frames a semantic frame, 2 levels a frame
        assert aligned[condition - 1:].tolist() == expected.tolist()


def test_mulan_modulation_is_set_by_its_flag_and_only_for_stages_that_see_mulan():
    coarse = merge(stage_preset("coarse", "small"), {"model.mulan_modulation": True})
    assert coarse.model.transformer.prefix_modulation == coarse.model.tokens.mulan_levels == 12
    assert merge(coarse, {"model.mulan_modulation": False}).model.transformer.prefix_modulation == 0
    with pytest.raises(ConfigError, match="fine stage takes no MuLan"):
        merge(stage_preset("fine", "small"), {"model.mulan_modulation": True})


def test_fine_tuning_the_coarse_stage_with_mulan_modulation_starts_from_its_weights(store_dir, tiny_musiclm,
                                                                                     tmp_path):
    """``init_from`` a coarse stage without modulation: the same logits at step 0; after training the MuLan
    tokens modulate the blocks, the exported stage keeps the modulation, and the pipeline generates with it."""
    from musiclm.lm.recipe import StageRecipe

    store = TokenStore.open(store_dir)
    plain = tiny_training("coarse", store, steps=4)
    train_stage(plain, [store_dir], tmp_path / "plain")
    source = stage_from_run(tmp_path / "plain")[0].save(tmp_path / "lm-plain")
    config = replace(tiny_training("coarse", store, steps=20), init_from=str(source))
    config = configure_for_store(replace(config, model=replace(config.model, mulan_modulation=True)),
                                 store_info_dict(store))
    recipe = StageRecipe(config, store_dir)
    batch = recipe.collate([recipe.build_dataset()[i] for i in range(4)])
    start = recipe.build_models()["lm"].eval()
    assert start.modulation is not None
    torch.testing.assert_close(start(batch["tokens"]), StageLM.from_pretrained(source).model(batch["tokens"]))

    train_stage(config, [store_dir], tmp_path / "modulated")
    stage = StageLM.from_pretrained(stage_from_run(tmp_path / "modulated")[0].save(tmp_path / "lm-coarse"))
    assert stage.config.mulan_modulation and stage.model.config.prefix_modulation == 12
    assert float(stage.model.modulation.up.weight.abs().sum()) > 0
    tokens = batch["tokens"]
    nulled = tokens.clone()
    nulled[:, :12] = stage.layout.mulan_tokens(torch.zeros(tokens.shape[0], 12, dtype=torch.long))
    modulation = stage.model.modulation
    assert not torch.allclose(modulation(stage.model.embedding(tokens[:, :12])),
                              modulation(stage.model.embedding(nulled[:, :12])))
    model = MusicLM(tiny_musiclm.mulan, tiny_musiclm.codec, tiny_musiclm.stages["semantic"], stage,
                    tiny_musiclm.stages["fine"], tiny_musiclm.semantic_tokenizer)
    audio, rate = model.generate(["a tone number 3"], duration=1.2, seed=0)
    assert audio.shape == (1, int(1.2 * rate)) and bool(torch.isfinite(audio).all())
