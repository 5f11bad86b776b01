"""Shared fixtures: real engines and services, each started once per test session.

Spark and Kafka are expensive to start (seconds), so they are session-scoped;
a Flink TableEnvironment is cheap once PyFlink's gateway JVM is up (~0.1 s),
so each test gets a fresh one. Start-up times are printed in the summary.
"""

from __future__ import annotations

import time

import pytest

import tests.shell  # noqa: F401 (snapshots the environment before any engine runs in this process)

STARTUP_SECONDS: dict[str, float] = {}


def _timed(name, start):
    began = time.monotonic()
    value = start()
    STARTUP_SECONDS[name] = time.monotonic() - began
    return value


def _service(name, service):
    """Start a service (timed), yield it, always stop it."""
    try:
        yield _timed(name, service.start)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def spark():
    from batch_jobs.spark_session import build_spark

    session = _timed("spark", lambda: build_spark("tandem-tests"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def redis_server():
    from local_services.redis_server import RedisServer

    yield from _service("redis", RedisServer())


@pytest.fixture(scope="session")
def kafka_broker():
    from local_services.kafka_broker import KafkaBroker

    yield from _service("kafka", KafkaBroker())


@pytest.fixture(scope="session")
def _flink_gateway():
    """Start PyFlink's gateway JVM once (the first environment pays for it)."""
    from stream_jobs.flink_env import build_table_env

    _timed("flink", build_table_env)


@pytest.fixture
def flink_table_env(_flink_gateway):
    from stream_jobs.flink_env import build_table_env

    return build_table_env(parallelism=1, streaming=True)


def pytest_terminal_summary(terminalreporter):
    if STARTUP_SECONDS:
        times = ", ".join(f"{name} {secs:.1f}s" for name, secs in STARTUP_SECONDS.items())
        terminalreporter.write_line(f"engine/service start-up: {times}")
