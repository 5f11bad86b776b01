"""The environment for the tests' subprocesses: this process's as it was before any engine ran in it.

Once a Flink job ran here, PyFlink has changed ``os.environ``: it sets
``PYFLINK_GATEWAY_DISABLED`` (a child would refuse to start its own gateway),
and its loopback Python workers copy a TaskManager's environment into it
(``JAVA_HOME=""`` among it, after the standalone cluster of
``test_flink_run``: a child PyFlink then looks for ``bin/java``). A subprocess
started "as from a shell" must not inherit that.
"""

from __future__ import annotations

import os

_AT_START = dict(os.environ)


def shell_env(**extra: str) -> dict[str, str]:
    """The environment at start, plus ``extra``."""
    return {**_AT_START, **extra}


def assert_no_secret(secrets, texts: list[str], folder) -> None:
    """None of ``secrets`` in any of ``texts`` (outputs, run log rows) nor in any file under ``folder``."""
    from pathlib import Path

    for secret in secrets:
        for i, text in enumerate(texts):
            assert secret not in text, f"output {i} holds a password: {text[max(0, text.find(secret) - 200):][:400]}"
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{path} holds a password"


def flink_logs_since(began: float) -> list[str]:
    """The text of Flink's own log files written at or after ``began`` (time.time()). PyFlink writes them
    under its package's ``log/`` folder, each run of a job rewriting its file: read them after each run."""
    from pathlib import Path

    import pyflink

    return [p.read_text(errors="replace") for p in (Path(pyflink.__file__).parent / "log").glob("*.log")
            if p.stat().st_mtime >= began]
