"""Real local services (Redis, a KRaft Kafka broker) that Tandem starts and stops itself.

Not part of the layers (transforms <- runtime <- engines <- feature_repo <-
tandem): ``tandem demo`` starts a throwaway Redis from here, and the tests
and benchmarks use these instead of mocks: each runs on 127.0.0.1 on a
free port, in its own temp dir, and is stopped on exit. Import the classes
from their modules (``local_services.redis_server.RedisServer``,
``local_services.kafka_broker.KafkaBroker``); this module holds the small
process helpers they share.
"""

from __future__ import annotations

import ctypes
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the kernel's ephemeral range.

    A server binds the port only seconds later (a JVM starting). A port from the
    ephemeral range could be taken in between by any outgoing connection or
    ``bind(0)`` on the machine, the server's own included, and the server then
    dies on start (the likely cause of a CI run whose standalone Flink cluster
    never came up). Below the range only an explicit bind can take it. Ports already handed out by this process are not
    reused, so two calls before either bind differ.
    """
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12_000), low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 below {low}")


def _ephemeral_low() -> int:
    """The low end of Linux's ephemeral port range (32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    """Linux: have the kernel SIGTERM the child when the parent dies.

    A test run killed by a CI timeout must not leave brokers behind. The
    signal follows the *thread* that started the child, so start services
    from a long-lived thread (pytest fixtures run on the main thread).
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def popen(cmd: list[str], log_path, **kwargs) -> subprocess.Popen:
    """Start a service process with stdout+stderr to ``log_path``, tied to our lifetime: it gets SIGTERM when
    the *thread* that started it ends (Linux's PR_SET_PDEATHSIG), so start it from one that outlives it."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                                **kwargs)


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process (a clean shutdown), then SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def kill(proc: subprocess.Popen | None) -> None:
    """SIGKILL the process (a crash: no shutdown) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def tail(path, lines: int = 40) -> str:
    """The last lines of a log file ('' when absent), for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
