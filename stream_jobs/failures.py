"""A Flink job's failure, as a user reads it: its root cause in one line, and whether it was a cancellation.

Shared by the job's driver (``stream_jobs.job``, which raises ``JobFailed``) and its monitor
(``stream_jobs.monitor``, which records the failed row).
"""

from __future__ import annotations

from py4j.protocol import Py4JJavaError


def root_cause(error: Py4JJavaError) -> str:
    """The innermost cause of a Flink failure in one line; for a Python UDF, its exception's last line."""
    cause = error.java_exception
    while cause.getCause() is not None:
        cause = cause.getCause()
    text = str(cause.getMessage() or cause.toString())
    if "Traceback (most recent call last)" in text:  # the worker's Python traceback: the exception is last
        lines = [line.strip() for line in text.split("Traceback (most recent call last)")[-1].splitlines()]
        exception = [line for line in lines if line and not line.startswith(("File ", "^", "~"))]
        text = exception[-1] if exception else text
    return " ".join(text.split())


def cancelled(error: Py4JJavaError) -> bool:
    """Whether a job's failure is its cancellation (Flink's JobCancellationException in the cause chain)."""
    cause = error.java_exception
    while cause is not None:
        if cause.getClass().getName().endswith("JobCancellationException"):
            return True
        cause = cause.getCause()
    return False
