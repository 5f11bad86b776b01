"""A real single-node Kafka broker (KRaft, combined broker+controller) from the pinned jars.

Integration tests and local stream runs talk to this broker, never a mock. It
runs ``java -cp jvm/jars/kafka/*`` (no Kafka install, no Docker), listens on
free 127.0.0.1 ports, keeps its data in a temp dir, and is sized for a 2-core
machine: small heap, replication factor 1 and one partition for every
internal topic (offsets, transactions, share groups), no rebalance delay.

The pinned jars hold no Kafka topic tool, so topics are created by a tiny
Java ``Admin`` client (``_ADMIN_SOURCE``) run with the JDK's source launcher.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from runtime.jars import jars
from local_services import free_port, kill, popen, port_open, stop, tail

_ADMIN_SOURCE = """\
import java.util.*;
import org.apache.kafka.clients.admin.*;

/** Usage: KafkaAdmin BOOTSTRAP ready | create TOPIC PARTITIONS */
public class KafkaAdmin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("request.timeout.ms", "5000");
        props.put("default.api.timeout.ms", "20000");
        try (Admin admin = Admin.create(props)) {
            switch (args[1]) {
                case "ready" -> admin.describeCluster().nodes().get();
                case "create" -> admin.createTopics(List.of(
                        new NewTopic(args[2], Integer.parseInt(args[3]), (short) 1))).all().get();
                default -> throw new IllegalArgumentException(args[1]);
            }
        }
    }
}
"""

_LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
"""


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.toString)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids these: they read as CLI flags
            return cid


class KafkaBroker:
    """Run a KRaft broker+controller; use as a context manager::

        with KafkaBroker() as kafka:
            kafka.create_topic("transactions", partitions=2)
            ...  # kafka.bootstrap_servers == "127.0.0.1:<port>"
    """

    def __init__(self, startup_timeout: float = 90.0, heap: str = "512m", sasl_users: dict[str, str] | None = None):
        self.startup_timeout = startup_timeout
        self.heap = heap
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.controller_port: int | None = None
        # users (name -> password) of a second listener, SASL_PLAINTEXT with PLAIN, at sasl_bootstrap_servers
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port: int | None = None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The listener that needs a user's name and password (``sasl_users``)."""
        return f"{self.host}:{self.sasl_port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "KafkaBroker":
        if self._proc is not None:
            raise RuntimeError(f"KafkaBroker already running on {self.bootstrap_servers}")
        if shutil.which("java") is None:
            raise RuntimeError("java is not on PATH: install OpenJDK 17 (see ./dev setup)")
        if self.workdir is None:  # else restarted after kill(): the same ports and data
            self.workdir = Path(tempfile.mkdtemp(prefix="tandem-kafka-"))
            self.port, self.controller_port = free_port(), free_port()
            self.sasl_port = free_port() if self.sasl_users else None
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        (self.workdir / "KafkaAdmin.java").write_text(_ADMIN_SOURCE)
        props = self.workdir / "server.properties"
        props.write_text(self._server_properties())
        try:
            if not (self.workdir / "data" / "meta.properties").exists():  # a restart keeps its cluster id
                self._java("kafka.tools.StorageTool", "format", "--cluster-id", _cluster_id(),
                           "--config", str(props), "--ignore-formatted", timeout=60)
            self._proc = popen(self._java_cmd("kafka.Kafka", str(props), heap=self.heap),
                               self.workdir / "stdout.log", cwd=self.workdir)
            self._wait_ready()
        except BaseException:
            self.stop(keep_workdir=True)
            raise
        return self

    def stop(self, keep_workdir: bool = False) -> None:
        """SIGTERM (Kafka's controlled shutdown), SIGKILL after 20 s; remove the temp dir."""
        stop(self._proc, grace=20)
        self._proc = None
        if self.workdir is not None and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self) -> None:
        """SIGKILL the broker (a crash: no controlled shutdown), keeping its ports and data for ``start()``."""
        kill(self._proc)
        self._proc = None

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- topics ------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create a topic (replication factor 1); raises if it exists or the broker refuses."""
        self._admin("create", name, str(partitions))

    # -- internals ---------------------------------------------------------

    def _server_properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",  # tests create topics explicitly
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        if self.sasl_users:
            users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
            settings |= {
                "listeners": f"{settings['listeners']},SASL://{self.host}:{self.sasl_port}",
                "advertised.listeners": f"{settings['advertised.listeners']},SASL://{self.host}:{self.sasl_port}",
                "listener.security.protocol.map": f"{settings['listener.security.protocol.map']},SASL:SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": "PLAIN",
                "listener.name.sasl.plain.sasl.jaas.config":
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java_cmd(self, main: str, *args: str, heap: str = "256m", extra_cp=()) -> list[str]:
        cp = os.pathsep.join(str(p) for p in [*jars("kafka"), *extra_cp])
        return ["java", f"-Xmx{heap}", "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", cp, main, *args]

    def _java(self, main: str, *args: str, timeout: float) -> str:
        """Run a short-lived Kafka JVM tool; raise with its output when it fails."""
        done = subprocess.run(self._java_cmd(main, *args), capture_output=True, text=True,
                              timeout=timeout, cwd=self.workdir)
        if done.returncode != 0:
            raise RuntimeError(f"{main} {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done.stdout

    def _admin(self, *args: str, timeout: float = 60) -> None:
        # JDK source-file mode: compiles KafkaAdmin.java in memory, no build step.
        self._java(str(self.workdir / "KafkaAdmin.java"), self.bootstrap_servers, *args, timeout=timeout)

    def _wait_ready(self) -> None:
        """Wait for the listener, then for the broker to answer an Admin describeCluster."""
        deadline = time.monotonic() + self.startup_timeout
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"Kafka broker exited with {self._proc.returncode} during start; "
                                   f"log tail:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka broker did not listen on {self.bootstrap_servers} within "
                                   f"{self.startup_timeout:.0f}s; log tail:\n{self._log_tail()}")
            time.sleep(0.2)
        try:
            self._admin("ready", timeout=max(5.0, deadline - time.monotonic()))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"Kafka broker on {self.bootstrap_servers} is not ready: {e}\n"
                               f"log tail:\n{self._log_tail()}") from e

    def _log_tail(self) -> str:
        """Both logs' tails (JVM errors land in stdout.log, Kafka's own in server.log)."""
        return (f"--- {self.workdir / 'stdout.log'}\n{tail(self.workdir / 'stdout.log', 20)}"
                f"--- {self.log_file}\n{tail(self.log_file, 40)}(temp dir kept for inspection)")
