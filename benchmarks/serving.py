"""Benchmark: serving latency. Tandem's lookup (the Python function and ``tandem serve`` over HTTP) against raw
Redis ``HGETALL`` of the same keys and Feast's ``get_online_features``, in one run.

Run from the repository root (after ``./dev setup``)::

    .venv/bin/python benchmarks/serving.py            # the full run (~6 min here)
    .venv/bin/python benchmarks/serving.py --quick    # a smoke run (~1 min)

What it does, in order:

1. Starts a real ``redis-server`` (``local_services.redis_server``), makes a user's project in a temp folder
   with the rides catalog (``tests/catalogs/rides.py``: string, int64, float64 and bool features, a composite
   key, an int64 key, two groups over one key), applies its Feast registry in process
   (``FeatureStore.apply``, as ``tandem feast apply`` would) and fills Redis with ``--entities`` feature rows by
   Tandem's own writer (``stream_jobs.online_sink.OnlineWriter``, what the stream job and ``tandem
   materialize`` use), event times just before the run (so every value is served, ``fresh``, and decoded).
2. **In process**, for each case (``--cases``: the ``driver`` view alone, 7 features in one Redis hash per
   entity; the ``rides_all`` feature service, 21 features in 4 views over 3 hashes per entity), for 1 entity
   and for 100 entities, ``--iterations`` requests of each method, interleaved request by request (the order
   of the three methods shuffled for each request, the same entities for all three):

   * ``raw``: ``HGETALL`` of the same hash keys (precomputed), one call for one key, else pipelined
     (``transaction=False``): the floor, bytes as Redis returns them, nothing decoded;
   * ``lookup``: ``serving.OnlineLookup.lookup`` (entity columns in, statuses, values, event times and ages out),
     re-reading the degraded marks every ``--degraded-refresh`` seconds (0.25, ``tandem serve``'s default: about
     one lookup in a thousand here reads them; 0 reads them in every lookup, as before 2db4be4);
   * ``feast``: ``FeatureStore.get_online_features(...).to_dict()`` on the same features and entities.

   Latency is ``perf_counter_ns`` around the call; ratios are to ``raw`` at the same percentile.
3. **Over HTTP**: ``tandem serve`` (the real command, a uvicorn server) as a child process on the same Redis,
   and a load generator in another process: open loop at ``--rate`` requests/s (request *i* is due at
   ``t0 + i / rate`` whatever the responses; latency is measured from that due time, so a slow server's queue
   counts: no coordinated omission), pre-encoded ``POST /features`` bodies on ``--connections`` keep-alive
   connections (a request waits for a free connection, and that wait counts too), a scheduler thread sleeping
   to each due time. ``--http-seconds`` measured after ``--http-warmup`` seconds, per case and entity count.
   The send lag (actual send - due) is reported so the client's own slowness is visible.

Prints rich tables; the figures also go to ``benchmarks/.data/serving/<UTC time>.json``. ``--profile`` adds
a cProfile of the lookup (py-spy is not in the lock).
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import io
import json
import multiprocessing
import os
import pstats
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This file is named like the ``serving`` package: its own folder must not shadow it.
sys.path[:] = [str(REPO)] + [x for x in sys.path if Path(x or ".").resolve() not in (REPO, REPO / "benchmarks")]

PROJECT = "bench_serving"
DATA_DIR = REPO / "benchmarks" / ".data" / "serving"
TANDEM = str(Path(sys.executable).parent / "tandem")
CASES = {  # name -> (features, feature_service)
    "driver": ("driver view: 7 features, 1 hash per entity", True),
    "rides_all": ("rides_all service: 21 features, 4 views, 3 hashes per entity", False),
}
METHODS = ("raw", "lookup", "feast")
TARGET_P99_RATIO = {1: 1.5, 100: 2.0}  # lookup p99 / raw p99, at most (issue 15)
TARGET_HTTP_P99_MS = 2.0  # one entity at 500 requests/s


# --------------------------------------------------------------------------- the world


def make_project(folder: Path, redis_address: str) -> Path:
    (folder / "features").mkdir(parents=True)
    (folder / "features" / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "catalogs" / "rides.py", folder / "features" / "rides.py")
    (folder / "tandem.yaml").write_text(f"project: {PROJECT}\ncatalogs: [features.rides]\nlake: lake\n"
                                        f"online_store: \"{redis_address}\"\n")
    return folder


def _value(dtype, rng):
    from transforms import FieldType

    if rng.random() < 0.1:
        return None
    if dtype is FieldType.STRING:
        return rng.choice(["SPRING", "none", "Zoë10", "東京", "d-" + str(rng.randrange(10_000))])
    if dtype is FieldType.BOOL:
        return rng.random() < 0.5
    if dtype is FieldType.INT64:
        return rng.choice([0, 1, rng.randrange(1000), 2**53 + 1, -(2**63), 2**63 - 1])
    return rng.choice([0.0, 1.5, rng.random() * 100, 1e300, float("inf")])


def fill(address: str, catalog, n: int, seed: int, now_ms: int) -> list[tuple[str, str, int]]:
    """``n`` feature rows (distinct drivers; 50 cities; int64 vehicles, extremes included) written by Tandem's
    writer, event times in the minute before ``now_ms``; returns the (driver, city, vehicle) triples."""
    from stream_jobs.online_sink import OnlineWriter

    rng = random.Random(seed)
    cities = [f"city-{i}" for i in range(49)] + ["東京"]
    triples, rows = [], []
    for i in range(n):
        vehicle = rng.choice([rng.randrange(-(2**63), 2**63), rng.randrange(100_000)])
        t = (f"drv-{i:06d}", rng.choice(cities), vehicle)
        triples.append(t)
        values = {f.name: _value(catalog.feature_dtype(f), rng) for _, f in catalog.features}
        rows.append({"ride_id": f"r{i}", "driver": t[0], "city": t[1], "vehicle": t[2],
                     "ts": now_ms - rng.randrange(60_000), "fare_per_km": 1.0, "minute_of_hour": 1, **values})
    with OnlineWriter(address, catalog=catalog, project=PROJECT) as writer:
        for i in range(0, n, 500):
            writer.write(rows[i:i + 500])
    return triples


class Requests:
    """The same entity batches for every method: key columns, Feast entity rows, raw hash keys, HTTP bodies."""

    def __init__(self, case: str, triples, catalog, batches: int, size: int, seed: int):
        from serving.features import HashKeys

        rng = random.Random(seed)
        self.case = case
        self.driver_only = CASES[case][1]
        groups = [g for g in catalog.groups if g.entity == "driver"] if self.driver_only else list(catalog.groups)
        hashes = {}
        for g in groups:  # views over the same key share a hash: one HGETALL per distinct key
            hashes.setdefault(tuple(sorted(g.key)), (g.key, HashKeys(PROJECT, g.key, tuple(
                catalog.schema.get_field(k).type for k in g.key))))
        self.features = [f"driver:{f.name}" for f in groups[0].features] if self.driver_only else None
        self.service = None if self.driver_only else "rides_all"
        self.batches = []
        for _ in range(batches):
            chosen = rng.sample(triples, size)
            columns = {"driver": [t[0] for t in chosen]}
            if not self.driver_only:
                columns |= {"city": [t[1] for t in chosen], "vehicle": [t[2] for t in chosen]}
            rows = [{k: columns[k][i] for k in columns} for i in range(size)]
            keys = [hk(tuple({"driver": t[0], "city": t[1], "vehicle": t[2]}[k] for k in key))
                    for t in chosen for key, hk in hashes.values()]
            body = {"entities": columns}
            body |= {"features": self.features} if self.features else {"feature_service": self.service}
            self.batches.append((columns, rows, keys, json.dumps(body).encode()))


# --------------------------------------------------------------------------- in process


def percentiles(samples_ns) -> dict:
    import numpy as np

    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {"n": int(len(a)), "p50_ms": float(p50), "p99_ms": float(p99), "p999_ms": float(p999),
            "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def in_process(req: Requests, lookup, store, client, iterations: int, warmup: int, seed: int) -> dict:
    fs_features = store.get_feature_service(req.service) if req.service else req.features

    def raw(batch):
        keys = batch[2]
        if len(keys) == 1:
            return client.hgetall(keys[0])
        with client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.hgetall(k)
            return pipe.execute()

    def ours(batch):
        return lookup.lookup(batch[0], features=req.features, feature_service=req.service)

    def feast(batch):
        return store.get_online_features(features=fs_features, entity_rows=batch[1]).to_dict()

    # The same values, untimed: every value the lookup serves equals Feast's for the first batches.
    for batch in req.batches[:5]:
        ours_result, theirs = ours(batch), feast(batch)
        for column in ours_result.features:
            for i, v in enumerate(column.values):
                t = theirs[column.feature.name][i]
                if column.statuses[i].value in ("fresh", "stale") and not (v == t or (v != v and t != t)):
                    raise SystemExit(f"the lookup and Feast differ: {column.feature.ref} entity {i}: {v!r} vs {t!r}")
    calls = {"raw": raw, "lookup": ours, "feast": feast}
    samples = {m: [] for m in METHODS}
    rng = random.Random(seed)
    order = list(METHODS)
    clock = time.perf_counter_ns
    n = len(req.batches)
    for i in range(warmup + iterations):
        batch = req.batches[i % n]
        rng.shuffle(order)
        for m in order:
            call = calls[m]
            t0 = clock()
            call(batch)
            took = clock() - t0
            if i >= warmup:
                samples[m].append(took)
    return {m: percentiles(s) for m, s in samples.items()}


def profile_lookup(req: Requests, lookup, iterations: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for i in range(iterations):
        lookup.lookup(req.batches[i % len(req.batches)][0], features=req.features, feature_service=req.service)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
    return out.getvalue()


# --------------------------------------------------------------------------- over HTTP


def _read_response(sock, buf: bytearray) -> tuple[int, bytearray]:
    """One HTTP/1.1 response with a Content-Length from ``sock`` (``buf``: bytes already read); (status, rest)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    head = bytes(buf[:end]).split(b"\r\n")
    status = int(head[0].split(b" ", 2)[1])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = end + 4 + length
    while len(buf) < total:
        chunk = sock.recv(max(65536, total - len(buf)))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return status, buf[total:]


