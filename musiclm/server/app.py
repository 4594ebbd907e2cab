"""The FastAPI application: the generation API, the listening-test API and the static pages.

``create_app(model, settings)`` builds it around one loaded model, shared by the worker threads of a
:class:`~musiclm.server.jobs.JobManager`. Generation requests are JSON or multipart forms (the latter may carry
a ``melody`` file); every unusable field is answered ``{"error", "field", "errors": [...]}`` with a 4xx status.
Results are served by job id only; listening-test clips by their random token only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from musiclm import __version__
from musiclm.errors import MusicLMError
from musiclm.server.jobs import FINISHED, JobManager, QueueFull, ShuttingDown
from musiclm.server.listening import ListeningError, ListeningStore
from musiclm.server.requests import (
    NO_MELODY,
    GenerateParams,
    Limits,
    RequestError,
    parse_generation,
    takes_melody,
)
from musiclm.server.storage import ResultStore, UnknownResult

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
JSON_BODY_LIMIT = 256 * 1024
FORM_OVERHEAD = 256 * 1024
EXAMPLE_PROMPTS = (
    "a calming violin melody backed by a distorted guitar riff",
    "an upbeat funk track with slap bass, tight drums and a brass section",
    "slow lo-fi hip hop with a dusty piano loop and vinyl crackle",
    "an epic orchestral soundtrack with soaring strings and thundering timpani",
    "a fast-paced techno track with a driving four-on-the-floor kick",
    "a gentle acoustic guitar ballad, fingerpicked, warm and intimate",
    "a jazz trio: walking upright bass, brushed drums and a relaxed piano solo",
    "reggae with an offbeat guitar skank and a deep, round bass line",
)


@dataclass
class ServerSettings:
    """Where the server keeps its files and what it accepts."""

    data_dir: Path
    workers: int = 1
    max_queue: int = 16
    limits: Limits = field(default_factory=Limits)
    results_max_bytes: int = 2 * 1024**3
    results_max_age_hours: float = 24.0 * 7
    prune_interval_seconds: float = 60.0
    allowed_hosts: tuple[str, ...] | None = LOCAL_HOSTS
    """Host headers accepted (None = any): guards a localhost server against DNS rebinding."""
    examples: tuple[str, ...] = EXAMPLE_PROMPTS


class RatingBody(BaseModel):
    """A listening-test answer: which of the two clips (A left, B right) fits the caption better."""

    model_config = ConfigDict(extra="forbid")
    rater: str = Field(..., description="the rater's name or id")
    a: str = Field(..., description="token of clip A (shown left)")
    b: str = Field(..., description="token of clip B (shown right)")
    score: int = Field(..., description="-2 A much better, -1 A slightly better, 0 no preference, 1, 2 B much better")
    elapsed_ms: int | None = Field(None, description="time the rater spent on the pair")


def create_app(model: Any, settings: ServerSettings) -> FastAPI:
    """The ASGI application serving ``model`` (a loaded :class:`~musiclm.pipeline.MusicLM`)."""
    data_dir = Path(settings.data_dir)
    store = ResultStore(data_dir / "results", settings.results_max_bytes, settings.results_max_age_hours * 3600)
    jobs = JobManager(model, store, settings.workers, settings.max_queue)
    listening = ListeningStore(data_dir / "listening")
    limits = settings.limits

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def prune_forever() -> None:
            while True:
                await asyncio.sleep(settings.prune_interval_seconds)
                try:
                    await run_in_threadpool(jobs.prune)
                except Exception:  # never let housekeeping stop the server
                    log.exception("pruning the results failed")

        task = asyncio.create_task(prune_forever())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(jobs.shutdown)

    # no /docs or /redoc: FastAPI's documentation pages load their scripts from a CDN; /openapi.json stays
    app = FastAPI(title="MusicLM studio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Generate music from text, follow progress, listen, download; run listening tests.")
    app.state.jobs, app.state.store, app.state.listening, app.state.settings = jobs, store, listening, settings
    if settings.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    _add_error_handlers(app)

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: Any) -> Response:
        """Browsers send simple cross-site POSTs without asking: refuse writes from other origins."""
        origin = request.headers.get("origin")
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            return JSONResponse({"error": "cross-origin requests are not accepted", "field": None}, 403)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # ----------------------------------------------------------------------------------------- pages
    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            "Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def studio_page() -> FileResponse:
        return page("index.html")

    @app.get("/listen", include_in_schema=False)
    async def listen_page() -> FileResponse:
        return page("listen.html")

    @app.get("/listen/results", include_in_schema=False)
    async def results_page() -> FileResponse:
        return page("results.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------------------------ generation
    @app.get("/api/info", tags=["generation"], summary="The model, the limits and the defaults")
    async def info() -> dict[str, Any]:
        return {"version": __version__, "model": getattr(model, "source", None),
                "sample_rate": int(getattr(model, "sample_rate", 24_000)),
                "melody": takes_melody(model),
                "melody_note": None if takes_melody(model) else NO_MELODY,
                "limits": {"max_duration": limits.max_duration, "max_prompt_chars": limits.max_prompt_chars,
                           "max_upload_bytes": limits.max_upload_bytes,
                           "max_melody_seconds": limits.max_melody_seconds, "max_queue": settings.max_queue},
                "workers": settings.workers, "defaults": _sampling_defaults(model),
                "examples": list(settings.examples)}

    @app.post("/api/generate", status_code=202, tags=["generation"], summary="Queue a generation",
              openapi_extra={"requestBody": _generate_body_schema()},
              responses={202: {"description": "queued: poll /api/jobs/{id}"},
                         413: {"description": "the upload or body is too large"},
                         422: {"description": "a field is unusable (the body names it)"},
                         429: {"description": "the queue is full (see Retry-After)"}})
    async def generate(request: Request) -> JSONResponse:
        fields, melody = await _read_generate_body(request, limits)
        parsed = await run_in_threadpool(parse_generation, fields, model, limits, melody)
        job = jobs.submit(parsed)
        return JSONResponse(_job_links(job.id) | {"state": job.state, "seed": parsed.seed}, status_code=202)

    @app.get("/api/jobs/{job_id}", tags=["generation"], summary="State, per-stage progress, ETA and error")
    async def job_status(job_id: str) -> dict[str, Any]:
        return jobs.status(job_id) | _job_links(job_id)

    @app.get("/api/jobs/{job_id}/audio", tags=["generation"], summary="The generated WAV",
             response_class=FileResponse, responses={200: {"content": {"audio/wav": {}}}})
    async def job_audio(job_id: str, download: bool = False) -> FileResponse:
        job = _finished_job(jobs, job_id)
        path = store.audio_path(job.id)
        return FileResponse(path, media_type="audio/wav", filename=f"{_slug(job.title)}-{job.id[:8]}.wav",
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/jobs/{job_id}/spectrogram.png", tags=["generation"], summary="The log-mel spectrogram",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def job_spectrogram(job_id: str) -> Response:
        job = _finished_job(jobs, job_id)
        png = await run_in_threadpool(store.spectrogram, job.id, job.title)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.delete("/api/jobs/{job_id}", tags=["generation"],
                summary="Cancel a queued or running job; forget a finished one and remove its files")
    async def job_delete(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job.state not in FINISHED:
            return jobs.cancel(job_id)
        deleted = await run_in_threadpool(jobs.delete, job_id)
        return {"id": job_id, "state": job.state, "deleted": deleted}

    @app.get("/api/stats", tags=["generation"], summary="Jobs per state and totals since start")
    async def stats() -> dict[str, Any]:
        return jobs.stats() | {"results_bytes": await run_in_threadpool(store.total_bytes)}

    # ------------------------------------------------------------------------------------- listening
    @app.get("/api/listen/tests", tags=["listening"], summary="The listening tests")
    async def listen_tests() -> list[dict[str, Any]]:
        return await run_in_threadpool(listening.tests)

    @app.get("/api/listen/tests/{name}/next", tags=["listening"], summary="The next pair for a rater")
    async def listen_next(name: str, rater: str = Query(..., min_length=1, max_length=64)) -> dict[str, Any]:
        rng = np.random.default_rng()
        return await run_in_threadpool(listening.next_pair, name, rater, rng)

    @app.post("/api/listen/tests/{name}/ratings", status_code=201, tags=["listening"], summary="Store a rating")
    async def listen_rate(name: str, body: RatingBody) -> dict[str, Any]:
        return await run_in_threadpool(listening.rate, name, body.rater, body.a, body.b, body.score, body.elapsed_ms)

    @app.get("/api/listen/tests/{name}/results", tags=["listening"],
             summary="Wins per system and pairwise Wilcoxon signed-rank tests")
    async def listen_results(name: str) -> dict[str, Any]:
        return await run_in_threadpool(listening.results, name)

    @app.get("/api/listen/tests/{name}/ratings.csv", tags=["listening"], summary="The ratings as CSV",
             response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    async def listen_csv(name: str) -> Response:
        text = await run_in_threadpool(listening.export_csv, name)
        filename = _slug(name) + "-ratings.csv"
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.get("/api/listen/clips/{token}", tags=["listening"], summary="A clip, by its token",
             response_class=FileResponse)
    async def listen_clip(token: str) -> FileResponse:
        path, media_type = await run_in_threadpool(listening.clip_file, token)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    return app


# ------------------------------------------------------------------------------------------- helpers
def _job_links(job_id: str) -> dict[str, str]:
    return {"id": job_id, "status_url": f"/api/jobs/{job_id}", "audio_url": f"/api/jobs/{job_id}/audio",
            "spectrogram_url": f"/api/jobs/{job_id}/spectrogram.png"}


def _finished_job(jobs: JobManager, job_id: str) -> Any:
    job = jobs.get(job_id)
    if job.state != "done":
        raise RequestError("id", f"the job is {job.state}; its audio exists once it is done", 409)
    return job


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", (text or "").lower())[:6]
    return "-".join(words) or "musiclm"


def _sampling_defaults(model: Any) -> dict[str, Any]:
    try:
        sampling = model.sampling()
    except (AttributeError, MusicLMError):
        return {}
    out = {}
    for stage in ("semantic", "coarse", "fine"):
        params = sampling.for_stage(stage)
        out[stage] = {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
                      "cfg": params.cfg_scale}
    return out


async def _read_generate_body(request: Request, limits: Limits) -> tuple[dict[str, Any], bytes | None]:
    """The fields of a JSON or form body and the melody upload, with size limits enforced before parsing."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    try:
        size = int(length) if length is not None else None
    except ValueError:
        raise RequestError("body", "invalid Content-Length", 400) from None
    if content_type == "application/json":
        if size is not None and size > JSON_BODY_LIMIT:
            raise RequestError("body", f"a JSON body may have at most {JSON_BODY_LIMIT // 1024} KiB", 413)
        raw = await _read_limited(request, JSON_BODY_LIMIT)
        try:
            fields = json.loads(raw or b"null")
        except ValueError:
            raise RequestError("body", "is not valid JSON", 400) from None
        if not isinstance(fields, dict):
            raise RequestError("body", "must be a JSON object such as {\"prompt\": \"a calm piano piece\"}")
        return fields, None
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        limit = limits.max_upload_bytes + FORM_OVERHEAD
        if size is None:
            raise RequestError("body", "a form upload needs a Content-Length", 411)
        if size > limit:
            raise RequestError("melody", f"the upload is larger than {limits.max_upload_bytes // 1024} KiB", 413)
        form = await request.form(max_files=1, max_fields=32)
        fields: dict[str, Any] = {}
        melody = None
        for key, value in form.multi_items():
            if key == "melody":
                if isinstance(value, str):
                    if value:
                        raise RequestError("melody", "must be a file upload")
                    continue
                data = await value.read(limits.max_upload_bytes + 1)
                await value.close()
                if data or value.filename:
                    melody = data
            elif not isinstance(value, str):
                raise RequestError(key, "must be a text field, not a file")
            elif key in fields:
                raise RequestError(key, "is given twice")
            elif key == "story" and value.strip().startswith("["):
                try:
                    fields[key] = json.loads(value)
                except ValueError:
                    raise RequestError("story", "is not valid JSON") from None
            else:
                fields[key] = value
        # an empty seed/sampling field of a form means "the default"
        fields = {k: v for k, v in fields.items() if not (isinstance(v, str) and not v.strip() and k != "prompt")}
        return fields, melody
    raise RequestError("body", "send application/json or multipart/form-data", 415)


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError("body", f"is larger than {limit // 1024} KiB", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _generate_body_schema() -> dict[str, Any]:
    schema = GenerateParams.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.split("/")[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema = inline(schema)
    form = {"type": "object", "properties": {
        **{k: {"type": "string", "description": v.get("description", "")} for k, v in schema["properties"].items()},
        "melody": {"type": "string", "format": "binary", "description": "optional melody audio (WAV, FLAC, OGG, MP3)"},
    }}
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "multipart/form-data": {"schema": form}}}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), exc.status)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": None, "retry_after": exc.retry_after}, 429,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, exc: ShuttingDown) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": None}, 503, headers={"Retry-After": "5"})

    @app.exception_handler(UnknownResult)
    async def unknown(request: Request, exc: UnknownResult) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": "id"}, 404)

    @app.exception_handler(ListeningError)
    async def listening_error(request: Request, exc: ListeningError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": None}, exc.status)

    @app.exception_handler(MusicLMError)
    async def musiclm_error(request: Request, exc: MusicLMError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": None}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "field": None}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
                   "message": e.get("msg", "invalid")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse({"error": f"{first['field']}: {first['message']}", "field": first["field"],
                             "errors": errors}, 422)
