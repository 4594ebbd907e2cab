from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from toy_recipe import LinearData, ToyRecipe

from musiclm.train.checkpoint import CheckpointManager
from musiclm.train.config import OptimizerConfig, TrainConfig
from musiclm.train.engine import Trainer, TrainingDiverged


def config(**overrides) -> TrainConfig:
    base = dict(max_steps=30, batch_size=8, checkpoint_every=10, keep_checkpoints=2, log_every=5,
                sample_every=10, eval_every=15, device="cpu", progress=False, checkpoint_minutes=None,
                optimizer=OptimizerConfig(lr=1e-2, warmup_steps=3))
    base.update(overrides)
    return TrainConfig(**base)


def eval_mse(net: torch.nn.Module) -> float:
    data = LinearData(128)
    x = torch.stack([data[i]["x"] for i in range(128)])
    y = torch.stack([data[i]["y"] for i in range(128)])
    net.eval()
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(net(x), y))


def test_loss_goes_down(tmp_path):
    recipe = ToyRecipe()
    trainer = Trainer(recipe, config(max_steps=150, checkpoint_every=50), tmp_path)
    torch.manual_seed(0)
    before = eval_mse(ToyRecipe().build_models()["net"])
    result = trainer.fit()
    after = eval_mse(trainer.models["net"])
    assert result.reason == "finished" and result.step == 150
    assert after < 0.25 * before
    assert recipe.sampled_steps == [10 * k for k in range(1, 16)]  # the sample hook ran on schedule
    assert (tmp_path / "tensorboard").is_dir() and any((tmp_path / "tensorboard").iterdir())


def test_two_phases_update_their_own_models_only(tmp_path):
    recipe = ToyRecipe(two_phases=True)
    trainer = Trainer(recipe, config(max_steps=5, checkpoint_every=5), tmp_path)
    trainer._setup()
    start = {n: [p.detach().clone() for p in m.parameters()] for n, m in trainer.models.items()}
    trainer.fit()
    for name, model in trainer.models.items():
        changed = [not torch.equal(a, b) for a, b in zip(start[name], model.parameters())]
        assert all(changed), f"every parameter of {name} should have been updated"
    assert set(trainer.optimizers) == {"net", "critic"}
    assert trainer.optimizers["net"].param_groups[0]["params"][0] is not \
        trainer.optimizers["critic"].param_groups[0]["params"][0]


def test_critic_phase_does_not_leak_gradients_into_net(tmp_path):
    recipe = ToyRecipe(two_phases=True)
    trainer = Trainer(recipe, config(max_steps=1), tmp_path)
    trainer._setup()
    critic_phase = trainer.phases[1]
    ctx_cache = {"pred": torch.zeros(8, 4, requires_grad=False)}
    from musiclm.train.engine import StepContext

    batch = {"x": torch.randn(8, 8), "y": torch.randn(8, 4)}
    with trainer._phase_scope(critic_phase, sync=True):
        ctx = StepContext(batch, 0, "critic", trainer.device, trainer.dist, ctx_cache,
                          trainer._models_for(critic_phase))
        # the net is called inside the critic's phase: it must not collect gradients
        ctx.cache["pred"] = ctx.model("net")(batch["x"])
        loss, _ = critic_phase.loss(ctx)
        loss.backward()
    assert all(p.grad is None for p in trainer.models["net"].parameters())
    assert all(p.grad is not None for p in trainer.models["critic"].parameters())
    assert all(p.requires_grad for p in trainer.models["net"].parameters())  # restored after the phase


def test_ema_weights_are_saved_and_differ(tmp_path):
    trainer = Trainer(ToyRecipe(), config(max_steps=20, ema_decay=0.9), tmp_path)
    trainer.fit()
    ckpt = CheckpointManager(tmp_path).latest()
    raw, ema = load_file(ckpt.path / "model-net.safetensors"), load_file(ckpt.path / "ema-net.safetensors")
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_checkpoint_retention_and_state(tmp_path):
    Trainer(ToyRecipe(), config(max_steps=40, keep_checkpoints=2), tmp_path).fit()
    steps = [c.step for c in CheckpointManager(tmp_path).list()]
    assert steps == [30, 40]
    state = json.loads((tmp_path / "checkpoints" / "step-00000040" / "state.json").read_text())
    assert state["step"] == 40 and state["train_config"]["max_steps"] == 40
    assert state["data"]["epoch"] * 32 + state["data"]["batch_in_epoch"] == 40  # 256 items / batch 8


def test_budget_steps_then_resume_matches_uninterrupted(tmp_path):
    straight = Trainer(ToyRecipe(), config(max_steps=30), tmp_path / "straight")
    straight.fit()
    chunks = []
    for _ in range(5):
        trainer = Trainer(ToyRecipe(), config(max_steps=30, budget_steps=7), tmp_path / "chunked")
        result = trainer.fit()
        chunks.append((result.step, result.reason))
        if result.reason == "finished":
            break
    assert chunks == [(7, "budget"), (14, "budget"), (21, "budget"), (28, "budget"), (30, "finished")]
    for name, model in straight.models.items():
        for (key, a), b in zip(model.state_dict().items(), trainer.models[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs after resuming"


def test_accumulation_and_multi_epoch_data_position(tmp_path):
    trainer = Trainer(ToyRecipe(dataset_size=40), config(max_steps=12, grad_accum=2, batch_size=4,
                                                          checkpoint_every=6), tmp_path)
    trainer.fit()
    # 12 steps x 2 micro-batches = 24 batches; 10 batches per epoch
    assert (trainer.epoch, trainer.batch_in_epoch) == (2, 4)


def test_nonfinite_loss_stops_with_a_clear_error_and_keeps_checkpoints(tmp_path):
    trainer = Trainer(ToyRecipe(nan_after=12), config(max_steps=30, max_nonfinite_steps=3), tmp_path)
    with pytest.raises(TrainingDiverged, match="NaN/inf for 3 consecutive steps"):
        trainer.fit()
    latest = CheckpointManager(tmp_path).latest()
    assert latest.step == 10
    assert all(torch.isfinite(t).all() for t in load_file(latest.path / "model-net.safetensors").values())


def test_resume_runs_nothing_when_finished(tmp_path):
    Trainer(ToyRecipe(), config(max_steps=10), tmp_path).fit()
    again = Trainer(ToyRecipe(), config(max_steps=10), tmp_path).fit()
    assert again.step == 10 and again.reason == "finished"


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    (tmp_path / "checkpoints" / ".tmp-step-00000099-1").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-00000050").mkdir()  # no state.json: incomplete, ignored
    Trainer(ToyRecipe(), config(max_steps=10), tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ".tmp-step-00000099-1" not in names
    assert [c.step for c in CheckpointManager(tmp_path).list()] == [10]