def load_generator(port: int, bodies: list[bytes], rate: float, seconds: float, connections: int, out: str,
                   max_behind_s: float = 5.0) -> None:
    """Child process: open-loop ``POST /features`` at ``rate``/s for ``seconds``; writes due/sent/done (ns,
    perf_counter) and status per request to ``out`` (.npz). Stops sending once a request goes out more than
    ``max_behind_s`` after its due time (the server cannot hold the rate); those requests get status -2."""
    import numpy as np
    import queue

    sys.setswitchinterval(0.0002)  # a woken thread gets the GIL quickly (the default is 5 ms)
    requests = [(f"POST /features HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    n = int(rate * seconds)
    due = np.zeros(n, dtype=np.int64)
    sent = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.int32)
    idle: queue.SimpleQueue = queue.SimpleQueue()
    inbox = [queue.SimpleQueue() for _ in range(connections)]
    socks = []
    for c in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
        idle.put(c)

    def reader(c: int) -> None:
        sock, buf = socks[c], bytearray()
        while True:
            i = inbox[c].get()
            if i is None:
                return
            try:
                code, buf = _read_response(sock, buf)
            except (OSError, ValueError):
                code = -1
            done[i] = time.perf_counter_ns()
            status[i] = code
            idle.put(c)

    threads = [threading.Thread(target=reader, args=(c,), daemon=True) for c in range(connections)]
    for t in threads:
        t.start()
    interval = 1e9 / rate
    t0 = time.perf_counter_ns() + 50_000_000
    behind = int(max_behind_s * 1e9)
    for i in range(n):
        d = t0 + int(i * interval)
        due[i] = d
        wait = d - time.perf_counter_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        c = idle.get()  # blocks while every connection is busy: that wait counts (latency is from `due`)
        sent[i] = time.perf_counter_ns()
        if sent[i] - d > behind:  # the server cannot hold the rate: stop rather than queue for minutes
            idle.put(c)
            status[i:] = -2
            due[i:] = 0
            break
        inbox[c].put(i)
        socks[c].sendall(requests[i % len(requests)])
    deadline = time.monotonic() + 60
    for c in range(connections):  # every connection idle again: every response is in
        idle.get(timeout=max(0.1, deadline - time.monotonic()))
    for c in range(connections):
        inbox[c].put(None)
    for s in socks:
        s.close()
    np.savez(out, due=due, sent=sent, done=done, status=status)


def wait_for_server(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tandem serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.2)
    raise SystemExit("tandem serve did not answer /health in time")


def over_http(port: int, req: Requests, rate: float, seconds: float, warmup: float, connections: int,
              work: Path) -> dict:
    import numpy as np

    out = work / f"http-{req.case}-{len(req.batches[0][1])}-{rate:g}.npz"
    bodies = [b[3] for b in req.batches]
    proc = multiprocessing.get_context("spawn").Process(
        target=load_generator, args=(port, bodies, rate, warmup + seconds, connections, str(out)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"the load generator failed (exit code {proc.exitcode})")
    r = np.load(out)
    unsent = int((r["status"] == -2).sum())
    keep = ((r["due"] - r["due"][0]) >= warmup * 1e9) & (r["status"] != -2)
    if not keep.any():  # it fell behind during the warm-up: measure what there is
        keep = r["status"] != -2
    lat = (r["done"] - r["due"])[keep]
    lag = (r["sent"] - r["due"])[keep]
    ok = r["status"][keep] == 200
    gave_up = unsent > 0
    span_s = (r["done"][keep].max() - r["due"][keep].min()) / 1e9
    res = percentiles(lat)
    res |= {"rate": rate, "errors": int((~ok).sum()), "achieved_rps": float(keep.sum() / span_s),
            "fell_behind": gave_up, "unsent": unsent,
            "send_lag_p50_ms": float(np.percentile(lag, 50) / 1e6),
            "send_lag_p99_ms": float(np.percentile(lag, 99) / 1e6),
            "service_p50_ms": float(np.percentile((r["done"] - r["sent"])[keep], 50) / 1e6)}
    return res


# --------------------------------------------------------------------------- report


def machine() -> dict:
    import feast
    import redis as redis_py
    import uvicorn

    from benchmarks.machine import describe

    return {**describe(),
            "feast / redis-py / uvicorn": f"{feast.__version__} / {redis_py.__version__} / {uvicorn.__version__}",
            "hiredis": _has("hiredis")}


def _has(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return "no"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: few iterations, short HTTP runs")
    p.add_argument("--cases", default="driver,rides_all", help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--sizes", default="1,100", help="entities per request, comma-separated")
    p.add_argument("--iterations", type=int, default=10_000, help="in-process requests per method, one entity")
    p.add_argument("--iterations-many", type=int, default=3_000,
                   help="in-process requests per method, batches of more than one entity")
    p.add_argument("--entities", type=int, default=20_000, help="feature rows written to Redis")
    p.add_argument("--rate", type=float, default=500, help="HTTP requests per second (open loop)")
    p.add_argument("--rate-many", type=lambda t: [float(x) for x in t.split(",") if x], default=[100.0],
                   help="also run the batches of more than one entity at these rates (comma-separated; '' for none)")
    p.add_argument("--http-seconds", type=float, default=30, help="measured seconds per HTTP run")
    p.add_argument("--http-warmup", type=float, default=5, help="seconds discarded at the start of each HTTP run")
    p.add_argument("--connections", type=int, default=8, help="keep-alive connections of the load generator")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP runs")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process runs")
    p.add_argument("--profile", action="store_true", help="cProfile the lookup at each size (printed)")
    p.add_argument("--degraded-refresh", type=float, default=0.25,
                   help="seconds between the lookup's reads of the degraded marks (0: every lookup)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly keep their values
        for name, value in (("iterations", 300), ("iterations_many", 100), ("entities", 2_000), ("http_seconds", 3),
                            ("http_warmup", 1)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)

    from rich.console import Console

    console = Console(width=max(150, shutil.get_terminal_size().columns))
    say = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {msg}", highlight=False)  # noqa: E731
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    for c in cases:
        if c not in CASES:
            p.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")

    import redis as redis_py

    from feature_repo import store as fs
    from feature_repo.definitions import feast_objects
    from local_services import free_port
    from local_services.redis_server import RedisServer
    from serving import OnlineLookup
    from tests.catalogs.rides import CATALOG as RIDES

    info = machine()
    results = {"machine": info, "args": vars(args), "in_process": {}, "http": {}, "load": {}}
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-serving-"))
    with RedisServer() as server:
        address = f"{server.host}:{server.port}"
        folder = make_project(work / "shop", address)
        lake = folder / "lake"
        (lake / "_feast").mkdir(parents=True)
        store = fs.open_store(PROJECT, lake, address)
        store.apply(feast_objects([RIDES], lake))
        say(f"redis-server {redis_py.Redis(host=server.host, port=server.port).info('server')['redis_version']} "
            f"on {address}; writing {args.entities:,} feature rows with Tandem's writer ...")
        now_ms = time.time_ns() // 1_000_000
        triples = fill(address, RIDES, args.entities, args.seed, now_ms)
        client = redis_py.Redis(host=server.host, port=server.port)
        lookup = OnlineLookup([RIDES], PROJECT, address, degraded_refresh=args.degraded_refresh)
        reqs = {(c, n): Requests(c, triples, RIDES, 500 if n == 1 else 100, n, args.seed + n) for c in cases
                for n in sizes}
        profiles = {}
        if not args.no_in_process:
            for (c, n), req in reqs.items():
                its = args.iterations if n == 1 else args.iterations_many
                say(f"in process: {c}, {n} entit{'y' if n == 1 else 'ies'}, {its:,} requests per method")
                results["load"][f"{c}/{n}"] = os.getloadavg()[0]
                results["in_process"][f"{c}/{n}"] = in_process(req, lookup, store, client, its, max(20, its // 20),
                                                               args.seed)
                if args.profile:
                    profiles[f"{c}/{n}"] = profile_lookup(req, lookup, min(its, 1000))
        if not args.no_http:
            port = free_port()
            env = {**os.environ, "TANDEM_PROJECT": str(folder)}
            env.pop("TANDEM_REDIS", None)
            serve = subprocess.Popen([TANDEM, "serve", "--project", str(folder), "--port", str(port)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                wait_for_server(port, serve)
                say(f"tandem serve (pid {serve.pid}) on port {port}")
                for (c, n), req in reqs.items():
                    for rate in [args.rate] + ([] if n == 1 else [r for r in args.rate_many if r != args.rate]):
                        say(f"over HTTP: {c}, {n} entit{'y' if n == 1 else 'ies'}, {rate:g} requests/s open loop, "
                            f"{args.http_warmup:g} s + {args.http_seconds:g} s")
                        results["load"][f"http {c}/{n}@{rate:g}"] = os.getloadavg()[0]
                        results["http"][f"{c}/{n}@{rate:g}"] = over_http(port, req, rate, args.http_seconds,
                                                                         args.http_warmup, args.connections, work)
            finally:
                serve.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    serve.wait(10)
                if serve.poll() is None:
                    serve.kill()
        lookup.close()
        client.close()
    shutil.rmtree(work, ignore_errors=True)

    report(console, results, cases, sizes, profiles)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out = DATA_DIR / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=1))
    say(f"figures written to {out.relative_to(REPO)}")
    return 0


def report(console, results: dict, cases, sizes, profiles: dict) -> None:
    from rich.table import Table

    m = results["machine"]
    console.print(f"\n[bold]Serving latency[/] ({m['utc']} UTC, code {m['code']}, {m['cpu']}, Python {m['python']}, "
                  f"feast / redis-py / uvicorn {m['feast / redis-py / uvicorn']}, hiredis {m['hiredis']})",
                  highlight=False)
    if results["in_process"]:
        t = Table(title="In process: ms, and the ratio to raw HGETALL at the same percentile")
        for col in ("case", "entities", "method", "p50", "p99", "p99.9", "mean", "x raw p50", "x raw p99",
                    "x raw p99.9", "load"):
            t.add_column(col, justify="left" if col in ("case", "method") else "right")
        for c in cases:
            for n in sizes:
                r = results["in_process"].get(f"{c}/{n}")
                if r is None:
                    continue
                raw = r["raw"]
                for meth in METHODS:
                    x = r[meth]
                    ratio = lambda k: f"{x[k] / raw[k]:.2f}"  # noqa: E731
                    mark = ""
                    if meth == "lookup" and n in TARGET_P99_RATIO:
                        good = x["p99_ms"] / raw["p99_ms"] <= TARGET_P99_RATIO[n]
                        mark = f" {'[green]≤' if good else '[red]>'} {TARGET_P99_RATIO[n]}[/]"
                    t.add_row(c, str(n), meth, f"{x['p50_ms']:.3f}", f"{x['p99_ms']:.3f}", f"{x['p999_ms']:.3f}",
                              f"{x['mean_ms']:.3f}", ratio("p50_ms"), ratio("p99_ms") + mark, ratio("p999_ms"),
                              f"{results['load'][f'{c}/{n}']:.1f}")
                t.add_section()
        console.print(t)
    if results["http"]:
        t = Table(title="Over HTTP (tandem serve), open loop, latency from the scheduled send: ms")
        for col in ("case", "entities", "rate/s", "achieved/s", "p50", "p99", "p99.9", "max", "errors",
                    "send lag p99", "load"):
            t.add_column(col, justify="left" if col == "case" else "right")
        for key, x in results["http"].items():
                c, n = key.split("@")[0].split("/")
                n = int(n)
                p99 = f"{x['p99_ms']:.2f}"
                if n == 1:
                    good = x["p99_ms"] < TARGET_HTTP_P99_MS
                    p99 += f" {'[green]<' if good else '[red]≥'} {TARGET_HTTP_P99_MS:g}[/]"
                achieved = f"{x['achieved_rps']:.0f}" + (" [red](fell behind: stopped)[/]" if x["fell_behind"] else "")
                t.add_row(c, str(n), f"{x['rate']:g}", achieved, f"{x['p50_ms']:.2f}", p99,
                          f"{x['p999_ms']:.2f}", f"{x['max_ms']:.1f}", str(x["errors"]),
                          f"{x['send_lag_p99_ms']:.2f}", f"{results['load'][f'http {key}']:.1f}")
        console.print(t)
    for key, text in profiles.items():
        console.print(f"\n[bold]cProfile of the lookup, {key}[/]", highlight=False)
        print(text)


if __name__ == "__main__":
    sys.exit(main())
