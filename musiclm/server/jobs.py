"""Generation jobs: a bounded queue, a pool of worker threads sharing one model, progress, ETA, cancellation.

A job goes ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``. The pipeline calls the job's
progress callback after every sampled token; the callback records per-stage progress and, when the job has
been cancelled, raises :class:`JobCancelled`, which unwinds the generation at once. The ETA comes from the
tokens each stage still has to sample times that stage's measured seconds per token (learned from finished
jobs, else from the running job itself). Torch releases the GIL while it computes, so ``workers`` threads
generate in parallel without blocking the event loop that serves the API.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musiclm import SAMPLE_RATE
from musiclm.errors import MusicLMError
from musiclm.server.requests import MELODY_METHOD, GenerationRequest
from musiclm.server.storage import ResultStore, UnknownResult, check_job_id, new_job_id

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})
TOKEN_STAGES = ("semantic", "coarse", "fine")
STAGES = (*TOKEN_STAGES, "decode")


class JobCancelled(Exception):
    """Raised from the progress callback to stop a cancelled generation."""


class QueueFull(MusicLMError):
    """Every queue slot is taken; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(MusicLMError):
    """The server is stopping and takes no new jobs."""


@dataclass
class Job:
    """One generation request and where it stands."""

    id: str
    params: dict[str, Any]
    title: str
    duration: float
    created: float
    request: GenerationRequest | None = None
    state: str = "queued"
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    progress: dict[str, list[int]] = field(default_factory=dict)  # stage -> [done, total]
    stage_times: dict[str, list[float]] = field(default_factory=dict)  # stage -> [first, last] callback time
    result: dict[str, Any] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None


class EtaModel:
    """Seconds per token of each stage (and per decode), averaged over finished jobs."""

    def __init__(self, model: Any, smoothing: float = 0.3):
        self.model, self.smoothing = model, smoothing
        self.seconds_per_token: dict[str, float] = {}
        self.decode_seconds_per_second: float | None = None

    def expected_tokens(self, duration: float, draft: bool = False) -> dict[str, int]:
        """Tokens each stage samples for ``duration`` seconds (empty when the model does not say); a draft
        samples no fine tokens."""
        try:
            stages = self.model.stages
            spaces = stages["coarse"].config.tokens
            semantic_frames = math.ceil(duration * spaces.semantic_rate)
            acoustic_frames = semantic_frames * spaces.acoustic_per_semantic
            return {"semantic": semantic_frames * int(stages["semantic"].levels),
                    "coarse": acoustic_frames * int(stages["coarse"].levels),
                    "fine": 0 if draft else acoustic_frames * int(stages["fine"].levels)}
        except (AttributeError, KeyError, TypeError):
            return {}

    def learn(self, job: Job) -> None:
        """Update the averages from a job that finished normally."""
        for stage in TOKEN_STAGES:
            times, counts = job.stage_times.get(stage), job.progress.get(stage)
            if not times or not counts or counts[0] < 2:
                continue
            rate = (times[1] - times[0]) / max(counts[0] - 1, 1)
            old = self.seconds_per_token.get(stage)
            self.seconds_per_token[stage] = rate if old is None else old + self.smoothing * (rate - old)
        decode = job.stage_times.get("decode")
        if decode and job.duration > 0:
            rate = (decode[1] - decode[0]) / job.duration
            old = self.decode_seconds_per_second
            self.decode_seconds_per_second = rate if old is None else old + self.smoothing * (rate - old)

    def remaining(self, job: Job, now: float) -> tuple[float | None, float]:
        """``(seconds left or None when unknown, fraction done in [0, 1])`` of a queued or running job."""
        expected = self.expected_tokens(job.duration, bool(job.params.get("draft")))
        totals = {s: max(job.progress.get(s, [0, 0])[1], expected.get(s, 0)) for s in TOKEN_STAGES}
        done = {s: min(job.progress.get(s, [0, 0])[0], totals[s]) for s in TOKEN_STAGES}
        observed = _observed_rate(job)
        left_time, total_time, known = 0.0, 0.0, True
        for stage in TOKEN_STAGES:
            rate = self.seconds_per_token.get(stage) or _stage_rate(job, stage) or observed
            if rate is None:
                known = False
                rate = 1.0
            left_time += (totals[stage] - done[stage]) * rate
            total_time += totals[stage] * rate
        decode = (self.decode_seconds_per_second or 0.0) * job.duration
        finished_decode = job.progress.get("decode", [0, 1])[0] >= 1
        left_time += 0.0 if finished_decode else decode
        total_time += decode
        fraction = 1.0 - left_time / total_time if total_time > 0 else 0.0
        return (left_time if known else None), min(max(fraction, 0.0), 1.0)


