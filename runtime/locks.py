"""One writer per pipeline: a second run of a pipeline on the same lake waits for the first, then is refused.

Two backfills of one source at once would race on the same Delta partitions, two ingests would both append
the same new files. ``recorded_run`` holds ``<lake>/_tandem/locks/<pipeline>.lock`` (an exclusive ``flock``)
for the whole run, whoever starts it: the CLI, ``spark-submit``, an orchestrated run. The operating system
releases it when its process dies, so a killed run never leaves a stale lock. ``flock`` is per host: a lake
shared by processes on several machines needs the orchestrator's own concurrency limit too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import UserError

POLL_S = 0.2


@contextlib.contextmanager
def pipeline_lock(lake_root: str | Path, pipeline: str, wait_ms: int) -> Iterator[None]:
    """Hold ``pipeline``'s lock on the lake, waiting at most ``wait_ms`` for another run to release it."""
    folder = Path(lake_root) / "_tandem" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (pipeline.replace(":", "_").replace("/", "_") + ".lock")
    with open(path, "a+", encoding="utf-8") as fh:
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise UserError(f"{pipeline} is already running ({holder}); this run waited "
                                    f"{wait_ms / 1000:g} s and was refused, nothing was written") from None
                time.sleep(POLL_S)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
