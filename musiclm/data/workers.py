"""Running render jobs in worker processes, results streamed back as they finish."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

JobT = TypeVar("JobT")


def run_jobs(jobs: Iterable[JobT], work: Callable[[JobT], Any], initializer: Callable[..., None],
             initargs: tuple[Any, ...], workers: int) -> Iterator[Any]:
    """``work(job)`` for every job: in order in this process when ``workers`` is 1, else in that many worker
    processes (each set up once by ``initializer(*initargs)``), in completion order, with at most
    ``4 * workers`` jobs in flight. ``work`` and ``initializer`` must be module-level functions."""
    if workers == 1:
        initializer(*initargs)
        for job in jobs:
            yield work(job)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "forkserver")
    queue = iter(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer,
                             initargs=initargs) as pool:
        pending = {pool.submit(work, job) for job in itertools.islice(queue, workers * 4)}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
                job = next(queue, None)
                if job is not None:
                    pending.add(pool.submit(work, job))