def _stage_rate(job: Job, stage: str) -> float | None:
    times, counts = job.stage_times.get(stage), job.progress.get(stage)
    if not times or not counts or counts[0] < 8:
        return None
    return (times[1] - times[0]) / (counts[0] - 1)


def _observed_rate(job: Job) -> float | None:
    """Seconds per token of this job so far, over every stage it has sampled."""
    tokens = sum(job.progress.get(s, [0, 0])[0] for s in TOKEN_STAGES)
    if job.started is None or tokens < 8:
        return None
    last = max((t[1] for t in job.stage_times.values()), default=job.started)
    return (last - job.started) / tokens


class JobManager:
    """Runs generation jobs on ``workers`` threads with at most ``max_queue`` jobs waiting."""

    def __init__(self, model: Any, store: ResultStore, workers: int = 1, max_queue: int = 16,
                 keep_jobs: int = 2000):
        if workers < 1 or max_queue < 1:
            raise MusicLMError("workers and the queue size must be >= 1")
        self.model, self.store = model, store
        self.workers, self.max_queue, self.keep_jobs = workers, max_queue, keep_jobs
        self.eta = EtaModel(model)
        self.draft_model = model.as_draft() if hasattr(model, "as_draft") else None
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="musiclm-generate")
        self._closed = False
        self.counts = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "rejected": 0}
        for meta in store.load_all():
            self._restore(meta)

    def _restore(self, meta: dict[str, Any]) -> None:
        job = Job(id=meta["id"], params=dict(meta.get("params") or {}), title=str(meta.get("title") or ""),
                  duration=float(meta.get("duration") or 0.0), created=float(meta.get("created") or 0.0),
                  state="done", started=meta.get("started"), finished=meta.get("finished"),
                  result=meta.get("result"))
        self._jobs[job.id] = job

    # ------------------------------------------------------------------------------------- submitting
    def submit(self, request: GenerationRequest) -> Job:
        """Queue a validated request; :class:`QueueFull` when ``max_queue`` jobs already wait."""
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            waiting = sum(1 for j in self._jobs.values() if j.state == "queued")
            if waiting >= self.max_queue:
                self.counts["rejected"] += 1
                raise QueueFull(f"the queue is full ({waiting} jobs waiting); try again shortly",
                                self._retry_after_locked())
            job = Job(id=new_job_id(), params=request.public(), title=request.title, duration=request.duration,
                      created=time.time(), request=request)
            self._jobs[job.id] = job
            self.counts["submitted"] += 1
            self._forget_old_locked()
        job.future = self._executor.submit(self._run, job)
        return job

    def _retry_after_locked(self) -> int:
        now = time.time()
        running = [self.eta.remaining(j, now)[0] for j in self._jobs.values() if j.state == "running"]
        known = [r for r in running if r is not None]
        return max(1, math.ceil(min(known))) if known else 2

    def _forget_old_locked(self) -> None:
        """Drop the oldest finished jobs from memory beyond ``keep_jobs`` (their files stay until pruned)."""
        excess = len(self._jobs) - self.keep_jobs
        for job_id in [k for k, j in self._jobs.items() if j.state in FINISHED and j.state != "done"][:max(excess, 0)]:
            del self._jobs[job_id]

    # ----------------------------------------------------------------------------------------- running
    def _run(self, job: Job) -> None:
        with self._lock:
            if job.state != "queued":
                return
            job.state, job.started = "running", time.time()
        request = job.request
        assert request is not None

        def progress(stage: str, done: int, total: int) -> None:
            now = time.time()
            job.progress[stage] = [int(done), int(total)]
            times = job.stage_times.get(stage)
            if times is None:
                job.stage_times[stage] = [now, now]
            else:
                times[1] = now
            if job.cancel_event.is_set():
                raise JobCancelled

        try:
            audio, rate = self._generate(request, progress)
            wav = _first_row(audio)
            finished = time.time()
            result = {"sample_rate": int(rate), "seconds": round(len(wav) / rate, 3),
                      "peak": round(float(np.abs(wav).max()), 4) if wav.size else 0.0,
                      "generate_seconds": round(finished - (job.started or finished), 3)}
            meta = {"id": job.id, "params": job.params, "title": job.title, "duration": job.duration,
                    "created": job.created, "started": job.started, "finished": finished, "result": result,
                    "model": getattr(self.model, "source", None)}
            self.store.save(job.id, wav, rate, meta)
            with self._lock:
                if job.cancel_event.is_set():
                    raise JobCancelled
                job.result, job.finished, job.state = result, finished, "done"
                self.counts["done"] += 1
                self.eta.learn(job)
            self.prune(keep={job.id})
        except JobCancelled:
            self.store.delete(job.id)
            self._finish(job, "cancelled", None)
        except MusicLMError as exc:
            self._finish(job, "failed", str(exc))
        except Exception as exc:  # a bug: keep serving, report it on the job
            log.exception("job %s failed", job.id)
            self._finish(job, "failed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            job.request = None  # free the melody and the request

    def _generate(self, request: GenerationRequest, progress: Any) -> tuple[Any, int]:
        kwargs = {"seed": request.seed, "progress": progress, **request.sampling}
        model = self.model
        if request.draft:
            if self.draft_model is None:
                raise MusicLMError("this model has no draft mode")
            model = self.draft_model
        if request.melody is not None:
            generate_with_melody = getattr(model, MELODY_METHOD)
            return generate_with_melody([request.prompt], request.melody, SAMPLE_RATE, request.duration, **kwargs)
        if request.story is not None:
            return model.generate_story(request.story, request.duration, **kwargs)
        return model.generate([request.prompt], request.duration, **kwargs)

    def _finish(self, job: Job, state: str, error: str | None) -> None:
        with self._lock:
            if job.state in FINISHED:
                return
            job.state, job.error, job.finished = state, error, time.time()
            self.counts[state] += 1

    def prune(self, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Apply the results folder's expiry and size cap, forgetting the jobs whose files went."""
        removed = self.store.prune(keep=keep)
        if removed:
            with self._lock:
                for job_id in removed:
                    job = self._jobs.get(job_id)
                    if job is not None and job.state == "done":
                        del self._jobs[job_id]

    # ------------------------------------------------------------------------------------------ queries
    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownResult("no such job (never made, expired or deleted)")
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        """The job as the API shows it: state, per-stage progress, fraction, ETA, error, result."""
        job = self.get(job_id)
        now = time.time()
        with self._lock:
            stages = {s: {"done": job.progress[s][0], "total": job.progress[s][1]} for s in list(job.progress)}
            eta, fraction, position = None, 1.0 if job.state == "done" else 0.0, None
            if job.state == "running":
                eta, fraction = self.eta.remaining(job, now)
            elif job.state == "queued":
                position, eta = self._queue_eta_locked(job, now)
        expected = self.eta.expected_tokens(job.duration, bool(job.params.get("draft")))
        for stage in STAGES:
            stages.setdefault(stage, {"done": 0, "total": expected.get(stage, 1 if stage == "decode" else 0)})
        return {"id": job.id, "state": job.state, "params": job.params, "created": job.created,
                "started": job.started, "finished": job.finished, "error": job.error,
                "progress": {"fraction": round(fraction, 4), "stages": stages},
                "eta_seconds": None if eta is None else round(eta, 1), "queue_position": position,
                "result": job.result}

    def _queue_eta_locked(self, job: Job, now: float) -> tuple[int, float | None]:
        ahead: list[float | None] = []
        position = 0
        for other in self._jobs.values():
            if other is job:
                break
            if other.state == "queued":
                position += 1
                ahead.append(self.eta.remaining(other, now)[0])
            elif other.state == "running":
                ahead.append(self.eta.remaining(other, now)[0])
        own = self.eta.remaining(job, now)[0]
        if own is None or any(a is None for a in ahead):
            return position, None
        return position, own + sum(a for a in ahead if a is not None) / self.workers

    def stats(self) -> dict[str, Any]:
        with self._lock:
            states = {s: 0 for s in STATES}
            for job in self._jobs.values():
                states[job.state] += 1
            return {"workers": self.workers, "max_queue": self.max_queue, "jobs": states, "totals": dict(self.counts)}

    # ------------------------------------------------------------------------------------------ control
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (a running one stops at its next token); finished jobs are unchanged."""
        job = self.get(job_id)
        job.cancel_event.set()
        with self._lock:
            if job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
                self.counts["cancelled"] += 1
                if job.future is not None:
                    job.future.cancel()
        return self.status(job_id)

    def delete(self, job_id: str) -> bool:
        """Forget a finished job and remove its files."""
        job = self.get(job_id)
        with self._lock:
            if job.state not in FINISHED:
                return False
            self._jobs.pop(job_id, None)
        self.store.delete(job_id)
        return True

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the job finishes (for tests and scripts); returns its status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status["state"] in FINISHED:
                return status
            time.sleep(0.02)
        raise TimeoutError(f"job {job_id} did not finish within {timeout} s")

    def shutdown(self) -> None:
        """Refuse new jobs, cancel every queued and running one and wait for the workers to stop."""
        with self._lock:
            self._closed = True
            active = [j for j in self._jobs.values() if j.state in ("queued", "running")]
        for job in active:
            self.cancel(job.id)
        self._executor.shutdown(wait=True, cancel_futures=True)


def _first_row(audio: Any) -> np.ndarray:
    """The first row of ``[rows, samples]`` audio (torch or numpy) as float32 numpy."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    return audio[0] if audio.ndim == 2 else audio.reshape(-1)
