"""Training recipe of the codec on the shared engine: a generator phase and a discriminator phase.

Per step, the ``gen`` phase runs the codec once (its output is cached, detached, for the ``disc`` phase),
computes the reconstruction losses and, from ``adversarial_start``, the adversarial and feature-matching
losses through the frozen discriminators, their weight ramped up over ``adversarial_ramp`` steps; the
``disc`` phase starts ``discriminator_warmup`` steps earlier so the discriminators are not random when they
first steer the codec. NaN/inf steps are skipped and counted
by the engine. Evaluation (on the valid split) reports mel/STFT distances and SI-SDR at 6 and 1.5 kbps and
the codebook perplexity of every RVQ level; samples go to TensorBoard and ``<run>/samples``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from musiclm.audio import save_audio
from musiclm.codec.api import initialise_from_export
from musiclm.codec.config import CodecTrainingConfig
from musiclm.codec.discriminators import Discriminators, split_outputs
from musiclm.codec.losses import (
    MultiResolutionMelLoss,
    MultiResolutionSTFTLoss,
    balanced_loss,
    discriminator_accuracy,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from musiclm.codec.metrics import quality_report
from musiclm.codec.model import SoundStream
from musiclm.codec.quantizer import perplexity
from musiclm.config import to_dict
from musiclm.data.dataset import ClipDataset
from musiclm.data.manifest import ManifestError
from musiclm.train.engine import LossOutput, Phase, Recipe, StepContext, Trainer, TrainResult
from musiclm.train.logger import TrainLogger

log = logging.getLogger("musiclm.codec")

EVAL_SEED = 20_231_301


class CodecRecipe(Recipe):
    """SoundStream + discriminators on random crops of one or more corpus folders."""

    def __init__(self, config: CodecTrainingConfig, corpora: list[str | os.PathLike[str]],
                 samples_dir: str | os.PathLike[str] | None = None):
        config.validate()
        if not corpora:
            raise ManifestError("at least one corpus folder is needed")
        self.config = config
        self.corpora = [str(c) for c in corpora]
        self.samples_dir = Path(samples_dir) if samples_dir is not None else None
        cfg = config.loss
        rate = config.model.sample_rate
        self.mel_loss = MultiResolutionMelLoss(rate, cfg.mel_ffts, cfg.mel_bins)
        self.stft_loss = MultiResolutionSTFTLoss(cfg.stft_ffts)
        self._eval_audio: torch.Tensor | None = None

    # ----------------------------------------------------------------------------------- engine hooks
    def build_models(self) -> dict[str, nn.Module]:
        codec = SoundStream(self.config.model)
        if self.config.init_from and not self.resuming:  # a resumed run loads its checkpoint instead
            initialise_from_export(codec, self.config.init_from)
        if self.config.decoder_only:
            codec.freeze_tokenizer()
        return {"codec": codec, "disc": Discriminators(self.config.discriminator)}

    def build_dataset(self) -> Dataset:
        return ClipDataset(self.corpora, split="train", crop_seconds=self.config.crop_seconds,
                           sample_rate=self.config.model.sample_rate, seed=self.config.train.seed)

    def phases(self) -> list[Phase]:
        return [
            Phase("gen", ("codec",), self.generator_loss),
            Phase("disc", ("disc",), self.discriminator_loss, start_step=self.config.discriminator_start),
        ]

    def config_dict(self) -> dict[str, Any]:
        return {**to_dict(self.config), "corpora": self.corpora}

    # ------------------------------------------------------------------------------------------ losses
    def generator_loss(self, ctx: StepContext) -> LossOutput:
        cfg = self.config
        real = ctx.batch["wav"]
        out = ctx.model("codec")(real)
        fake = out.audio
        ctx.cache["fake"] = fake.detach()
        self.mel_loss.to(real.device)
        self.stft_loss.to(real.device)
        fake32 = fake.float()
        losses = {
            "time_l1": torch.nn.functional.l1_loss(fake32, real),
            "mel": self.mel_loss(fake32, real),
            "stft": self.stft_loss(fake32, real),
        }
        weights = {name: float(getattr(cfg.loss, name)) for name in losses}
        logs: dict[str, float] = {name: float(value.detach()) for name, value in losses.items()}
        gan_weight = (cfg.loss.adversarial + cfg.loss.feature_matching) * cfg.adversarial_scale(ctx.step)
        if gan_weight > 0:
            outputs = ctx.model("disc")(torch.cat([real, fake]))
            real_out, fake_out = split_outputs(outputs, real.shape[0])
            adversarial = generator_hinge_loss(fake_out)
            matching = feature_matching_loss(real_out, fake_out)
            # one balanced term, so the discriminators are back-propagated through once per step
            losses["gan"] = ((cfg.loss.adversarial * adversarial + cfg.loss.feature_matching * matching)
                             / (cfg.loss.adversarial + cfg.loss.feature_matching))
            weights["gan"] = gan_weight
            logs.update({"adversarial": float(adversarial.detach()), "feature_matching": float(matching.detach())})
        total, norms = balanced_loss(losses, weights, fake, balance=cfg.loss.balancer)
        total = total + cfg.loss.commitment * out.commitment
        ppl = perplexity(out.codes.detach(), cfg.model.codebook_size)
        logs.update(norms)
        logs.update({"commitment": float(out.commitment.detach()), "levels": float(out.levels),
                     "ppl_level1": float(ppl[0]), "ppl_min": float(ppl.min())})
        return total, logs

    def discriminator_loss(self, ctx: StepContext) -> LossOutput:
        real = ctx.batch["wav"]
        fake = ctx.cache["fake"]
        outputs = ctx.model("disc")(torch.cat([real, fake]))
        real_out, fake_out = split_outputs(outputs, real.shape[0])
        loss = discriminator_hinge_loss(real_out, fake_out)
        return loss, {"accuracy": discriminator_accuracy(real_out, fake_out)}

    # ------------------------------------------------------------------------------ evaluation, samples
    def _eval_batch(self) -> torch.Tensor | None:
        """Fixed validation crops (the train split when a corpus has no valid clips)."""
        cfg = self.config
        if self._eval_audio is None and cfg.eval_clips > 0:
            try:
                data = ClipDataset(self.corpora, split="valid", crop_seconds=cfg.eval_seconds,
                                   sample_rate=cfg.model.sample_rate, seed=EVAL_SEED)
            except ManifestError:
                data = ClipDataset(self.corpora, split="train", crop_seconds=cfg.eval_seconds,
                                   sample_rate=cfg.model.sample_rate, seed=EVAL_SEED)
            count = min(cfg.eval_clips, len(data))
            picks = np.linspace(0, len(data) - 1, count).round().astype(int)
            self._eval_audio = torch.stack([data[int(i)]["wav"] for i in picks])
        return self._eval_audio

    def _eval_levels(self) -> list[int]:
        """All levels (6 kbps) and the fewest trained with quantiser dropout (1.5 kbps)."""
        cfg = self.config.model
        low = cfg.dropout_levels_multiple
        return [cfg.num_quantizers] + ([low] if cfg.quantizer_dropout > 0 and low < cfg.num_quantizers else [])

    def evaluate(self, models: dict[str, nn.Module], step: int) -> dict[str, float]:
        audio = self._eval_batch()
        if audio is None:
            return {}
        codec: SoundStream = models["codec"]  # type: ignore[assignment]
        device = next(codec.parameters()).device
        audio = audio.to(device)
        metrics: dict[str, float] = {}
        codes = torch.cat([codec.encode(audio[i : i + 4]) for i in range(0, len(audio), 4)])
        length = audio.shape[-1]
        for levels in self._eval_levels():
            kbps = self.config.model.bitrate_for_levels(levels)
            decoded = torch.cat([codec.decode(codes[i : i + 4, :levels]) for i in range(0, len(codes), 4)])
            report = quality_report(audio, decoded[..., :length], self.config.model.sample_rate)
            metrics.update({f"{name}@{kbps:g}kbps": value for name, value in report.items()})
        for level, value in enumerate(perplexity(codes, self.config.model.codebook_size).tolist(), 1):
            metrics[f"perplexity/level{level:02d}"] = value
        return metrics

    def on_sample(self, models: dict[str, nn.Module], step: int, logger: TrainLogger) -> None:
        audio = self._eval_batch()
        if audio is None or self.config.sample_clips == 0:
            return
        codec: SoundStream = models["codec"]  # type: ignore[assignment]
        device = next(codec.parameters()).device
        clips = audio[: self.config.sample_clips].to(device)
        codes = codec.encode(clips)
        rate = self.config.model.sample_rate
        folder = self.samples_dir / f"step-{step:08d}" if self.samples_dir is not None else None
        for levels in self._eval_levels():
            kbps = self.config.model.bitrate_for_levels(levels)
            decoded = codec.decode(codes[:, :levels])[..., : clips.shape[-1]].float().cpu().numpy()
            for i, wav in enumerate(decoded):
                wav = np.nan_to_num(wav)
                logger.audio(f"decoded_{kbps:g}kbps/{i}", wav, rate, step)
                if folder is not None:
                    save_audio(folder / f"clip{i}-{kbps:g}kbps.wav", wav, rate)
        for i, wav in enumerate(clips.float().cpu().numpy()):
            logger.audio(f"original/{i}", wav, rate, step)
            if folder is not None:
                save_audio(folder / f"clip{i}-original.wav", wav, rate)


def train_codec(config: CodecTrainingConfig, corpora: list[str | os.PathLike[str]],
                run_dir: str | os.PathLike[str]) -> TrainResult:
    """Train (or resume) a codec in ``run_dir``; runs alone or under ``torchrun``."""
    recipe = CodecRecipe(config, corpora, samples_dir=Path(run_dir) / "samples")
    return Trainer(recipe, config.train, run_dir).fit()
