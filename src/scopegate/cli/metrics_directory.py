"""Where ``scopegate serve --workers N`` keeps its metrics: one directory all workers share.

Each worker is a process of its own with its own counters; in ``prometheus_client``'s
multiprocess mode every worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
and a scrape of any worker reads them all. The variable must be set before a worker
imports ``prometheus_client``, so ``serve`` sets it before uvicorn starts the workers,
to a fresh directory it removes on exit (stale files from a previous run would be
summed in). With one worker, one process counts everything and no directory is needed.
A directory the operator already set is used as it is (wiping it before a start is
theirs to do, as ``prometheus_client`` documents).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from scopegate.services.metrics import MULTIPROC_ENV


@contextmanager
def metrics_directory(workers: int) -> Iterator[str | None]:
    """The shared directory for ``workers`` worker processes (``None``: not needed)."""
    if os.environ.get(MULTIPROC_ENV):
        yield os.environ[MULTIPROC_ENV]
        return
    if workers <= 1:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="scopegate-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
