"""Masked-prediction training on the engine: targets fit per run, the loss goes down, resume and CLI work."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from semantic_testkit import make_corpus, tiny_training_config

from musiclm.cli import main
from musiclm.semantic.io import load_encoder, model_from_run
from musiclm.semantic.recipe import (
    SemanticRecipe,
    batch_masks,
    masked_prediction_loss,
    prepare_targets,
    train_semantic,
)
from musiclm.semantic.targets import TargetError
from musiclm.semantic.tokenizer import SemanticTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("semantic") / "corpus", clips=12, seconds=2.0)


def test_masks_are_a_function_of_seed_step_and_index():
    a = batch_masks(torch.tensor([3, 7]), 50, step=5, seed=0, mask_prob=0.1, mask_length=4)
    assert torch.equal(a, batch_masks(torch.tensor([3, 7]), 50, 5, 0, 0.1, 4))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, batch_masks(torch.tensor([3, 7]), 50, 6, 0, 0.1, 4))


def test_masked_prediction_loss_counts_only_masked_frames():
    targets = [torch.tensor([[0, 1, 2, 0]])]
    perfect = torch.full((1, 4, 3), -20.0)
    perfect[0, torch.arange(4), targets[0][0]] = 20.0
    wrong = perfect.clone()
    wrong[0, 3] = perfect[0, 2]  # the last frame is mispredicted ...
    mask = torch.tensor([[True, True, False, False]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    loss, logs = masked_prediction_loss([wrong], targets, mask, valid)
    assert float(loss) < 1e-6 and logs["acc0"] == 1.0  # ... but it is not masked
    loss, _ = masked_prediction_loss([wrong], targets, mask, valid, unmasked_weight=1.0)
    assert float(loss) > 1.0


def fixed_batch_loss(recipe: SemanticRecipe, model: torch.nn.Module) -> float:
    """Masked-prediction loss of ``model`` on 8 fixed training crops with fixed masks."""
    data = recipe.build_dataset()
    wav = torch.stack([data[i % len(data)]["wav"] for i in range(8)])
    targets = recipe.targets.assign(wav)
    mask = batch_masks(torch.arange(8), targets[0].shape[1], 0, 123, 0.2, 3)
    with torch.no_grad():
        logits, valid = model.eval()(wav, mask=mask)
        loss, _ = masked_prediction_loss(logits, targets, mask, valid)
    return float(loss)


def test_training_lowers_the_masked_prediction_loss_and_resumes(corpus, tmp_path):
    config = tiny_training_config(steps=40)
    run = tmp_path / "run"
    targets = prepare_targets(config, [corpus], run)
    assert (run / "targets" / "targets.yaml").exists() and targets.sizes == (8, 4)
    recipe = SemanticRecipe(config, [corpus], targets)
    torch.manual_seed(config.train.seed)
    before = fixed_batch_loss(recipe, recipe.build_models()["semantic"])
    result = train_semantic(replace(config, train=replace(config.train, budget_steps=25)), [corpus], run)
    assert result.reason == "budget" and result.step == 25
    result = train_semantic(config, [corpus], run)  # resumes from step 25
    assert result.reason == "finished" and result.step == 40
    model, loaded_config, checkpoint = model_from_run(run)
    assert checkpoint.step == 40 and loaded_config.model.target_sizes == (8, 4)
    after = fixed_batch_loss(recipe, model)
    assert after < 0.8 * before, (before, after)
    metrics = recipe.evaluate({"semantic": model}, 40)  # the engine's hook: valid-split crops
    assert set(metrics) >= {"loss", "acc0", "acc1"} and np.isfinite(metrics["loss"])
    changed = replace(config, targets=replace(config.targets, clusters=(8, 5)))
    with pytest.raises(TargetError, match="new run folder"):
        prepare_targets(changed, [corpus], run)


def test_cli_trains_fits_exports_tokenizes_and_evaluates(corpus, tmp_path, capsys):
    run, model_dir = tmp_path / "run", tmp_path / "tok"
    config = tiny_training_config(steps=4)
    from musiclm.config import save_yaml

    save_yaml(config, tmp_path / "cfg.yaml")
    assert main(["semantic", "train", "--corpus", str(corpus), "--run-dir", str(run), "--config",
                 str(tmp_path / "cfg.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 4
    assert main(["semantic", "fit-kmeans", str(run), "--corpus", str(corpus), "--layer", "1", "--clusters", "6",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_clusters"] == 6
    assert main(["semantic", "export", str(run), "-o", str(model_dir), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["layer"] == 1 and exported["token_rate"] == 25
    tokenizer = SemanticTokenizer.from_pretrained(model_dir)
    assert tokenizer.num_clusters == 6 and len(tokenizer.model.layers) == 1

    clip = corpus / "audio" / "clip001.wav"
    out = tmp_path / "tokens.npy"
    assert main(["semantic", "tokenize", str(clip), "--model", str(model_dir), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = np.load(out)
    assert report["frames"] == 50 == len(saved) and saved.tolist() == report["tokens"]

    assert main(["semantic", "eval", "--model", str(model_dir), "--corpus", str(corpus), "--fit-clips", "4",
                 "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["clips"] == 4 and len(evaluation["results"]) == 4

    # iteration 1: targets from layer 1 of the iteration-0 run
    run1 = tmp_path / "run1"
    assert main(["semantic", "train", "--corpus", str(corpus), "--run-dir", str(run1), "--config",
                 str(tmp_path / "cfg.yaml"), "--iteration", "1", "--teacher", str(run), "--teacher-layer", "1",
                 "--set", "targets.teacher_clusters=5", "--budget-steps", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    assert model_from_run(run1)[1].model.target_sizes == (5,)
    assert len(load_encoder(model_dir, 1).layers) == 1

    assert main(["semantic", "train", "--corpus", str(corpus), "--run-dir", str(tmp_path / "x"),
                 "--iteration", "1"]) == 1
    assert "--teacher" in capsys.readouterr().err
