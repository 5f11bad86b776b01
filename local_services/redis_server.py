"""A real, throwaway ``redis-server`` on 127.0.0.1 (tests and local runs; never a mock)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from local_services import free_port, kill, popen, stop, tail
from local_services.tls import Certificates


class RedisServer:
    """Start ``redis-server`` on a free loopback port in its own temp dir.

    No persistence (``--save ''``, ``--appendonly no``): the data is the test's
    and dies with it; ``persistent=True`` keeps every acknowledged write in an
    append-only file (fsync always), so a server ``kill()``-ed and started again
    has it back, as a production Redis with AOF does. Use as a context manager,
    or call ``start()``/``stop()``::

        with RedisServer() as r:
            redis.Redis.from_url(r.url).ping()
    """

    def __init__(self, startup_timeout: float = 15.0, port: int | None = None, password: str | None = None,
                 persistent: bool = False, tls: Certificates | None = None):
        self.startup_timeout = startup_timeout
        self.password = password  # requirepass: every client must AUTH with it
        self.persistent = persistent
        self.tls = tls  # local_services.tls.Certificates: TLS only (no plain port); clients trust tls.ca
        self.host = "127.0.0.1"
        self.port: int | None = port  # None: a free one, chosen at start
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    def start(self) -> "RedisServer":
        if self._proc is not None:
            raise RuntimeError(f"RedisServer already running on port {self.port}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH: run ./dev setup (installs Debian's redis-server)")
        self.workdir = self.workdir or Path(tempfile.mkdtemp(prefix="tandem-redis-"))  # kept by kill()
        self.port = self.port or free_port()
        log = self.workdir / "redis.log"
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                     "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "no"]
        self._proc = popen(
            [binary, "--bind", self.host, *ports, "--dir", str(self.workdir),
             "--save", "", *aof, "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", str(log), *(["--requirepass", self.password] if self.password else [])],
            self.workdir / "stdout.log")
        self._wait_ready(log)
        return self

    def _wait_ready(self, log: Path) -> None:
        """Poll PING until PONG; fail with the log when the server dies or is slow."""
        import redis  # imported here so the module loads without redis-py

        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1, password=self.password, **tls)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{tail(log)}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING within "
                                       f"{self.startup_timeout:.0f}s:\n{tail(log)}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        stop(self._proc, grace=5)
        self._proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no save), keeping its port and folder for ``start()``."""
        kill(self._proc)
        self._proc = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
