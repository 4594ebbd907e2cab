"""``MusicLM``: text (and optionally a melody or an audio prompt) in, 24 kHz music out.

The pipeline composes the parts, each trained on its own: MuLan turns the prompt into conditioning tokens,
the semantic stage writes 25 Hz semantic tokens, the coarse stage the first RVQ levels of the codec at 50 Hz,
the fine stage the remaining levels, and the codec's decoder renders the waveform. Durations longer than a
stage's window are generated in sliding windows (each new window continues the previous one), which is
also how story mode switches prompts without a seam and how continuation extends an audio prompt.

Typical use::

    from musiclm.pipeline import MusicLM
    model = MusicLM.from_pretrained()          # the bundled default model
    audio, rate = model.generate(["an upbeat funk track with slap bass and brass"], duration=10.0, seed=1)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from musiclm.bundled import PRETRAINED
from musiclm.errors import AudioError, MusicLMError
from musiclm.lm.data import melody_rows
from musiclm.lm.sampling import SamplingParams
from musiclm.lm.stage import StageLM, check_stage_chain, tokens_used

MAX_DURATION = 300.0
"""The longest audio one call generates, in seconds (five minutes; sliding windows make any length
possible, this cap only keeps a typo from starting an hours-long job)."""
MAX_PROMPT_CHARS = 2000
MODEL_ENV = "MUSICLM_MODEL"
"""Environment variable naming the default model folder (instead of the bundled one)."""
MAX_BATCH = 64
COMPONENTS = {"codec": "codec", "mulan": "mulan", "semantic_tokenizer": "semantic",
              "semantic": "lm-semantic", "coarse": "lm-coarse", "fine": "lm-fine"}
"""Sub-folder of a model folder holding each component."""
MELODY_COMPONENT = "melody"
"""Optional sub-folder: the melody model whose tokens a melody-conditioned semantic stage was trained on."""
MIN_MELODY_SECONDS = 1.0
OUTPUT_PEAK = 0.99
"""Rows whose decoded peak exceeds this are scaled down to it (no clipping in 16-bit files)."""
STAGE_NAMES = ("semantic", "coarse", "fine")

ProgressCallback = Callable[[str, int, int], None]
"""``(stage, done, total)``: stage is "semantic", "coarse", "fine", "decode" or "rerank"."""


class GenerationError(MusicLMError):
    """A generation request is unusable (empty prompt, absurd duration, malformed story, ...)."""


@dataclass
class Sampling:
    """The sampling parameters of the three stages."""

    semantic: SamplingParams
    coarse: SamplingParams
    fine: SamplingParams

    def for_stage(self, stage: str) -> SamplingParams:
        return getattr(self, stage)


def _per_stage(value: float | int | Sequence[float | int] | None, name: str) -> list[float | int | None]:
    if value is None:
        return [None, None, None]
    if isinstance(value, int | float):
        return [value, value, value]
    values = list(value)
    if len(values) != 3:
        raise GenerationError(f"{name} takes one value or three (semantic, coarse, fine), got {len(values)}")
    return values


def story_from_spec(spec: str) -> list[tuple[float, str]]:
    """Parse ``"0:a calm intro;15:the drums come in"`` into ``[(0.0, "a calm intro"), (15.0, ...)]``."""
    segments = []
    for index, part in enumerate(p for p in spec.split(";") if p.strip()):
        head, sep, text = part.partition(":")
        if not sep:
            raise GenerationError(f"story segment {index + 1} ({part.strip()!r}) needs the form SECONDS:TEXT")
        try:
            start = float(head.strip())
        except ValueError:
            raise GenerationError(f"story segment {index + 1}: {head.strip()!r} is not a time in seconds") from None
        segments.append((start, text.strip()))
    if not segments:
        raise GenerationError("the story is empty; use the form '0:first prompt;15:second prompt'")
    return segments


class MusicLM:
    """The assembled text-to-music model (see the module docstring)."""

    def __init__(self, mulan, codec, semantic: StageLM, coarse: StageLM, fine: StageLM,
                 semantic_tokenizer=None, device: str | torch.device = "cpu", melody=None):
        check_stage_chain(semantic, coarse, fine)
        self.mulan, self.codec, self.semantic_tokenizer = mulan, codec, semantic_tokenizer
        self.melody = melody
        if melody is not None:
            _check_melody_model(melody, semantic)
        self.stages = {"semantic": semantic, "coarse": coarse, "fine": fine}
        spaces = coarse.config.tokens
        if mulan.num_quantizers != spaces.mulan_levels or mulan.codebook_size != spaces.mulan_codebook:
            raise GenerationError(f"MuLan's quantiser ({mulan.num_quantizers} x {mulan.codebook_size}) does not "
                                  f"match the stages' ({spaces.mulan_levels} x {spaces.mulan_codebook})")
        if codec.codebook_size != spaces.acoustic_codebook or codec.num_quantizers < fine.config.tokens.acoustic_levels:
            raise GenerationError("the codec's codebooks do not match the acoustic stages'")
        expected = {tokens_used(s.config).get("mulan") for s in (semantic, coarse)} - {None}
        if not all(mulan.matches_fingerprint(recorded) for recorded in expected):
            raise GenerationError(f"the stages were trained on tokens of another MuLan ({', '.join(sorted(expected))}) "
                                  f"than this one ({mulan.token_fingerprint()}): its text tokens would mean nothing "
                                  f"to them; "
                                  f"fine-tune the stages on a store made with this MuLan (docs/GENERATION.md)")
        recorded_codec = {tokens_used(s.config).get("codec") for s in (coarse, fine)} - {None}
        if not all(codec.matches_fingerprint(recorded) for recorded in recorded_codec):
            raise GenerationError(f"the acoustic stages were trained on codes of another codec "
                                  f"({', '.join(sorted(recorded_codec))}) than this one ({codec.token_fingerprint()}): "
                                  f"its decoder would turn their tokens into noise; use the codec they were trained "
                                  f"with, or one whose decoder alone was retrained from it (docs/CODEC.md)")
        self.device = torch.device("cpu")
        self.to(device)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None,
                        device: str | torch.device = "cpu") -> MusicLM:
        """Load a model folder (None = ``$MUSICLM_MODEL`` or the bundled default) holding ``codec/``,
        ``mulan/``, ``semantic/``, ``lm-semantic/``, ``lm-coarse/`` and ``lm-fine/``."""
        from musiclm.codec.api import Codec
        from musiclm.mulan.api import MuLan
        from musiclm.semantic.tokenizer import SemanticTokenizer

        if path is None and os.environ.get(MODEL_ENV):
            path = os.environ[MODEL_ENV]
        root = Path(path) if path is not None else PRETRAINED
        missing = [sub for sub in COMPONENTS.values() if not (root / sub).is_dir()]
        if missing:
            hint = (f"the bundled model is not complete in this version of the package (see docs/MODEL_CARD.md); "
                    f"pass --model DIR or set ${MODEL_ENV}" if path is None
                    else "make the parts with `musiclm <part> export` (see docs/MODEL_CARD.md)")
            raise GenerationError(f"{root}: incomplete model folder, missing {', '.join(missing)} ({hint})")
        stages = {name: StageLM.from_pretrained(root / COMPONENTS[name], stage=name) for name in STAGE_NAMES}
        melody = None
        if stages["semantic"].config.tokens.melody_levels and (root / MELODY_COMPONENT).is_dir():
            from musiclm.melody.api import MelodyModel

            melody = MelodyModel.from_pretrained(root / MELODY_COMPONENT)
        model = cls(MuLan.from_pretrained(root / "mulan"), Codec.from_pretrained(root / "codec"),
                    stages["semantic"], stages["coarse"], stages["fine"],
                    SemanticTokenizer.from_pretrained(root / "semantic"), device, melody)
        model.source = str(root)
        return model

    def with_stage(self, stage: StageLM) -> MusicLM:
        """A pipeline sharing every part with this one except ``stage`` (e.g. the ablation's coarse stage
        trained without semantic tokens)."""
        stages = dict(self.stages)
        stages[stage.name] = stage
        melody = self.melody if stages["semantic"].config.tokens.melody_levels else None
        out = MusicLM(self.mulan, self.codec, stages["semantic"], stages["coarse"], stages["fine"],
                      self.semantic_tokenizer, self.device, melody)
        out.source, out.skip_fine_stage = self.source, self.skip_fine_stage
        return out

    def as_draft(self) -> MusicLM:
        """A pipeline sharing every part with this one that skips the fine stage (:attr:`skip_fine_stage`):
        for a server that serves drafts and full renders from one set of weights at once."""
        out = self.with_stage(self.stages["coarse"])
        out.skip_fine_stage = True
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write every component into ``folder`` (the layout :meth:`from_pretrained` reads)."""
        folder = Path(folder)
        self.mulan.save(folder / COMPONENTS["mulan"])
        self.codec.save(folder / COMPONENTS["codec"])
        if self.semantic_tokenizer is not None:
            self.semantic_tokenizer.save(folder / COMPONENTS["semantic_tokenizer"])
        for name in STAGE_NAMES:
            self.stages[name].save(folder / COMPONENTS[name])
        if self.melody is not None:
            self.melody.save(folder / MELODY_COMPONENT)
        return folder

    def to(self, device: str | torch.device) -> MusicLM:
        from musiclm.device import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        for part in (self.mulan, self.codec, self.semantic_tokenizer, self.melody, *self.stages.values()):
            if part is not None:
                part.to(self.device)
        return self

    source: str | None = None
    skip_fine_stage: bool = False
    """Draft mode: the fine stage does not run and the codec decodes the coarse levels alone (about 1.7x faster
    end to end; with the bundled model the MuLan similarity is unchanged, docs/GENERATION.md)."""

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def supports_melody(self) -> bool:
        """True when the semantic stage follows a melody: by melody tokens (with the melody model loaded) or by
        a frame-rate pitch contour."""
        tokens = self.stages["semantic"].config.tokens
        return (self.melody is not None and bool(tokens.melody_levels)) or bool(self.contour_stages)

    @property
    def contour_stages(self) -> list[str]:
        """The stages that take a pitch contour (a melody's, with :meth:`generate_with_melody`)."""
        return [name for name in ("semantic", "coarse") if self.stages[name].config.tokens.contour_values]

    @property
    def uses_melody_tokens(self) -> bool:
        """True when the semantic stage takes melody tokens and the melody model is loaded."""
        return self.melody is not None and bool(self.stages["semantic"].config.tokens.melody_levels)

    @property
    def acoustic_levels(self) -> int:
        return self.stages["fine"].config.tokens.acoustic_levels

    # ---------------------------------------------------------------------------------------- settings
    def sampling(self, temperature: float | Sequence[float] | None = None, top_k: int | Sequence[int] | None = None,
                 top_p: float | Sequence[float] | None = None, cfg: float | Sequence[float] | None = None) -> Sampling:
        """Per-stage sampling: each stage's defaults, overridden by one value (all stages) or three.

        Guidance only acts on the stages that see MuLan tokens (semantic and coarse).
        """
        values = {"temperature": _per_stage(temperature, "temperature"), "top_k": _per_stage(top_k, "top_k"),
                  "top_p": _per_stage(top_p, "top_p"), "cfg_scale": _per_stage(cfg, "cfg")}
        out = {}
        for i, name in enumerate(STAGE_NAMES):
            params = self.stages[name].config.sampling
            changes = {k: v[i] for k, v in values.items() if v[i] is not None}
            if name == "fine":
                changes.pop("cfg_scale", None)
            params = replace(params, **changes)
            try:
                params.validate()
                params.per_level(self.stages[name].layout.levels)  # one level_temperature factor per level
            except MusicLMError as exc:
                raise GenerationError(f"{name} stage: {exc}") from None
            out[name] = params
        return Sampling(**out)

    # ---------------------------------------------------------------------------------------- checking
    def _check_texts(self, texts: str | Sequence[str]) -> list[str]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise GenerationError("no prompt given")
        if len(texts) > MAX_BATCH:
            raise GenerationError(f"at most {MAX_BATCH} prompts per call, got {len(texts)}")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise GenerationError(f"prompt {i + 1} is empty; describe the music, e.g. 'a calm piano piece'")
            if len(text) > MAX_PROMPT_CHARS:
                raise GenerationError(f"prompt {i + 1} has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        return [t.strip() for t in texts]

    @staticmethod
    def check_duration(duration: float) -> float:
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise GenerationError(f"duration must be a number of seconds, got {duration!r}") from None
        if not math.isfinite(duration) or duration <= 0:
            raise GenerationError(f"duration must be > 0 seconds, got {duration}")
        if duration > MAX_DURATION:
            raise GenerationError(f"duration {duration} s exceeds the maximum of {MAX_DURATION:.0f} s")
        return duration

    # -------------------------------------------------------------------------------------- generation
    def generate(self, texts: str | Sequence[str], duration: float = 10.0, *, num_samples: int = 1,
                 seed: int = 0, temperature: float | Sequence[float] | None = None,
                 top_k: int | Sequence[int] | None = None, top_p: float | Sequence[float] | None = None,
                 cfg: float | Sequence[float] | None = None, best_of: int = 1,
                 progress: ProgressCallback | None = None) -> tuple[torch.Tensor, int]:
        """``(audio [len(texts) * num_samples, samples] float32, sample_rate)`` for each prompt.

        Rows are prompt-major (all samples of prompt 1, then of prompt 2, ...). ``best_of`` > 1 generates that
        many candidates per row and keeps the one whose MuLan audio embedding is closest to its prompt's.
        """
        return self.generate_story([(0.0, texts)], duration, num_samples=num_samples, seed=seed,
                                   temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg, best_of=best_of,
                                   progress=progress)

    def generate_story(self, story: Sequence[tuple[float, str | Sequence[str]]], duration: float, *,
                       num_samples: int = 1, seed: int = 0, temperature: float | Sequence[float] | None = None,
                       top_k: int | Sequence[int] | None = None, top_p: float | Sequence[float] | None = None,
                       cfg: float | Sequence[float] | None = None, best_of: int = 1,
                       progress: ProgressCallback | None = None,
                       prompt_audio: np.ndarray | torch.Tensor | None = None,
                       prompt_sample_rate: int | None = None,
                       melody_audio: np.ndarray | torch.Tensor | None = None,
                       melody_sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
        """Music whose prompt changes at the given times: ``[(0.0, text), (15.0, text), ...]``.

        Each text may be one string (for every row) or one string per row. The music stays continuous: a
        window that starts after a switch is conditioned on the new prompt and continues the previous audio.
        ``prompt_audio`` is continued (see :meth:`generate_continuation`); ``melody_audio`` is followed (see
        :meth:`generate_with_melody`, which checks that the model takes melodies).
        """
        duration = self.check_duration(duration)
        schedule = self._schedule(story, duration)
        rows = len(schedule[0][1])
        if num_samples < 1 or best_of < 1:
            raise GenerationError("num_samples and best_of must be >= 1")
        if rows * num_samples * best_of > MAX_BATCH * 4:
            raise GenerationError(f"{rows} prompts x {num_samples} samples x best_of {best_of} is too many rows")
        sampling = self.sampling(temperature, top_k, top_p, cfg)
        repeat = num_samples * best_of
        tokens = [(start, self.mulan.text_tokens(texts).repeat_interleave(repeat, dim=0)) for start, texts in schedule]
        prompt = None
        if prompt_audio is not None:
            prompt = self._prompt_tokens(prompt_audio, prompt_sample_rate, rows * repeat, duration)
        melody = contour = None
        if melody_audio is not None:
            if not self.supports_melody:
                raise GenerationError("this model has no melody conditioning (its semantic stage takes neither "
                                      "melody tokens with a melody/ model nor a pitch contour)")
            if self.uses_melody_tokens:  # [m, windows, levels]
                melody = _per_row(self.melody_tokens(melody_audio, melody_sample_rate, duration), rows, repeat)
            if self.contour_stages:  # [m, semantic frames]
                contour = _per_row(self.melody_contour(melody_audio, melody_sample_rate, duration), rows, repeat)
        audio = self.render_tokens(tokens, duration, sampling, seed, progress, prompt, melody=melody,
                                   contour=contour)
        if best_of > 1:
            texts_per_row = [t for t in schedule[0][1] for _ in range(num_samples)]
            audio = self._rerank(audio, texts_per_row, best_of, progress)
        return audio, self.sample_rate

    def generate_continuation(self, prompt_audio: np.ndarray | torch.Tensor, prompt_sample_rate: int,
                              texts: str | Sequence[str], duration: float = 10.0, **kwargs) -> tuple[torch.Tensor, int]:
        """Continue ``prompt_audio`` (``[samples]`` or one row per prompt ``[B, samples]``) following ``texts``.

        As in audiocraft, ``duration`` is the length of the returned audio *including* the prompt, which is
        re-synthesised through the codec so the seam is inaudible.
        """
        return self.generate_story([(0.0, texts)], duration, prompt_audio=prompt_audio,
                                   prompt_sample_rate=prompt_sample_rate, **kwargs)

    def generate_with_melody(self, texts: str | Sequence[str], melody_audio: np.ndarray | torch.Tensor,
                             melody_sample_rate: int, duration: float = 10.0, *, num_samples: int = 1, seed: int = 0,
                             temperature: float | Sequence[float] | None = None,
                             top_k: int | Sequence[int] | None = None, top_p: float | Sequence[float] | None = None,
                             cfg: float | Sequence[float] | None = None, best_of: int = 1,
                             progress: ProgressCallback | None = None) -> tuple[torch.Tensor, int]:
        """Music in the style of ``texts`` that follows the tune of ``melody_audio`` (hummed, sung, whistled or
        played; ``[samples]`` for every prompt or ``[len(texts), samples]``). A melody shorter than
        ``duration`` loops. Returns ``(audio [len(texts) * num_samples, samples], sample_rate)``."""
        if not self.supports_melody:
            raise GenerationError("this model has no melody conditioning (its semantic stage was trained without "
                                  "melody tokens, or its folder has no melody/ model)")
        return self.generate_story([(0.0, texts)], duration, num_samples=num_samples, seed=seed,
                                   temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg, best_of=best_of,
                                   progress=progress, melody_audio=melody_audio, melody_sample_rate=melody_sample_rate)

    def melody_contour(self, melody_audio: np.ndarray | torch.Tensor, sample_rate: int | None,
                       duration: float) -> torch.Tensor:
        """The melody's pitch contour ``[B, frames]`` (dominant pitch class or silent per semantic frame, see
        :mod:`musiclm.melody.contour`) covering ``duration`` seconds, the melody looped as often as needed."""
        from musiclm.audio import resample
        from musiclm.melody.contour import PitchContour, loop_contour

        stages = self.contour_stages
        if not stages:
            raise GenerationError("this model takes no pitch contour")
        rate_per_second = self.stages["semantic"].config.tokens.semantic_rate
        extractor = PitchContour(frame_rate=rate_per_second)
        for name in stages:
            recorded = self.stages[name].config.contour_fingerprint
            if recorded and recorded != extractor.fingerprint():
                raise GenerationError(f"the {name} stage was trained on pitch contours of other settings "
                                      f"({recorded}, this version makes {extractor.fingerprint()})")
        wav = self._checked_melody(melody_audio, sample_rate)
        rate = self.sample_rate
        if sample_rate != rate:
            wav = torch.as_tensor(resample(wav.numpy(), int(sample_rate), rate), dtype=torch.float32)  # type: ignore[arg-type]
        contour = torch.as_tensor(extractor(wav, rate)).long()
        return loop_contour(contour, math.ceil(duration * rate_per_second))

    def _checked_melody(self, melody_audio: np.ndarray | torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        """The melody as float32 rows ``[B, samples]``, after the checks every melody path makes."""
        if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
            raise AudioError(f"the melody's sample rate must be a positive integer, got {sample_rate!r}")
        wav = _audio_rows(melody_audio, "the melody", allow_empty=False).detach().cpu()
        if not bool(torch.isfinite(wav).all()):
            raise AudioError("the melody contains NaN or infinite samples")
        seconds = wav.shape[1] / sample_rate
        if seconds < MIN_MELODY_SECONDS:
            raise AudioError(f"the melody is {seconds:.2f} s long; give at least {MIN_MELODY_SECONDS:g} s")
        if float(wav.abs().max()) < 1e-4:
            raise AudioError("the melody is silent")
        return wav

    def melody_tokens(self, melody_audio: np.ndarray | torch.Tensor, sample_rate: int | None,
                      duration: float) -> torch.Tensor:
        """Melody tokens ``[B, windows, levels]`` covering ``duration`` seconds (and at least one semantic
        window), the melody looped as often as needed."""
        from musiclm.audio import resample

        if self.melody is None:
            raise GenerationError("this model has no melody model")
        if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
            raise AudioError(f"the melody's sample rate must be a positive integer, got {sample_rate!r}")
        wav = self._checked_melody(melody_audio, sample_rate)
        rate = self.melody.sample_rate
        if sample_rate != rate:
            wav = torch.as_tensor(resample(wav.numpy(), int(sample_rate), rate), dtype=torch.float32)
        window = self.stages["semantic"].config.window_seconds
        needed = int(math.ceil(max(duration, window, self.melody.window_seconds) * rate))
        wav = _looped(wav, needed)
        return self.melody.tokens(wav, rate).long().cpu()

    def generate_unconditional(self, num_samples: int = 1, duration: float = 10.0, *, seed: int = 0,
                               temperature: float | Sequence[float] | None = None,
                               top_k: int | Sequence[int] | None = None, top_p: float | Sequence[float] | None = None,
                               progress: ProgressCallback | None = None) -> tuple[torch.Tensor, int]:
        """Music with no prompt: every stage sees the null MuLan tokens it learned through condition dropout
        (the evaluation's unconditional floor)."""
        duration = self.check_duration(duration)
        if not 1 <= num_samples <= MAX_BATCH:
            raise GenerationError(f"num_samples must be within [1, {MAX_BATCH}]")
        sampling = self.sampling(temperature, top_k, top_p, cfg=1.0)
        spaces = self.stages["semantic"].config.tokens
        placeholder = torch.zeros(num_samples, spaces.mulan_levels, dtype=torch.long)
        audio = self.render_tokens([(0.0, placeholder)], duration, sampling, seed, progress, unconditional=True)
        return audio, self.sample_rate

    # --------------------------------------------------------------------------------------- internals
    def _schedule(self, story: Sequence[tuple[float, str | Sequence[str]]],
                  duration: float) -> list[tuple[float, list[str]]]:
        if not story:
            raise GenerationError("the story is empty")
        out: list[tuple[float, list[str]]] = []
        rows = None
        previous = -1.0
        for index, item in enumerate(story):
            try:
                start, texts = item
                start = float(start)
            except (TypeError, ValueError):
                raise GenerationError(f"story segment {index + 1} must be (seconds, text)") from None
            if index == 0 and start != 0.0:
                raise GenerationError("the story's first segment must start at 0 s")
            if start <= previous:
                raise GenerationError(f"story segment {index + 1} starts at {start} s, not after the previous one")
            if start >= duration:
                raise GenerationError(f"story segment {index + 1} starts at {start} s, after the end ({duration} s)")
            checked = self._check_texts(texts)
            if rows is not None and len(checked) not in (1, rows):
                raise GenerationError(f"story segment {index + 1} has {len(checked)} prompts, expected {rows}")
            rows = rows or len(checked)
            out.append((start, checked))
            previous = start
        return [(start, texts * rows if len(texts) == 1 else texts) for start, texts in out]

    def _prompt_tokens(self, audio: np.ndarray | torch.Tensor, rate: int | None, rows: int,
                       duration: float) -> dict[str, torch.Tensor]:
        """Semantic ``[rows, p]`` and acoustic ``[rows, 2p, levels]`` tokens of an audio prompt."""
        if self.semantic_tokenizer is None:
            raise GenerationError("continuation needs the semantic tokenizer, which this model folder lacks")
        if rate is None:
            raise GenerationError("give the prompt's sample rate")
        wav = _audio_rows(audio, "the audio prompt")
        if not bool(torch.isfinite(wav).all()):
            raise AudioError("the audio prompt contains NaN or infinite samples")
        seconds = wav.shape[1] / rate
        if seconds < 0.5:
            raise AudioError(f"the audio prompt is {seconds:.2f} s long; give at least 0.5 s")
        if seconds >= duration:
            raise GenerationError(f"the audio prompt ({seconds:.1f} s) must be shorter than the total duration "
                                  f"({duration} s), which includes it")
        if float(wav.abs().max()) < 1e-4:
            raise AudioError("the audio prompt is silent")
        if rows % wav.shape[0]:
            raise GenerationError(f"{wav.shape[0]} prompt signals do not divide into {rows} rows (one per prompt)")
        semantic = self.semantic_tokenizer.tokenize(wav, rate).cpu()
        codes = self.codec.encode(wav, rate, bitrate=None).cpu()[:, : self.acoustic_levels]
        ratio = self.stages["coarse"].config.tokens.acoustic_per_semantic
        frames = min(semantic.shape[1], codes.shape[2] // ratio)
        semantic, codes = semantic[:, :frames], codes[:, :, : frames * ratio].transpose(1, 2)
        if semantic.shape[0] != rows:
            factor = rows // semantic.shape[0]
            semantic, codes = semantic.repeat_interleave(factor, 0), codes.repeat_interleave(factor, 0)
        return {"semantic": semantic, "acoustic": codes}

    def resynthesize(self, audio: np.ndarray | torch.Tensor, sample_rate: int, texts: str | Sequence[str],
                     duration: float | None = None, *, seed: int = 0,
                     temperature: float | Sequence[float] | None = None, top_k: int | Sequence[int] | None = None,
                     top_p: float | Sequence[float] | None = None, cfg: float | Sequence[float] | None = None,
                     keep_levels: int = 0, progress: ProgressCallback | None = None) -> tuple[torch.Tensor, int]:
        """New acoustics for the semantic tokens of ``audio`` (``[samples]`` or ``[B, samples]``): the coarse and
        fine stages, conditioned on ``texts``, render what the semantic tokenizer heard (AudioLM's
        semantic-to-acoustic path; the semantic stage does not run). It shows what of a signal (its melody,
        rhythm) survives the acoustic stages. ``duration`` defaults to the audio's length. ``keep_levels``
        (0 to the coarse level count) keeps that many first RVQ levels of the audio's own codes and samples only
        the coarse levels above them: how much each level's sampling costs."""
        if self.semantic_tokenizer is None:
            raise GenerationError("resynthesis needs the semantic tokenizer, which this model folder lacks")
        if not self.stages["coarse"].config.semantic_conditioning:
            raise GenerationError("this coarse stage takes no semantic tokens (the ablation), so it cannot "
                                  "render given ones")
        coarse_levels = self.stages["coarse"].config.tokens.coarse_levels
        if not 0 <= keep_levels <= coarse_levels:
            raise GenerationError(f"keep_levels must lie in 0..{coarse_levels} (the coarse stage's levels), "
                                  f"got {keep_levels}")
        wav = _audio_rows(audio, "the audio", allow_empty=False)
        duration = self.check_duration(wav.shape[1] / sample_rate if duration is None else duration)
        schedule = self._schedule([(0.0, texts)], duration)
        if len(schedule[0][1]) not in (1, wav.shape[0]) and wav.shape[0] != 1:
            raise GenerationError(f"{wav.shape[0]} signals for {len(schedule[0][1])} prompts")
        rows = max(len(schedule[0][1]), wav.shape[0])
        texts_per_row = schedule[0][1] * rows if len(schedule[0][1]) == 1 else schedule[0][1]
        semantic = self.semantic_tokenizer.tokenize(wav, sample_rate).cpu()
        frames = math.ceil(duration * self.stages["coarse"].config.tokens.semantic_rate)
        semantic = _looped(semantic, frames)  # shorter audio loops, as a melody does
        semantic = semantic.expand(rows, -1) if semantic.shape[0] == 1 else semantic
        kept = None
        if keep_levels:
            codes = self.codec.encode(wav, sample_rate, bitrate=None).cpu()[:, :keep_levels].transpose(1, 2)
            acoustic_frames = frames * self.stages["coarse"].config.tokens.acoustic_per_semantic
            kept = torch.full((codes.shape[0], acoustic_frames, coarse_levels), -1, dtype=torch.long)
            kept[..., :keep_levels] = _looped(codes, acoustic_frames)  # looped as its semantic tokens are
            kept = kept.expand(rows, -1, -1) if kept.shape[0] == 1 else kept
        tokens = [(0.0, self.mulan.text_tokens(texts_per_row))]
        audio_out = self.render_tokens(tokens, duration, self.sampling(temperature, top_k, top_p, cfg), seed,
                                       progress, semantic=semantic, coarse_codes=kept)
        return audio_out, self.sample_rate

    def render_tokens(self, mulan: list[tuple[float, torch.Tensor]], duration: float, sampling: Sampling,
                      seed: int = 0, progress: ProgressCallback | None = None,
                      prompt: dict[str, torch.Tensor] | None = None,
                      unconditional: bool = False, melody: torch.Tensor | None = None,
                      semantic: torch.Tensor | None = None, contour: torch.Tensor | None = None,
                      coarse_codes: torch.Tensor | None = None) -> torch.Tensor:
        """MuLan tokens (a schedule ``[(start_seconds, [B, Q])]``) -> audio ``[B, samples]`` through the stages.

        ``unconditional`` replaces the MuLan tokens by the null tokens everywhere (use ``cfg`` 1 with it). A
        coarse stage trained without semantic conditioning (the paper's ablation) skips the semantic stage.
        ``melody`` (``[B, windows, levels]`` melody tokens over the whole duration) conditions each semantic
        window on the melody windows under it; ``contour`` (``[B, frames]`` pitch-contour values at the semantic
        rate over the whole duration) conditions each frame of the stages trained with one on its own. Given
        ``semantic`` tokens (``[B, frames]`` covering the
        duration), the semantic stage does not run and the acoustic stages render those. ``coarse_codes``
        (``[B, frames, coarse levels]`` codes covering the duration, -1 where sampled) fixes the given codes.
        """
        semantic_lm, coarse_lm, fine_lm = (self.stages[n] for n in STAGE_NAMES)
        spaces = coarse_lm.config.tokens
        batch = mulan[0][1].shape[0]
        ratio = spaces.acoustic_per_semantic
        semantic_frames = math.ceil(duration * spaces.semantic_rate)
        acoustic_frames = semantic_frames * ratio

        def tokens_at(seconds: float) -> torch.Tensor:
            current = mulan[0][1]
            for start, toks in mulan:
                if start <= seconds + 1e-9:
                    current = toks
            return current

        def report(stage: str) -> Callable[[int, int], None] | None:
            if progress is None:
                return None
            return lambda done, total: progress(stage, done, total)

        generator = _generators(seed)
        # stage 1: semantic tokens
        semantic_layout = semantic_lm.layout

        melody_spaces = semantic_lm.config.tokens

        def melody_at(start: int) -> torch.Tensor | None:
            if melody is None:
                return None
            return melody_rows(melody, start / melody_spaces.semantic_rate, melody_spaces.melody_slots,
                               melody_spaces.melody_hop_seconds)

        def semantic_condition(start: int, first_new: int, end: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            toks = tokens_at(first_new / spaces.semantic_rate)
            cond = semantic_layout.condition(toks, melody_at(start))
            return (_null(semantic_layout, cond), None) if unconditional else (cond, _null(semantic_layout, cond))

        use_semantic = coarse_lm.config.semantic_conditioning
        if semantic is not None:
            if not use_semantic:
                raise GenerationError("this coarse stage takes no semantic tokens (the ablation)")
            if semantic.shape[0] != batch or semantic.shape[1] < semantic_frames:
                raise GenerationError(f"given semantic tokens {tuple(semantic.shape)} do not cover {batch} rows of "
                                      f"{semantic_frames} frames")
            semantic = semantic[:, :semantic_frames].to(torch.long)
        elif use_semantic:
            semantic = semantic_lm.generate(semantic_frames, semantic_condition, batch,
                                            prompt=None if prompt is None else prompt["semantic"],
                                            params=sampling.semantic, generator=generator["semantic"],
                                            progress=report("semantic"),
                                            contour=contour if semantic_lm.config.tokens.contour_values else None
                                            )[..., 0]
        # stage 2: coarse acoustic tokens
        coarse_layout = coarse_lm.layout

        def coarse_condition(start: int, first_new: int, end: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            toks = tokens_at(first_new / spaces.acoustic_rate)
            window = None if semantic is None else semantic[:, start // ratio: math.ceil(end / ratio)]
            cond = coarse_layout.condition(toks, window)
            return (_null(coarse_layout, cond), None) if unconditional else (cond, _null(coarse_layout, cond))

        coarse_prompt = None if prompt is None else prompt["acoustic"][..., : spaces.coarse_levels]
        coarse_contour = None
        if contour is not None and coarse_lm.config.tokens.contour_values:  # one value per acoustic frame
            coarse_contour = contour[:, :semantic_frames].repeat_interleave(ratio, dim=1)
        coarse = coarse_lm.generate(acoustic_frames, coarse_condition, batch, prompt=coarse_prompt,
                                    params=sampling.coarse, generator=generator["coarse"],
                                    progress=report("coarse"), contour=coarse_contour, forced=coarse_codes)
        # stage 3: fine acoustic tokens (not in draft mode)
        if self.skip_fine_stage:
            codes = coarse.transpose(1, 2)  # [B, coarse levels, frames]
        else:
            fine_layout = fine_lm.layout

            def fine_condition(start: int, first_new: int, end: int) -> tuple[torch.Tensor, None]:
                return fine_layout.condition(coarse[:, start:end]), None

            fine_prompt = (None if prompt is None
                           else prompt["acoustic"][..., spaces.coarse_levels: spaces.acoustic_levels])
            fine = fine_lm.generate(acoustic_frames, fine_condition, batch, prompt=fine_prompt, params=sampling.fine,
                                    generator=generator["fine"], progress=report("fine"))
            codes = torch.cat([coarse, fine], dim=-1).transpose(1, 2)  # [B, levels, frames]
        if progress is not None:
            progress("decode", 0, 1)
        audio = self.codec.decode(codes.to(self.codec.device), length=int(round(duration * self.sample_rate)))
        if progress is not None:
            progress("decode", 1, 1)
        return limit_peak(audio.float().cpu())

    def _rerank(self, audio: torch.Tensor, texts: list[str], best_of: int,
                progress: ProgressCallback | None) -> torch.Tensor:
        """Keep, of every ``best_of`` consecutive rows, the one closest to its prompt in MuLan space."""
        if progress is not None:
            progress("rerank", 0, 1)
        scores = self.mulan_similarity(audio, [t for t in texts for _ in range(best_of)])
        best = scores.view(-1, best_of).argmax(dim=1)
        rows = torch.arange(len(texts)) * best_of + best
        if progress is not None:
            progress("rerank", 1, 1)
        return audio[rows]

    def mulan_similarity(self, audio: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity ``[B]`` of each row's MuLan audio embedding with its text's (MCC per clip)."""
        audio_emb = self.mulan.embed_audio(audio, self.sample_rate)
        text_emb = self.mulan.embed_text(list(texts))
        return (audio_emb * text_emb).sum(dim=-1)


def _audio_rows(audio: np.ndarray | torch.Tensor, what: str, allow_empty: bool = True) -> torch.Tensor:
    """``[samples]`` or ``[B, samples]`` audio as a float32 tensor ``[B, samples]`` (``what`` names it in errors)."""
    wav = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    wav = wav.float()
    wav = wav[None] if wav.dim() == 1 else wav
    if wav.dim() != 2 or (not allow_empty and wav.shape[1] == 0):
        raise AudioError(f"{what} must be [samples] or [batch, samples], got {tuple(wav.shape)}")
    return wav


def _check_melody_model(melody, semantic: StageLM) -> None:
    """The melody model must make the tokens the semantic stage was trained on."""
    spaces = semantic.config.tokens
    if not spaces.melody_levels:
        return
    if melody.num_quantizers != spaces.melody_levels or melody.codebook_size != spaces.melody_codebook:
        raise GenerationError(f"the melody model's tokens ({melody.num_quantizers} x {melody.codebook_size}) do not "
                              f"match the semantic stage's ({spaces.melody_levels} x {spaces.melody_codebook})")
    expected = semantic.config.melody_fingerprint
    if expected and melody.fingerprint() != expected:
        raise GenerationError(f"the melody model ({melody.fingerprint()}) is not the one the semantic stage was "
                              f"trained with ({expected})")


def _looped(rows: torch.Tensor, length: int) -> torch.Tensor:
    """``rows`` (``[B, n, ...]``) repeated along dim 1 as often as needed and cut to ``length``."""
    repeats = [1] * rows.dim()
    repeats[1] = -(-length // rows.shape[1])
    return rows.repeat(*repeats)[:, :length]


def _per_row(melody: torch.Tensor, rows: int, repeat: int) -> torch.Tensor:
    """A melody condition of one melody or one per prompt (``[m, ...]``) -> one per generated row."""
    if melody.shape[0] not in (1, rows):
        raise GenerationError(f"{melody.shape[0]} melodies for {rows} prompts; give one, or one per prompt")
    return melody.expand(rows, *melody.shape[1:]).repeat_interleave(repeat, dim=0)


def _null(layout, condition: torch.Tensor) -> torch.Tensor:
    """The condition with its MuLan tokens replaced by null tokens (the unconditional half of CFG)."""
    drop = torch.ones(condition.shape[0], dtype=torch.bool)
    return layout.drop_condition(condition, drop)


def limit_peak(audio: torch.Tensor) -> torch.Tensor:
    """Rows ``[B, samples]`` scaled down (never up) so no peak exceeds :data:`OUTPUT_PEAK`: the output's level."""
    peak = audio.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    return audio * torch.clamp(OUTPUT_PEAK / peak, max=1.0)


def _generators(seed: int) -> dict[str, torch.Generator]:
    """One CPU generator per stage, each a pure function of ``seed`` and the stage."""
    out = {}
    for index, name in enumerate(STAGE_NAMES):
        value = int(np.random.default_rng([int(seed), index]).integers(2**62))
        out[name] = torch.Generator(device="cpu").manual_seed(value)
    return out
