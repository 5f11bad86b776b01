"""Load test: ``tandem stream`` held at a fixed event rate from Kafka for minutes: memory, freshness, keeping up.

Run from the repository root (after ``./dev setup``)::

    .venv/bin/python benchmarks/stream_load.py                        # 2,000 events/s for 10 minutes
    .venv/bin/python benchmarks/stream_load.py --minutes 1 --rate 200  # a smoke run

What runs:

* a real ``redis-server`` and a real KRaft Kafka broker (``local_services``), a one-partition topic;
* a project made by ``tandem init`` (the example catalog: user and merchant groups);
* ``tandem stream`` itself, as a user starts it, in its own process group: ``--source kafka:...``
  ``--redis ...`` ``--allowed-lateness`` (``--lateness``, 100 ms by default, as the freshness benchmark),
  ``--state-backend`` (rocksdb by default: state off the heap; ``--state-backend hashmap`` for the heap),
  checkpoints every 2 s, the feature log and dead letters as files, the project's run log, ``--metrics-port``
  (the monitor's Prometheus endpoint) and ``--rest-port`` (Flink's REST API);
* a producer process, ``benchmarks/jvm/PacedProducer.java``, replaying generated card transactions
  (``StreamSpec``: 100k users, 5k merchants, Zipf keys, 5 % out of order, 1 % duplicates, 1 % invalid;
  cached under ``benchmarks/.data/stream-load/``) at exactly ``--rate`` events/s for ``--minutes``, event
  times mapped onto the send clock (shifted to it, and stretched: the generator's lines span less event
  time than ``lines / rate``, which left the newest event 17 % of the elapsed time old when sent), logging
  each record's send time.

What is measured, in this process while it runs:

* **Freshness, end to end**, by probes: ``--probes`` events per second, chosen beforehand among the events
  that are valid, first of their id and newer than every event before them (never late, never a
  duplicate); from its due send time each probe's user and merchant hashes are read back (``_ts:<view>``,
  what Feast serves) every 5 ms until both hold a row at least as new as the probe; freshness = that read's
  return time - the probe's actual send time (from the producer's log). p50/p99 over the whole period, and
  per minute. The watermark holds an event until one ``lateness + 1 ms`` newer arrives, so freshness is at
  least the allowed lateness by construction.
* **The monitor's freshness gauge** (``tandem_stream_feature_freshness_seconds``: wall clock - the newest
  accepted event time), scraped every ``--sample-every`` seconds, for comparison.
* **Memory**, every ``--sample-every`` seconds: the RSS of the job's JVM (the PyFlink gateway, which is the
  whole mini-cluster) and of the job's Python driver (psutil), and the JVM's heap used and committed (Flink's
  REST metrics ``Status.JVM.Memory.Heap.*``); at start (after ``--warmup`` seconds), middle and end, the
  peak, and the trend: least-squares slopes in MiB per minute of the RSS and of the heap floor (the lowest
  heap-used sample in each minute: what survives collections), after the warm-up.
* **Keeping up**: records the job has read (the monitor's ``tandem_stream_records_in``) against records
  produced, sampled; the largest backlog, and the backlog once the producer is done (after ``--drain`` s).

Prints rich tables; the figures also go to ``benchmarks/.data/stream-load/<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# benchmarks/serving.py is named like the serving package: this folder must not shadow it.
sys.path[:] = [str(REPO)] + [x for x in sys.path if Path(x or ".").resolve() not in (REPO, REPO / "benchmarks")]

DATA_DIR = REPO / "benchmarks" / ".data" / "stream-load"
PRODUCER_SOURCE = REPO / "benchmarks" / "jvm" / "PacedProducer.java"
TANDEM = str(Path(sys.executable).parent / "tandem")
PROJECT = "stream_load"
MIB = 2**20


# --------------------------------------------------------------------------- data


def ensure_events(args, say) -> tuple[Path, int]:
    """The generated events file (cached) and its line count."""
    seconds = int(args.minutes * 60) + args.tail
    key = f"u{args.users}-m{args.merchants}-r{args.rate:g}-d{seconds}-s{args.seed}"
    path = DATA_DIR / key / "events.jsonl"
    if not path.exists():
        from examples.transactions.features.generate import StreamSpec, generate
        from examples.transactions.features.transactions import CATALOG
        from runtime.events_io import write_events

        path.parent.mkdir(parents=True, exist_ok=True)
        say(f"generating {args.rate * seconds:,.0f} events ({seconds} s at {args.rate:g}/s) into {path} ...")
        began = time.monotonic()
        spec = StreamSpec(users=args.users, merchants=args.merchants, rate_per_s=args.rate, duration=f"{seconds}s",
                          time_format="epoch_ms", seed=args.seed)
        tmp = path.with_suffix(".tmp.jsonl")
        write_events(generate(spec), tmp, CATALOG)
        os.replace(tmp, path)
        say(f"generated in {time.monotonic() - began:.0f} s (not part of any figure)")
    with path.open("rb") as f:
        lines = sum(1 for _ in f)
    return path, lines


@dataclass
class Probe:
    line: int  # its position in the file = in the topic
    entities: tuple  # per view of the writer: the entity value
    event_ms: int  # as in the file (before it is mapped onto the send clock: sent_time)


def sent_time(event_ms: int, base_ms: int, start_ms: int, scale: float) -> int:
    """An event time of the file as sent: ``base_ms`` (the file's first) at ``start_ms``, stretched by ``scale``.
    ``benchmarks/jvm/PacedProducer.java`` computes the same, in the same doubles."""
    return start_ms + math.floor((event_ms - base_ms) * scale)


def choose_probes(path: Path, per_second: float, rate: float, say) -> tuple[list[Probe], int, int]:
    """Probe events, about ``per_second`` of them per second of sending: valid, the first of their id, and newer
    than every event before them (so never late, never a duplicate). Also returns the file's first and last
    event times (numeric ones)."""
    from examples.transactions.features.transactions import CATALOG

    cache = path.with_name(f"probes-{per_second:g}.json")
    if cache.exists():
        doc = json.loads(cache.read_text())
        if "newest_ms" in doc:
            return [Probe(p[0], tuple(p[1]), p[2]) for p in doc["probes"]], doc["base_ms"], doc["newest_ms"]
    say(f"choosing probe events in {path.name} ...")
    schema = CATALOG.schema
    keys = [g.key for g in CATALOG.groups]
    step = max(1, round(rate / per_second))
    seen, newest, base, last, probes = set(), None, None, None, []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and type(rec.get(schema.event_time)) is int:
                base = rec[schema.event_time] if base is None else min(base, rec[schema.event_time])
                last = rec[schema.event_time] if last is None else max(last, rec[schema.event_time])
            event = schema.validate(rec)
            if not isinstance(event, dict):
                continue
            rid, t = event[schema.event_id], event[schema.event_time]
            first = rid not in seen
            seen.add(rid)
            newer = newest is None or t > newest
            newest = t if newest is None else max(newest, t)
            if first and newer and (not probes or i - probes[-1].line >= step):
                probes.append(Probe(i, tuple(event[k[0]] if len(k) == 1 else tuple(event[c] for c in k)
                                             for k in keys), t))
    cache.write_text(json.dumps({"base_ms": base, "newest_ms": last,
                                 "probes": [[p.line, list(p.entities), p.event_ms] for p in probes]}))
    return probes, base, last


# --------------------------------------------------------------------------- watching


class Prober(threading.Thread):
    """Reads each due probe's rows back from Redis every ``poll_s`` until both are at least as new as it."""

    def __init__(self, redis_url: str, probes: list[Probe], start_ms: int, base_ms: int, scale: float, rate: float,
                 poll_s: float = 0.005):
        super().__init__(daemon=True)
        import redis as redis_py

        from examples.transactions.features.transactions import CATALOG
        from stream_jobs.online_sink import OnlineWriter

        with OnlineWriter(redis_url, catalog=CATALOG, project=PROJECT) as writer:
            self.keys = [[writer._hash_key(v, p.entities[j]) for j, v in enumerate(writer.views)] for p in probes]
            self.fields = [v.ts_field for v in writer.views]
        self.client = redis_py.Redis.from_url(redis_url)
        self.probes, self.start_ms, self.rate, self.poll_s = probes, start_ms, rate, poll_s
        self.base_ms, self.scale = base_ms, scale
        self.visible_us: list[int | None] = [None] * len(probes)
        self.stop = threading.Event()

    def run(self) -> None:
        from google.protobuf.timestamp_pb2 import Timestamp

        pending: list[int] = []
        nxt = 0
        while not self.stop.is_set():
            now_ms = time.time() * 1000
            while nxt < len(self.probes) and self.start_ms + self.probes[nxt].line * 1000 / self.rate <= now_ms:
                pending.append(nxt)
                nxt += 1
            if pending:
                with self.client.pipeline(transaction=False) as pipe:
                    for p in pending:
                        for key, fld in zip(self.keys[p], self.fields):
                            pipe.hget(key, fld)
                    replies = pipe.execute()
                read_us = time.time_ns() // 1000
                width, still = len(self.fields), []
                for j, p in enumerate(pending):
                    want = sent_time(self.probes[p].event_ms, self.base_ms, self.start_ms, self.scale)
                    got = replies[j * width:(j + 1) * width]
                    if all(r is not None and Timestamp.FromString(r).ToMilliseconds() >= want for r in got):
                        self.visible_us[p] = read_us
                    else:
                        still.append(p)
                pending = still
            self.stop.wait(self.poll_s)


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def scrape(metrics_url: str) -> dict[str, float]:
    """The monitor's Prometheus text as {name: value} (one pipeline: labels ignored, dead letters summed)."""
    out: dict[str, float] = {}
    for line in _get(metrics_url).decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{")[0].removesuffix("_total")  # counters are exposed as <name>_total
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value) if name.startswith("tandem_stream_dead") else float(value)
    return out


def heap(rest_url: str) -> tuple[float | None, float | None]:
    """The JVM heap used and committed (bytes), from Flink's REST metrics of the job manager (on the local
    mini-cluster, the one JVM)."""
    with contextlib.suppress(Exception):
        got = json.loads(_get(f"{rest_url}/jobmanager/metrics?get=Status.JVM.Memory.Heap.Used,"
                              "Status.JVM.Memory.Heap.Committed"))
        by = {m["id"]: float(m["value"]) for m in got}
        return by.get("Status.JVM.Memory.Heap.Used"), by.get("Status.JVM.Memory.Heap.Committed")
    return None, None


@dataclass
class Sample:
    t_s: float  # since the producer's start
    jvm_rss: float
    driver_rss: float
    heap_used: float | None
    heap_committed: float | None
    records_in: float | None
    produced: int
    monitor_freshness_s: float | None
    redis_rss: float
    load1: float = 0.0


class Sampler(threading.Thread):
    def __init__(self, every_s: float, jvm_pid: int, driver_pid: int, redis_pid: int, rest_url: str,
                 metrics_url: str, start_ms: int, rate: float, lines: int):
        super().__init__(daemon=True)
        import psutil

        self.jvm, self.driver, self.redis = (psutil.Process(jvm_pid), psutil.Process(driver_pid),
                                             psutil.Process(redis_pid))
        self.every_s, self.rest_url, self.metrics_url = every_s, rest_url, metrics_url
        self.start_ms, self.rate, self.lines = start_ms, rate, lines
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def sample(self) -> Sample:
        now_ms = time.time() * 1000
        metrics = {}
        with contextlib.suppress(Exception):
            metrics = scrape(self.metrics_url)
        used, committed = heap(self.rest_url)
        produced = int(min(self.lines, max(0.0, (now_ms - self.start_ms) * self.rate / 1000 + 1)))
        s = Sample((now_ms - self.start_ms) / 1000, self.jvm.memory_info().rss, self.driver.memory_info().rss,
                   used, committed, metrics.get("tandem_stream_records_in"), produced,
                   metrics.get("tandem_stream_feature_freshness_seconds"), self.redis.memory_info().rss,
                   os.getloadavg()[0])
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self.stop.wait(self.every_s - (time.time() * 1000 - self.start_ms) / 1000 % self.every_s):
            with contextlib.suppress(Exception):
                self.sample()


# --------------------------------------------------------------------------- helpers


def java_child(pid: int, timeout: float = 120) -> int:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.name() == "java":
                    return p.pid
        time.sleep(0.5)
    raise SystemExit("tandem stream started no JVM")


def wait_running(rest_url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tandem stream exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            jobs = json.loads(_get(f"{rest_url}/jobs/overview"))["jobs"]
            if jobs and jobs[0]["state"] == "RUNNING":
                return
        time.sleep(0.5)
    raise SystemExit(f"the stream job was not RUNNING within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) points, in MiB per minute."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60 / MIB


def pct(values, q) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def machine() -> dict:
    from benchmarks.machine import describe

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {**describe(),
            "java": java[-1].strip() if java else "?"}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=2000, help="events per second into Kafka")
    p.add_argument("--minutes", type=float, default=10, help="how long the producer sends")
    p.add_argument("--lateness", default="100ms", help="the job's --allowed-lateness")
    p.add_argument("--checkpoint-interval", default="2s", help="the job's --checkpoint-interval")
    p.add_argument("--state-backend", default="rocksdb", choices=("hashmap", "rocksdb"),
                   help="the job's --state-backend: rocksdb keeps the windows off the heap (the ten-minute target)")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--merchants", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--probes", type=float, default=20, help="freshness probes per second")
    p.add_argument("--sample-every", type=float, default=5, help="seconds between memory and metric samples")
    p.add_argument("--warmup", type=float, default=60, help="seconds after which memory is 'at start' "
                                                           "(trend slopes are fitted after it)")
    p.add_argument("--tail", type=int, default=5, help="extra seconds of events after the measured period")
    p.add_argument("--prepare", action="store_true", help="only generate (and cache) the events and probes")
    p.add_argument("--drain", type=float, default=30, help="seconds to wait for the job to catch up at the end")
    args = p.parse_args(argv)

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)
    say = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)  # noqa: E731
    if args.warmup >= args.minutes * 60:
        args.warmup = args.minutes * 60 / 4
    events, lines = ensure_events(args, say)
    probes, base_ms, newest_ms = choose_probes(events, args.probes, args.rate, say)
    scale = lines / args.rate * 1000 / max(1, newest_ms - base_ms)  # the last event time at the last send
    say(f"{lines:,} events, {len(probes):,} probes")
    if args.prepare:
        return 0

    import numpy as np

    from local_services import free_port
    from local_services.kafka_broker import KafkaBroker
    from local_services.redis_server import RedisServer
    from runtime.jars import jars
    from tandem.init import init

    info = machine()
    work = Path(tempfile.mkdtemp(prefix="tandem-stream-load-"))
    result: dict = {"machine": info, "args": vars(args), "lines": lines}
    stream = None
    say("starting redis-server and a KRaft Kafka broker ...")
    with RedisServer() as redis_server, KafkaBroker() as kafka:
        redis_addr = f"{redis_server.host}:{redis_server.port}"
        topic = "transactions"
        kafka.create_topic(topic, partitions=1)
        folder = work / "shop"
        init(folder, name=PROJECT)
        rest_port, metrics_port = free_port(), free_port()
        rest_url, metrics_url = f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{metrics_port}/metrics"
        log = work / "stream.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_")}
        env.pop("TANDEM_REDIS", None), env.pop("TANDEM_KAFKA", None), env.pop("TANDEM_LAKE", None)
        cmd = [TANDEM, "stream", "--project", str(folder), "--source", f"kafka:{kafka.bootstrap_servers}/{topic}",
               "--out", str(work / "out"), "--redis", redis_addr, "--allowed-lateness", args.lateness,
               "--checkpoint-interval", args.checkpoint_interval, "--state-backend", args.state_backend,
               "--kafka-start", "earliest",
               "--rest-port", str(rest_port), "--metrics-port", str(metrics_port)]
        say(f"starting tandem stream ({' '.join(cmd[2:])}) ...")
        with log.open("w") as out:
            stream = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
                                      start_new_session=True)
        try:
            classes = work / "classes"  # the producer compiled now, so its start is short and its lead enough
            cp = os.pathsep.join(str(x) for x in jars("kafka"))
            subprocess.run(["javac", "-nowarn", "-cp", cp, "-d", str(classes), str(PRODUCER_SOURCE)], check=True,
                           capture_output=True)
            cp = os.pathsep.join([str(classes), cp])
            jvm_pid = java_child(stream.pid)
            wait_running(rest_url, stream, log)
            say(f"job RUNNING (driver pid {stream.pid}, JVM pid {jvm_pid}); producing {lines:,} events at "
                f"{args.rate:,.0f}/s for {lines / args.rate / 60:.1f} min ...")
            # After the producer's JVM start, compile and file read (about 5 s per 100 MB under load).
            start_ms = int(time.time() * 1000) + 8_000 + int(os.path.getsize(events) / MIB * 50)
            prober = Prober(redis_server.url, probes, start_ms, base_ms, scale, args.rate)
            sampler = Sampler(args.sample_every, jvm_pid, stream.pid, redis_server._proc.pid, rest_url, metrics_url,
                              start_ms, args.rate, lines)
            sampler.sample()  # before the first event
            prober.start(), sampler.start()
            plog = work / "producer.log"
            heap_mb = max(512, int(os.path.getsize(events) * 4 / MIB) + 256)
            producer = subprocess.Popen(["java", f"-Xmx{heap_mb}m", "-cp", cp, "PacedProducer",
                                         kafka.bootstrap_servers, topic, str(events), str(args.rate), str(start_ms),
                                         str(base_ms), repr(scale), str(plog)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
            last_say = time.monotonic()
            while producer.poll() is None:
                time.sleep(1)
                if stream.poll() is not None:
                    producer.kill()
                    raise SystemExit(f"tandem stream died:\n{log.read_text()[-3000:]}")
                if time.monotonic() - last_say >= 60 and sampler.samples:
                    s = sampler.samples[-1]
                    say(f"t={s.t_s:5.0f} s: read {s.records_in or 0:,.0f} of {s.produced:,} produced; JVM RSS "
                        f"{s.jvm_rss / MIB:,.0f} MiB, heap {((s.heap_used or 0) / MIB):,.0f} MiB; monitor "
                        f"freshness {s.monitor_freshness_s if s.monitor_freshness_s is not None else float('nan'):.2f} s")
                    last_say = time.monotonic()
            if producer.returncode != 0:
                raise SystemExit(f"the producer failed: {producer.stderr.read()[-2000:]}")
            ended_s = (time.time() * 1000 - start_ms) / 1000
            say(f"producer done at t={ended_s:.0f} s; draining (up to {args.drain:g} s) ...")
            deadline = time.monotonic() + args.drain
            caught_up_s = None
            while time.monotonic() < deadline:
                s = sampler.sample()
                if s.records_in is not None and s.records_in >= lines:
                    caught_up_s = s.t_s - ended_s
                    break
                time.sleep(0.5)
            time.sleep(1)  # the last probes' reads
            prober.stop.set(), sampler.stop.set()
            prober.join(10), sampler.join(10)
            final = sampler.sample()
        finally:
            if stream is not None and stream.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(stream.pid, signal.SIGTERM)
                try:
                    stream.wait(30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(stream.pid, signal.SIGKILL)
                    stream.wait(10)

    # --- figures
    sends = np.loadtxt(plog, dtype=np.int64).reshape(-1, 3)
    send_us = sends[:, 1]
    due_us = start_ms * 1000 + (np.arange(len(sends)) * 1e6 / args.rate).astype(np.int64)
    measured_s = lines / args.rate
    fr, fr_t, unseen = [], [], 0
    for p, vis in zip(probes, prober.visible_us):
        if vis is None:
            unseen += 1
            continue
        fr.append((vis - send_us[p.line]) / 1000)
        fr_t.append((send_us[p.line] / 1000 - start_ms) / 1000)
    fr, fr_t = np.array(fr), np.array(fr_t)
    after = fr[fr_t >= args.warmup] if len(fr) else fr
    per_minute = []
    for m0 in range(0, int(np.ceil(measured_s / 60))):
        sel = (fr_t >= m0 * 60) & (fr_t < (m0 + 1) * 60)
        per_minute.append((m0, int(sel.sum()), pct(fr[sel], 50), pct(fr[sel], 99), float(fr[sel].max()) if sel.any()
                           else float("nan")))
    sent_sorted = np.sort(send_us)
    for s in sampler.samples:  # produced by then, from the producer's log (the schedule if it ran late)
        s.produced = int(np.searchsorted(sent_sorted, start_ms * 1000 + s.t_s * 1e6, side="right"))
    samples = [s for s in sampler.samples if 0 <= s.t_s <= ended_s + 1]
    steady = [s for s in samples if s.t_s >= args.warmup]
    mid_t = (args.warmup + ended_s) / 2

    def at(t):
        return min(steady or samples, key=lambda s: abs(s.t_s - t))

    floors = {}
    for s in steady:
        if s.heap_used is not None:
            k = int(s.t_s // 60)
            floors[k] = min(floors.get(k, (s.t_s, float("inf"))), (s.t_s, s.heap_used), key=lambda x: x[1])
    backlog = [(s.t_s, s.produced - s.records_in) for s in samples if s.records_in is not None]
    mon = [s.monitor_freshness_s for s in steady if s.monitor_freshness_s is not None]
    result |= {
        "freshness_ms": {"probes": len(probes), "seen": int(len(fr)), "never_readable": unseen,
                         "p50": pct(fr, 50), "p90": pct(fr, 90), "p99": pct(fr, 99), "max": float(fr.max()) if len(fr)
                         else None, "after_warmup_p50": pct(after, 50), "after_warmup_p99": pct(after, 99),
                         "per_minute": per_minute},
        "monitor_freshness_s": {"samples": len(mon), "p50": pct(mon, 50), "p99": pct(mon, 99),
                                "max": max(mon) if mon else None},
        "memory_mib": {
            "start": _mem(at(args.warmup)), "middle": _mem(at(mid_t)), "end": _mem(at(ended_s)),
            "peak_jvm_rss": max(s.jvm_rss for s in samples) / MIB,
            "peak_heap_used": max((s.heap_used or 0) for s in samples) / MIB,
            "peak_heap_committed": max((s.heap_committed or 0) for s in samples) / MIB,
            "peak_driver_rss": max(s.driver_rss for s in samples) / MIB,
            "slope_jvm_rss_per_min": slope_per_min([(s.t_s, s.jvm_rss) for s in steady]),
            "slope_heap_floor_per_min": slope_per_min(list(floors.values())),
            "slope_heap_used_per_min": slope_per_min([(s.t_s, s.heap_used) for s in steady if s.heap_used]),
            "slope_driver_rss_per_min": slope_per_min([(s.t_s, s.driver_rss) for s in steady]),
            "heap_floor_by_minute": [(int(t // 60), v / MIB) for t, v in floors.values()],
        },
        "keeping_up": {"produced": int(len(sends)), "read_at_end": final.records_in,
                       "max_backlog_events": max((b for _, b in backlog), default=None),
                       "backlog_at_producer_end": next((b for t, b in backlog if t >= ended_s - 1e-9), None),
                       "caught_up_after_s": caught_up_s,
                       "producer_send_lag_p99_ms": float(np.percentile(send_us - due_us, 99)) / 1000,
                       "producer_rate": len(sends) / ((send_us[-1] - send_us[0]) / 1e6)},
        "samples": [s.__dict__ for s in sampler.samples],
    }
    shutil.rmtree(work, ignore_errors=True)
    report(console, result, args)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out = DATA_DIR / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    say(f"figures written to {out.relative_to(REPO)}")
    return 0


def _mem(s: Sample) -> dict:
    return {"t_s": round(s.t_s), "jvm_rss": s.jvm_rss / MIB, "heap_used": (s.heap_used or 0) / MIB,
            "heap_committed": (s.heap_committed or 0) / MIB, "driver_rss": s.driver_rss / MIB,
            "redis_rss": s.redis_rss / MIB}


def report(console, r: dict, args) -> None:
    from rich.table import Table

    m, f, mem, k = r["machine"], r["freshness_ms"], r["memory_mib"], r["keeping_up"]
    console.print(f"\n[bold]tandem stream from Kafka at {args.rate:,.0f} events/s for {args.minutes:g} min[/] "
                  f"({m['utc']} UTC, code {m['code']}, {m['cpu']}, {m['java']}; allowed lateness {args.lateness}, "
                  f"checkpoints every {args.checkpoint_interval})", highlight=False)
    t = Table(title="Freshness: probe sent to Kafka -> both its rows readable in Redis (ms)")
    for c in ("over", "probes", "p50", "p90", "p99", "max", "never readable"):
        t.add_column(c, justify="left" if c == "over" else "right")
    t.add_row("the whole period", f"{f['seen']:,}", f"{f['p50']:,.0f}", f"{f['p90']:,.0f}", f"{f['p99']:,.0f}",
              f"{(f['max'] or float('nan')):,.0f}", str(f["never_readable"]))
    t.add_row(f"after the first {args.warmup:g} s", "", f"{f['after_warmup_p50']:,.0f}", "",
              f"{f['after_warmup_p99']:,.0f}", "", "")
    mf = r["monitor_freshness_s"]
    t.add_row(f"monitor's freshness gauge, sampled after {args.warmup:g} s", str(mf["samples"]), f"{mf['p50'] * 1000:,.0f}", "",
              f"{mf['p99'] * 1000:,.0f}", f"{(mf['max'] or float('nan')) * 1000:,.0f}", "")
    console.print(t)
    console.print("per minute (minute: probes p50/p99/max ms): " + "; ".join(
        f"{mm}: {n} {a:,.0f}/{b:,.0f}/{c:,.0f}" for mm, n, a, b, c in f["per_minute"]), highlight=False)
    t = Table(title="Memory (MiB)")
    for c in ("when", "t s", "JVM RSS", "heap used", "heap committed", "driver RSS", "redis RSS"):
        t.add_column(c, justify="left" if c == "when" else "right")
    for name in ("start", "middle", "end"):
        x = mem[name]
        t.add_row(name, str(x["t_s"]), f"{x['jvm_rss']:,.0f}", f"{x['heap_used']:,.0f}", f"{x['heap_committed']:,.0f}",
                  f"{x['driver_rss']:,.0f}", f"{x['redis_rss']:,.0f}")
    t.add_row("peak", "", f"{mem['peak_jvm_rss']:,.0f}", f"{mem['peak_heap_used']:,.0f}",
              f"{mem['peak_heap_committed']:,.0f}", f"{mem['peak_driver_rss']:,.0f}", "")
    show = lambda v: "n/a" if v is None else f"{v:+.1f}"  # noqa: E731
    t.add_row("slope, MiB/min (after warm-up)", "", show(mem["slope_jvm_rss_per_min"]),
              f"{show(mem['slope_heap_used_per_min'])} (floor {show(mem['slope_heap_floor_per_min'])})", "",
              show(mem["slope_driver_rss_per_min"]), "")
    console.print(t)
    console.print("heap floor per minute (MiB): " + ", ".join(f"{mm}: {v:,.0f}" for mm, v in
                                                             mem["heap_floor_by_minute"]), highlight=False)
    loads = [x["load1"] for x in r["samples"]]
    console.print(f"1-minute load average while it ran: {min(loads):.1f}-{max(loads):.1f} "
                  f"(median {statistics.median(loads):.1f}) on {m['cpu'].split(' x ')[0]} cores", highlight=False)
    kept = k["read_at_end"] is not None and k["read_at_end"] >= k["produced"]
    console.print(f"Keeping up: produced {k['produced']:,} at {k['producer_rate']:,.0f}/s (send lag p99 "
                  f"{k['producer_send_lag_p99_ms']:.1f} ms); read {k['read_at_end'] or 0:,.0f}; largest sampled "
                  f"backlog {k['max_backlog_events'] or 0:,.0f} events ({(k['max_backlog_events'] or 0) / args.rate:.1f} s);"
                  f" at the producer's end {k['backlog_at_producer_end'] or 0:,.0f}; "
                  + (f"[green]kept up[/] (all read {k['caught_up_after_s']:.1f} s after the last send)" if kept
                     else "[red]did not catch up[/]"), highlight=False)


if __name__ == "__main__":
    sys.exit(main())
