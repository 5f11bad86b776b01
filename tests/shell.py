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
