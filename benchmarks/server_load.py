"""Load test of the studio API: bounded concurrent generations, latency percentiles, nothing lost.

    python benchmarks/server_load.py                                   # in-process server, random tiny model
    python benchmarks/server_load.py --requests 40 --concurrency 4 --duration 1 --workers 2
    python benchmarks/server_load.py --url http://127.0.0.1:8000 --requests 20    # a running `musiclm serve`
    python benchmarks/server_load.py --model DIR --json                           # a real model folder

Each client submits ``POST /api/generate`` (retrying after ``Retry-After`` on 429), polls
``GET /api/jobs/{id}`` until the job finishes and downloads the WAV, checking that it decodes to the requested
length. Latency is submission to downloaded audio. A job is *lost* when it was accepted (got an id) but did
not end ``done`` with its audio; the server's own totals (``/api/stats``) are checked against the count too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Outcome:
    """What happened to one request."""

    index: int
    job_id: str | None = None
    state: str | None = None
    latency: float | None = None
    queue_wait: float | None = None
    generate_seconds: float | None = None
    retries_429: int = 0
    error: str | None = None
    audio_ok: bool = False
    notes: list[str] = field(default_factory=list)


def _request(method: str, url: str, body: dict[str, Any] | None = None,
             timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()


def run_one(base: str, index: int, duration: float, timeout: float) -> Outcome:
    """Submit, poll and download one generation."""
    import soundfile as sf

    out = Outcome(index)
    started = time.perf_counter()
    deadline = started + timeout
    body = {"prompt": f"load test {index}: an upbeat funk track with slap bass", "duration": duration,
            "seed": index}
    try:
        while True:
            status, headers, payload = _request("POST", f"{base}/api/generate", body)
            if status == 429:
                out.retries_429 += 1
                wait = float(headers.get("Retry-After", headers.get("retry-after", "1")))
                if time.perf_counter() + wait > deadline:
                    out.error = "queue stayed full until the timeout"
                    return out
                time.sleep(min(wait, 5.0))
                continue
            if status != 202:
                out.error = f"submit answered {status}: {payload[:200]!r}"
                return out
            out.job_id = json.loads(payload)["id"]
            break
        while True:
            status, _, payload = _request("GET", f"{base}/api/jobs/{out.job_id}")
            if status != 200:
                out.error = f"status answered {status}"
                return out
            job = json.loads(payload)
            out.state = job["state"]
            if job["state"] in ("done", "failed", "cancelled"):
                break
            if time.perf_counter() > deadline:
                out.error = f"still {job['state']} after {timeout} s"
                return out
            time.sleep(0.1)
        if job["state"] != "done":
            out.error = f"job {job['state']}: {job.get('error')}"
            return out
        status, headers, payload = _request("GET", f"{base}/api/jobs/{out.job_id}/audio")
        if status != 200:
            out.error = f"audio answered {status}"
            return out
        wav, rate = sf.read(io.BytesIO(payload), dtype="float32")
        expected = round(duration * rate)
        out.audio_ok = abs(len(wav) - expected) <= 1 and bool(np.isfinite(wav).all())
        if not out.audio_ok:
            out.error = f"audio has {len(wav)} samples, expected {expected}"
        out.latency = time.perf_counter() - started
        if job.get("started") and job.get("created"):
            out.queue_wait = job["started"] - job["created"]
        out.generate_seconds = (job.get("result") or {}).get("generate_seconds")
    except (OSError, ValueError, KeyError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "p99": round(float(np.percentile(arr, 99)), 3), "max": round(float(arr.max()), 3),
            "mean": round(float(arr.mean()), 3)}


def load_test(base: str, requests: int, concurrency: int, duration: float, timeout: float) -> dict[str, Any]:
    """Fire ``requests`` generations with at most ``concurrency`` in flight; the report as a dict."""
    _, _, before = _request("GET", f"{base}/api/stats")
    stats_before = json.loads(before)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(lambda i: run_one(base, i, duration, timeout), range(requests)))
    wall = time.perf_counter() - started
    _, _, after = _request("GET", f"{base}/api/stats")
    stats_after = json.loads(after)
    accepted = [o for o in outcomes if o.job_id]
    done = [o for o in outcomes if o.audio_ok]
    lost = [o for o in accepted if not o.audio_ok]
    server_done = stats_after["totals"]["done"] - stats_before["totals"]["done"]
    server_submitted = stats_after["totals"]["submitted"] - stats_before["totals"]["submitted"]
    ids = [o.job_id for o in accepted]
    return {
        "requests": requests, "concurrency": concurrency, "duration_s": duration,
        "server_workers": stats_after.get("workers"), "server_queue": stats_after.get("max_queue"),
        "accepted": len(accepted), "done": len(done), "errors": sum(1 for o in outcomes if o.error),
        "lost_jobs": len(lost), "distinct_ids": len(set(ids)) == len(ids),
        "server_submitted": server_submitted, "server_done": server_done,
        "retries_429": sum(o.retries_429 for o in outcomes),
        "latency_s": _percentiles([o.latency for o in done if o.latency is not None]),
        "queue_wait_s": _percentiles([o.queue_wait for o in done if o.queue_wait is not None]),
        "generate_s": _percentiles([o.generate_seconds for o in done if o.generate_seconds is not None]),
        "wall_s": round(wall, 2), "jobs_per_s": round(len(done) / wall, 3) if wall else None,
        "audio_s_per_wall_s": round(len(done) * duration / wall, 3) if wall else None,
        "error_samples": [o.error for o in outcomes if o.error][:5],
    }


class LocalServer:
    """A studio server on a free localhost port, in this process (uvicorn in a thread)."""

    def __init__(self, model: Any, data_dir: str, workers: int, queue: int):
        import uvicorn

        from musiclm.server.app import ServerSettings, create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        app = create_app(model, ServerSettings(data_dir=data_dir, workers=workers, max_queue=queue))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the local server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one in this process)")
    parser.add_argument("--model", help="model folder for the in-process server (default: a random tiny model)")
    parser.add_argument("--random-model", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of audio per request")
    parser.add_argument("--workers", type=int, default=1, help="generation threads of the in-process server")
    parser.add_argument("--queue", type=int, default=16, help="queue size of the in-process server")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process server")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request limit (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")

    if args.url:
        report = load_test(args.url.rstrip("/"), args.requests, args.concurrency, args.duration, args.timeout)
    else:
        import tempfile

        import torch

        from musiclm.pipeline import MusicLM
        from musiclm.random_model import random_musiclm

        torch.set_num_threads(args.threads)
        model = MusicLM.from_pretrained(args.model) if args.model else random_musiclm(args.random_model, seed=0)
        with tempfile.TemporaryDirectory() as data, LocalServer(model, data, args.workers, args.queue) as server:
            report = load_test(server.url, args.requests, args.concurrency, args.duration, args.timeout)
        report["model"] = args.model or f"random {args.random_model}"
        report["torch_threads"] = args.threads
    report["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_s"]
        print(f"{report['requests']} requests, concurrency {report['concurrency']}, "
              f"{report['duration_s']} s audio each, server workers {report['server_workers']}, "
              f"queue {report['server_queue']}")
        print(f"done {report['done']}, errors {report['errors']}, lost jobs {report['lost_jobs']}, "
              f"429 retries {report['retries_429']} (server: {report['server_submitted']} submitted, "
              f"{report['server_done']} done)")
        print(f"latency p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s, max {lat['max']} s; "
              f"generation p50 {report['generate_s']['p50']} s; wall {report['wall_s']} s, "
              f"{report['jobs_per_s']} jobs/s")
        for error in report["error_samples"]:
            print(f"  error: {error}")
    return 0 if report["errors"] == 0 and report["lost_jobs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
