"""User-facing errors: raised for a user's mistake, printed as one line by the CLI, never a traceback."""


class UserError(Exception):
    """Bad input, a missing file, an invalid option: something the user can fix."""


def one_line(e: BaseException) -> str:
    """An exception's message on one line (whitespace folded, at most 300 characters; its type when empty)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


#: Exception class names that say a failure may pass by itself: worth retrying.
_TRANSIENT_NAMES = {"ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "TimeoutError",
                    "Py4JNetworkError", "BusyLoadingError", "NoBrokersAvailable"}
#: Words in a JVM error that say the same (Spark's lost executors and fetch failures).
_TRANSIENT_WORDS = ("ExecutorLostFailure", "FetchFailedException", "executor lost", "Connection refused")


def transient(e: BaseException) -> bool:
    """Whether ``e`` may pass by itself (a refused connection, a lost executor): an orchestrator retries it. A
    user's mistake, a schema change, a blocked gate or a bug is permanent. An error class says which with a
    ``transient`` attribute (``stream_jobs.online_sink.RedisUnreachable`` is, ``RedisRefused`` is not,
    whatever it wraps); else its cause chain is read."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        said = getattr(type(e), "transient", None)
        if said is not None:
            return bool(said)
        if {c.__name__ for c in type(e).__mro__} & _TRANSIENT_NAMES:
            return True
        if not isinstance(e, UserError) and any(w in str(e) for w in _TRANSIENT_WORDS):
            return True
        e = e.__cause__ or e.__context__
    return False
