"""Codec training through the shared engine: losses fall, the GAN phases run, no NaN; export; loss parts."""

from __future__ import annotations

import math

import pytest
import torch
from codec_helpers import one_torch_thread, tiny_training_config, write_corpus  # noqa: F401 (autouse fixture)

from musiclm.codec.api import WEIGHTS_FILE, Codec
from musiclm.codec.discriminators import Discriminators, split_outputs
from musiclm.codec.losses import (
    balanced_loss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from musiclm.codec.metrics import chroma_agreement, quality_report, si_sdr
from musiclm.codec.recipe import CodecRecipe
from musiclm.config import DEFAULT_PRESET, merge, to_dict
from musiclm.errors import ConfigError
from musiclm.train.checkpoint import CheckpointError
from musiclm.train.engine import Trainer


class RecordingRecipe(CodecRecipe):
    """Keeps every step's generator and discriminator logs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gen_logs: list[dict[str, float]] = []
        self.disc_logs: list[dict[str, float]] = []
        self.metrics: list[dict[str, float]] = []

    def generator_loss(self, ctx):
        loss, logs = super().generator_loss(ctx)
        self.gen_logs.append({**logs, "step": ctx.step, "loss": float(loss.detach())})
        return loss, logs

    def discriminator_loss(self, ctx):
        loss, logs = super().discriminator_loss(ctx)
        self.disc_logs.append({**logs, "step": ctx.step, "loss": float(loss.detach())})
        return loss, logs

    def evaluate(self, models, step):
        metrics = super().evaluate(models, step)
        self.metrics.append(metrics)
        return metrics


def test_tiny_codec_trains_through_the_engine(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", clips=10, seconds=1.5, valid=2)
    config = tiny_training_config(**{"train.ema_decay": 0.9})
    recipe = RecordingRecipe(config, [corpus], samples_dir=tmp_path / "run" / "samples")
    result = Trainer(recipe, config.train, tmp_path / "run").fit()
    assert result.step == 30 and result.reason == "finished"

    logs = recipe.gen_logs
    assert len(logs) == 30 and all(math.isfinite(entry["loss"]) for entry in logs)
    first = sum(entry["mel"] for entry in logs[:5]) / 5
    last = sum(entry["mel"] for entry in logs[-5:]) / 5
    assert last < first * 0.9, (first, last)
    assert all("gan" not in entry and "adversarial" not in entry for entry in logs[:20])
    assert all(math.isfinite(entry["adversarial"]) for entry in logs[20:])
    assert [entry["step"] for entry in recipe.disc_logs] == list(range(15, 30))  # 5 steps before the GAN
    assert all(math.isfinite(entry["loss"]) for entry in recipe.disc_logs)

    metrics = recipe.metrics[-1]
    expected = {"mel_l1@6kbps", "si_sdr@6kbps", "mel_l1@1.5kbps", "perplexity/level01", "perplexity/level12"}
    assert expected <= set(metrics)
    assert all(math.isfinite(v) for k, v in metrics.items() if not k.startswith("si_sdr"))
    assert (tmp_path / "run" / "samples" / "step-00000030" / "clip0-6kbps.wav").exists()

    codec = Codec.from_run(tmp_path / "run")  # EMA weights of the latest checkpoint
    assert "ema-codec" in (codec.source or "")
    folder = codec.save(tmp_path / "model")
    assert (folder / WEIGHTS_FILE).stat().st_size < 16 * 2**20
    audio = torch.randn(1, 4000) * 0.1
    assert Codec.from_pretrained(folder).roundtrip(audio.numpy()).shape == (1, 4000)


def test_recipe_config_round_trips_through_checkpoint_state(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", clips=3, seconds=1.0, valid=1)
    config = tiny_training_config()
    recipe = CodecRecipe(config, [corpus])
    stored = recipe.config_dict()
    assert stored["corpora"] == [str(corpus)]
    assert stored["model"] == to_dict(config.model)
    assert DEFAULT_PRESET == "small"


def test_balancer_gives_each_term_its_share_of_a_unit_gradient():
    torch.manual_seed(0)
    output = torch.randn(3, 100, requires_grad=True)
    target = torch.randn(3, 100)
    losses = {"a": 1000.0 * (output - target).pow(2).mean(), "b": (output - target).abs().mean()}
    weights = {"a": 1.0, "b": 3.0}
    total, norms = balanced_loss(losses, weights, output)
    assert float(total.detach()) == pytest.approx(float((1.0 * losses["a"] + 3.0 * losses["b"]).detach()), rel=1e-5)
    (grad,) = torch.autograd.grad(total, output)
    grad_a = torch.autograd.grad(losses["a"], output, retain_graph=True)[0]
    grad_b = torch.autograd.grad(losses["b"], output, retain_graph=True)[0]
    expected = 0.25 * grad_a / norms["grad_norm_a"] + 0.75 * grad_b / norms["grad_norm_b"]
    assert torch.allclose(grad, expected, atol=1e-6)
    # the huge scale of "a" does not let it dominate: its share of the gradient is 1/4
    assert float((0.25 * grad_a / norms["grad_norm_a"]).flatten(1).norm(dim=1).mean()) == pytest.approx(0.25, rel=1e-4)
    plain, _ = balanced_loss(losses, weights, output, balance=False)
    assert float(plain.detach()) == pytest.approx(float(total.detach()), rel=1e-5)


def test_gan_losses_and_discriminator_shapes():
    from musiclm.codec.config import DiscriminatorConfig

    torch.manual_seed(0)
    disc = Discriminators(DiscriminatorConfig(stft_ffts=(256,), stft_channels=4, periods=(2, 3), period_channels=4,
                                              period_max_channels=8, period_layers=2))
    real, fake = torch.randn(2, 4001) * 0.1, torch.randn(2, 4001) * 0.1
    with torch.no_grad():
        real_out, fake_out = split_outputs(disc(torch.cat([real, fake])), 2)
    assert len(real_out) == 3 and all(logits.shape[0] == 2 for logits, _ in real_out + fake_out)
    assert float(feature_matching_loss(real_out, real_out)) == 0.0
    assert float(feature_matching_loss(real_out, fake_out)) > 0.0
    confident = [(torch.full((2, 1, 4, 4), 2.0), [])]
    fooled = [(torch.full((2, 1, 4, 4), -2.0), [])]
    assert float(discriminator_hinge_loss(confident, fooled)) == 0.0
    assert float(discriminator_hinge_loss(fooled, confident)) == pytest.approx(6.0)
    assert float(generator_hinge_loss(confident)) == 0.0
    assert float(generator_hinge_loss(fooled)) == pytest.approx(3.0)


def test_quality_measures():
    torch.manual_seed(0)
    clean = torch.randn(2, 24_000) * 0.1
    noisy = clean + 0.01 * torch.randn(2, 24_000)
    perfect = quality_report(clean, clean)
    assert perfect["mel_l1"] == pytest.approx(0.0, abs=1e-5) and perfect["si_sdr"] > 100
    report = quality_report(clean, noisy)
    assert report["mel_l1"] > 0 and 15 < report["si_sdr"] < 25  # 20 dB of added noise
    assert float(si_sdr(clean[0], 3.0 * clean[0])) > 100  # scale-invariant
    assert math.isnan(float(si_sdr(torch.zeros(1000), clean[0, :1000])))


def test_chroma_agreement_catches_a_tone_the_codec_adds():
    t = torch.arange(48_000) / 24_000
    melody = torch.sin(2 * math.pi * torch.where(t < 1.0, 440.0, 523.25) * t)  # A4 then C5
    buzz = 2.0 * torch.sin(2 * math.pi * 150.0 * t)  # the frame-rate tone of an untrained decoder
    shifted = torch.sin(2 * math.pi * torch.where(t < 1.0, 466.16, 554.37) * t)  # a semitone up
    scores = chroma_agreement(melody.repeat(3, 1), torch.stack([0.5 * melody, melody + buzz, shifted]))
    assert scores[0] > 0.95 and scores[1] < 0.1 and scores[2] < 0.1
    assert quality_report(melody[None], melody[None])["chroma"] > 0.95
    assert math.isnan(float(chroma_agreement(torch.zeros(1, 24_000), melody[None, :24_000])[0]))


def _trained_export(tmp_path, corpus):
    """A tiny codec trained 30 steps (quantiser initialised) and exported."""
    config = tiny_training_config()
    Trainer(CodecRecipe(config, [corpus]), config.train, tmp_path / "base").fit()
    return Codec.from_run(tmp_path / "base").save(tmp_path / "base-model"), config


def test_init_from_an_export_reproduces_it_exactly(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", clips=6, seconds=1.0, valid=1)
    folder, config = _trained_export(tmp_path, corpus)
    model = CodecRecipe(merge(config, {"init_from": str(folder)}), [corpus]).build_models()["codec"].eval()
    reference = Codec.from_pretrained(folder).model
    audio = torch.randn(2, 4800) * 0.1
    codes = reference.encode(audio)
    assert torch.equal(model.encode(audio), codes)
    torch.testing.assert_close(model.decode(codes), reference.decode(codes), atol=1e-5, rtol=1e-4)

    other = merge(config, {"init_from": str(folder), "model.decoder_channels": 8})
    with pytest.raises(CheckpointError, match="config differs"):
        CodecRecipe(other, [corpus]).build_models()
    with pytest.raises(ConfigError, match="decoder_only needs init_from"):
        merge(config, {"decoder_only": True}).validate()


def test_decoder_only_training_keeps_the_codes_and_the_token_fingerprint(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", clips=6, seconds=1.0, valid=1)
    folder, config = _trained_export(tmp_path, corpus)
    tuned_config = merge(config, {"init_from": str(folder), "decoder_only": True, "adversarial_start": 10,
                                  "train.max_steps": 20})
    recipe = RecordingRecipe(tuned_config, [corpus])
    Trainer(recipe, tuned_config.train, tmp_path / "tuned").fit()
    assert recipe.disc_logs and all(math.isfinite(entry["loss"]) for entry in recipe.gen_logs)
    assert {entry["levels"] for entry in recipe.gen_logs} <= {3.0, 6.0, 9.0, 12.0}

    base, tuned = Codec.from_pretrained(folder), Codec.from_run(tmp_path / "tuned")
    audio = torch.randn(2, 9600) * 0.1
    codes = base.model.encode(audio)
    assert torch.equal(tuned.model.encode(audio), codes)  # codebooks and latent statistics untouched
    assert not torch.allclose(tuned.model.decode(codes), base.model.decode(codes), atol=1e-4)
    assert tuned.token_fingerprint() == base.token_fingerprint()
    assert tuned.fingerprint() != base.fingerprint()
    assert tuned.matches_fingerprint(base.fingerprint()) is False  # a whole-codec print names one decoder
    assert tuned.matches_fingerprint(base.token_fingerprint()) and base.matches_fingerprint(base.fingerprint())

    folder.rename(tmp_path / "moved")  # resuming reads the checkpoint only, not the init folder
    longer = merge(tuned_config, {"train.max_steps": 22})
    assert Trainer(CodecRecipe(longer, [corpus]), longer.train, tmp_path / "tuned").fit().step == 22
    assert torch.equal(Codec.from_run(tmp_path / "tuned").model.encode(audio), codes)
