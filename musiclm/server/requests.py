"""Validation of generation requests (JSON or form fields) and of melody uploads.

Every problem becomes a :class:`RequestError` naming the field, which the API answers as a 4xx JSON body.
Uploads are decoded from memory with soundfile after their header has been checked (size, rate, channels,
length), so no upload is ever written to disk or decoded past the limits.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from musiclm.errors import AudioError, MusicLMError
from musiclm.pipeline import MAX_DURATION, MAX_PROMPT_CHARS, GenerationError, story_from_spec

SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "cfg")
MELODY_METHOD = "generate_with_melody"
NO_MELODY = "this model has no melody conditioning"


def takes_melody(model: object) -> bool:
    """True when ``model`` can follow a melody (it has the method and, if it says, supports it)."""
    return callable(getattr(model, MELODY_METHOD, None)) and bool(getattr(model, "supports_melody", True))


class RequestError(MusicLMError):
    """A request field is unusable: answered with ``status`` and a JSON body naming ``field``."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "errors": [{"field": self.field, "message": self.message}]}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_duration: float = 60.0
    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_upload_bytes: int = 10 * 1024 * 1024
    max_melody_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.max_duration <= MAX_DURATION:
            raise MusicLMError(f"the duration cap must be in (0, {MAX_DURATION:.0f}] s, got {self.max_duration}")
        if not 0 < self.max_prompt_chars <= MAX_PROMPT_CHARS:
            raise MusicLMError(f"the prompt cap must be in (0, {MAX_PROMPT_CHARS}], got {self.max_prompt_chars}")
        if self.max_upload_bytes <= 0 or self.max_melody_seconds <= 0:
            raise MusicLMError("the upload limits must be positive")


class StorySegment(BaseModel):
    """One prompt of a story: it applies from ``start`` seconds on."""

    model_config = ConfigDict(extra="forbid")
    start: float
    text: str


Sampled = float | list[float] | str | None


class GenerateParams(BaseModel):
    """The body of ``POST /api/generate`` (JSON, or the same names as form fields beside a ``melody`` file).

    Sampling values take one number (every stage) or three (semantic, coarse, fine), as a list or as
    comma-separated text. Give a ``prompt`` or a ``story``, not both.
    """

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="what the music should be, e.g. 'a calm piano piece'")
    story: list[StorySegment] | str | None = Field(
        None, description="prompts that change over time: [{start, text}, ...] or '0:a calm intro;15:drums join'")
    duration: float = Field(10.0, description="seconds of audio")
    seed: int | None = Field(None, description="random seed (same seed, same music); default: a random one")
    temperature: Sampled = None
    top_k: Sampled = None
    top_p: Sampled = None
    cfg: Sampled = Field(None, description="classifier-free guidance scale")
    draft: bool = Field(False, description="skip the fine stage and decode the coarse levels alone (faster)")

    @field_validator("temperature", "top_k", "top_p", "cfg", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


@dataclass
class GenerationRequest:
    """A validated request, ready for the worker."""

    prompt: str | None
    story: list[tuple[float, str]] | None
    duration: float
    seed: int
    sampling: dict[str, Any] = field(default_factory=dict)
    melody: np.ndarray | None = None
    melody_seconds: float | None = None
    draft: bool = False

    @property
    def title(self) -> str:
        return self.prompt if self.prompt is not None else " / ".join(text for _, text in self.story or [])

    def public(self) -> dict[str, Any]:
        """The request as JSON (what the job status and the result's metadata show)."""
        story = [{"start": s, "text": t} for s, t in self.story] if self.story else None
        return {"prompt": self.prompt, "story": story,
                "duration": self.duration, "seed": self.seed, **self.sampling, "draft": self.draft,
                "melody_seconds": None if self.melody_seconds is None else round(self.melody_seconds, 3)}


def parse_generation(fields: Mapping[str, Any], model: Any, limits: Limits, melody: bytes | None = None,
                     rng: np.random.Generator | None = None) -> GenerationRequest:
    """Check ``fields`` (and an uploaded melody) against ``limits`` and what ``model`` can do."""
    try:
        params = GenerateParams.model_validate(dict(fields))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first.get("loc", ()) if not _is_type_tag(str(p)))
        raise RequestError(name or "body", first.get("msg", "invalid value")) from None
    duration = _duration(params.duration, limits)
    prompt, story = _prompt_and_story(params, duration, limits)
    seed = params.seed
    if seed is None:
        seed = int((rng or np.random.default_rng()).integers(2**31))
    elif not 0 <= seed < 2**63:
        raise RequestError("seed", f"must be in [0, 2**63), got {seed}")
    sampling = {}
    for name in SAMPLING_FIELDS:
        value = _numbers(getattr(params, name), name)
        if value is not None:
            try:
                model.sampling(**{name: value})
            except MusicLMError as exc:
                raise RequestError(name, str(exc)) from None
            sampling[name] = value
    request = GenerationRequest(prompt, story, duration, seed, sampling, draft=params.draft)
    if melody is not None:
        request.melody = decode_melody(melody, limits)
        request.melody_seconds = len(request.melody) / _rate()
        if story is not None:
            raise RequestError("melody", "melody conditioning takes a prompt, not a story")
        if not takes_melody(model):
            raise RequestError("melody", NO_MELODY)
    return request


