"""The web studio and HTTP API: generate, listen, compare and download in the browser; run listening tests.

``musiclm serve`` starts it (see docs/STUDIO.md). The parts, one concept each:

- :mod:`~musiclm.server.app`: the FastAPI application (routes, error handling, static pages);
- :mod:`~musiclm.server.jobs`: the bounded job queue, worker threads, progress, ETA and cancellation;
- :mod:`~musiclm.server.storage`: generated results on disk, addressed only by job id, with a size cap and expiry;
- :mod:`~musiclm.server.requests`: validation of generation requests and melody uploads;
- :mod:`~musiclm.server.listening`: listening tests in SQLite (A-vs-B ratings, wins, Wilcoxon signed-rank);
- :mod:`~musiclm.server.cli`: ``musiclm serve`` and ``musiclm listen ...``.

Importing this package is cheap (the ``musiclm`` command imports :mod:`~musiclm.server.cli` on every start);
FastAPI and the model are imported only when a server is built.
"""