def _is_type_tag(part: str) -> bool:
    """pydantic puts the tried type of a union into an error's location (``('top_k', 'list[float]')``)."""
    return part in {"float", "int", "str", "bool", "list", "dict", "none"} or "[" in part or part.startswith("function")


def _duration(value: float, limits: Limits) -> float:
    if not math.isfinite(value) or value <= 0:
        raise RequestError("duration", f"must be a number of seconds > 0, got {value}")
    if value > limits.max_duration:
        raise RequestError("duration", f"{value} s exceeds this server's maximum of {limits.max_duration:g} s")
    return float(value)


def _check_text(text: str, name: str, limits: Limits) -> str:
    if len(text) > limits.max_prompt_chars:
        raise RequestError(name, f"has {len(text)} characters; the limit is {limits.max_prompt_chars}")
    if not text.strip():
        raise RequestError(name, "is empty; describe the music, e.g. 'a calm piano piece'")
    return text.strip()


def _prompt_and_story(params: GenerateParams, duration: float,
                      limits: Limits) -> tuple[str | None, list[tuple[float, str]] | None]:
    story_given = params.story is not None and not (isinstance(params.story, str) and not params.story.strip())
    prompt_given = params.prompt is not None and bool(params.prompt.strip())
    if story_given and prompt_given:
        raise RequestError("story", "give a prompt or a story, not both")
    if not story_given:
        if params.prompt is None:
            raise RequestError("prompt", "is missing; describe the music, e.g. 'a calm piano piece'")
        return _check_text(params.prompt, "prompt", limits), None
    if isinstance(params.story, str):
        if len(params.story) > limits.max_prompt_chars * 8:
            raise RequestError("story", f"is longer than {limits.max_prompt_chars * 8} characters")
        try:
            segments = story_from_spec(params.story)
        except GenerationError as exc:
            raise RequestError("story", str(exc)) from None
    else:
        segments = [(s.start, s.text) for s in params.story]
    if not segments:
        raise RequestError("story", "is empty; give segments such as '0:a calm intro;15:drums join'")
    if len(segments) > 32:
        raise RequestError("story", f"has {len(segments)} segments; the limit is 32")
    out, previous = [], -1.0
    for i, (start, text) in enumerate(segments):
        where = f"story[{i}]"
        if not math.isfinite(start):
            raise RequestError(where, f"start must be a number of seconds, got {start}")
        if i == 0 and start != 0:
            raise RequestError(where, "the first segment must start at 0 s")
        if start <= previous:
            raise RequestError(where, f"starts at {start} s, not after the previous segment")
        if start >= duration:
            raise RequestError(where, f"starts at {start} s, at or after the end ({duration:g} s)")
        out.append((float(start), _check_text(text, where, limits)))
        previous = start
    return None, out


def _numbers(value: Sampled, name: str) -> float | list[float] | None:
    """One number or three (a list or comma-separated text), as given; integers for ``top_k``."""
    if value is None:
        return None
    items: list[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    if len(items) not in (1, 3):
        raise RequestError(name, "takes one value (every stage) or three (semantic, coarse, fine)")
    numbers: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise RequestError(name, f"{item!r} is not a number") from None
        if not math.isfinite(number):
            raise RequestError(name, f"{item!r} is not a finite number")
        if name == "top_k":
            if number != int(number):
                raise RequestError(name, f"must be a whole number, got {item!r}")
            number = int(number)
        numbers.append(number)
    return numbers[0] if len(numbers) == 1 else numbers


def _rate() -> int:
    from musiclm import SAMPLE_RATE

    return SAMPLE_RATE


def decode_melody(data: bytes, limits: Limits) -> np.ndarray:
    """An uploaded audio file (bytes) -> float32 mono at 24 kHz, or :class:`RequestError` naming ``melody``."""
    import soundfile as sf

    from musiclm.audio import resample, validate_audio

    if len(data) > limits.max_upload_bytes:
        raise RequestError("melody", f"the upload is larger than {limits.max_upload_bytes // 1024} KiB", 413)
    if not data:
        raise RequestError("melody", "the upload is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
            if not 4_000 <= rate <= 384_000:
                raise RequestError("melody", f"unsupported sample rate {rate} Hz")
            if not 1 <= channels <= 8:
                raise RequestError("melody", f"unsupported channel count {channels}")
            limit = int(limits.max_melody_seconds * rate)
            if frames > limit:
                raise RequestError("melody", f"is {frames / rate:.1f} s long; the limit is "
                                             f"{limits.max_melody_seconds:g} s")
            wav = handle.read(frames=limit + 1, dtype="float32", always_2d=True)
    except RequestError:
        raise
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, EOFError, OverflowError) as exc:
        cause = getattr(exc, "error_string", None) or type(exc).__name__
        raise RequestError("melody", f"not a readable audio file (WAV, FLAC, OGG or MP3): {cause}") from None
    if wav.shape[0] > limit:
        raise RequestError("melody", f"is longer than the limit of {limits.max_melody_seconds:g} s")
    wav = np.ascontiguousarray(wav.T)
    try:
        validate_audio(wav)
    except AudioError as exc:
        raise RequestError("melody", str(exc)) from None
    mono = wav.mean(axis=0)
    if len(mono) < rate // 2:
        raise RequestError("melody", f"is {len(mono) / rate:.2f} s long; give at least 0.5 s")
    return resample(mono, rate, _rate()) if rate != _rate() else mono.astype(np.float32)
