"""``tandem serve``'s HTTP endpoint: a real uvicorn server on a free port, a real HTTP client (http.client), a real
Redis; the project is a user's, with the rides catalog (tests/catalogs/rides.py) as its own module.

The app runs in-process (``uvicorn.Server`` in a thread, so its clock can be pinned and its statuses exact);
the CLI tests start ``tandem serve`` itself as a user would.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import uvicorn

from local_services import free_port, port_open
from runtime.degraded import clear_degraded, mark_degraded
from runtime.project import load_project
from serving.http import create_app
from serving.lookup import OnlineLookup
from stream_jobs.online_sink import OnlineWriter
from tests.shell import shell_env

PROJECT = "serve_http"
DB = 4  # a logical database of the session's Redis no other test module uses
MIN = 60_000
NOW = 1_714_600_000_000
TOKEN = "tok-" + "Zq8f3K1x9Lm2Np7Rv5Ws"  # what a test server requires; searched for in every output
TANDEM = str(Path(sys.executable).parent / "tandem")
REFRESH_MS = 100  # serving.degraded_refresh of this module's project: how late a degraded mark may be honoured


def make_project(folder: Path, redis_address: str, serving_yaml: str = "") -> Path:
    (folder / "features").mkdir(parents=True)
    (folder / "features" / "__init__.py").write_text("")
    shutil.copy(Path(__file__).parent / "catalogs" / "rides.py", folder / "features" / "rides.py")
    (folder / "tandem.yaml").write_text(f"project: {PROJECT}\ncatalogs: [features.rides]\nlake: lake\n"
                                        f"online_store: \"{redis_address}\"\n{serving_yaml}")
    return folder


class Server:
    """A uvicorn server for ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def call(port, method, path, body=None, raw=None, headers=None):
    """One HTTP request; (status, headers, parsed JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
        kind = response.getheader("Content-Type", "")
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, json.loads(payload) if "json" in kind else payload
    finally:
        conn.close()


def assert_error(result, status, kind, text):
    code, headers, body = result
    assert code == status, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error"} and body["error"]["kind"] == kind, body
    message = body["error"]["message"]
    assert text in message and "\n" not in message and "Traceback" not in message, message


@pytest.fixture(scope="module")
def project(redis_server, tmp_path_factory):
    address = f"{redis_server.host}:{redis_server.port},db={DB}"
    proj = load_project(make_project(tmp_path_factory.mktemp("serve-http") / "shop", address,
                                     f"serving:\n  degraded_refresh: {REFRESH_MS}ms\n") / "tandem.yaml")
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB)
    client.flushdb()
    with OnlineWriter(address, catalog=proj.catalog(), project=PROJECT) as writer:
        writer.write([ride("d1", "NY", 2**63 - 1, NOW - 5 * MIN, rides=3, fare_sum=float("inf"), promo="東京"),
                      ride("d2", "C12", -(2**63), NOW - 20 * MIN, rides=7, fare_sum=12.5, promo=None)])
    yield proj, client
    client.flushdb()


def ride(driver, city, vehicle, t, rides, fare_sum, promo):
    """A feature row of the rides catalog: these values where the tests look, something in every other feature."""
    rng = random.Random(t)
    values = {"driver_rides_5m": rides, "driver_riders_30m": 4, "driver_max_riders_2h": 2, "driver_min_fare_30m": 1.5,
              "driver_last_riders_2h": 1, "driver_cities_2h": 1, "driver_fare_per_km_avg_30m": 2.25,
              "driver_km_sum_1d": rng.random(), "driver_last_minute_1d": 7, "cd_rides_10m": rides,
              "cd_fare_sum_1h": fare_sum, "cd_tip_sum_1h": None, "cd_tip_avg_1h": None, "cd_tip_min_10m": None,
              "cd_last_promo_1h": promo, "cd_promos_1h": 0 if promo is None else 1, "cd_last_surge_10m": True,
              "vehicle_rides_1h": rides, "vehicle_max_riders_1h": 2, "vehicle_last_driver_1h": driver,
              "vehicle_surges_1h": 1}
    return {"ride_id": f"r-{driver}-{t}", "driver": driver, "city": city, "vehicle": vehicle, "ts": t, **values}


@pytest.fixture(scope="module")
def open_server(project):
    """The app without a token, its clock pinned to NOW."""
    proj, _ = project
    lookup = OnlineLookup.for_project(proj, clock=lambda: NOW, max_entities=50)
    with Server(create_app(lookup)) as server:
        yield server
    lookup.close()


# --- lookups -------------------------------------------------------------------------------------------------

def test_a_feature_service_lookup_of_composite_and_int64_keys(open_server):
    code, headers, body = call(open_server.port, "POST", "/features", {
        "feature_service": "rides_all",
        "entities": {"driver": ["d1", "d2", "d9"], "city": ["NY", "C12", "NY"], "vehicle": [2**63 - 1, -(2**63), 5]}})
    assert code == 200 and headers["content-type"] == "application/json", body
    names = body["metadata"]["feature_names"]
    assert names[:3] == ["driver", "city", "vehicle"] and len(names) == 3 + 21
    assert body["results"][2] == {"values": [2**63 - 1, -(2**63), 5]}  # int64 keys, exact
    column = dict(zip(names, body["results"]))
    rides = column["driver_rides_5m"]  # fresh_for 10m, max 1h, default 0
    assert rides["values"] == [3, 7, 0] and rides["statuses"] == ["fresh", "stale", "defaulted"]
    assert rides["event_timestamps"] == ["2024-05-01T21:41:40.000Z", "2024-05-01T21:26:40.000Z", None]
    assert rides["ages_ms"] == [5 * MIN, 20 * MIN, None]
    fare = column["cd_fare_sum_1h"]  # fresh_for 30m, no max, default 0.0; inf has no JSON number
    assert fare["values"] == ["Infinity", 12.5, 0.0] and fare["statuses"] == ["fresh", "fresh", "defaulted"]
    promo = column["cd_last_promo_1h"]
    assert promo["values"] == ["東京", None, "none"] and promo["statuses"] == ["fresh", "fresh", "defaulted"]
    assert column["cd_tip_sum_1h"]["values"] == [None, None, None]  # stored nulls (fresh) and a missing one
    assert column["cd_tip_sum_1h"]["statuses"] == ["fresh", "fresh", "missing"]
    assert column["vehicle_last_driver_1h"]["values"] == ["d1", "d2", None]
    assert column["cd_last_surge_10m"]["values"] == [True, True, False]
    meta = body["metadata"]
    assert meta["served_at"] == "2024-05-01T21:46:40.000Z" and meta["degraded"] == {} and meta["errors"] == {}
    assert meta["features"][0] == {"name": "driver_rides_5m", "view": "driver", "type": "int64", "fresh_for": "10m",
                                   "max_staleness": "1h", "default": 0}


def test_a_list_of_refs_with_full_feature_names(open_server):
    code, _, body = call(open_server.port, "POST", "/features", {
        "features": ["vehicle:vehicle_rides_1h", "driver:driver_fare_per_km_avg_30m"], "full_feature_names": True,
        "entities": {"vehicle": [-(2**63)], "driver": ["d1"]}})
    assert code == 200, body
    assert body["metadata"]["feature_names"] == ["vehicle", "driver", "vehicle__vehicle_rides_1h",
                                                 "driver__driver_fare_per_km_avg_30m"]
    assert body["results"][2]["values"] == [7] and body["results"][2]["statuses"] == ["fresh"]
    assert body["results"][3]["values"] == [2.25] and body["results"][3]["statuses"] == ["stale"]  # 5m > 90s


def test_a_degraded_group_is_named_with_why(open_server, project):
    proj, client = project
    wired = OnlineLookup.for_project(proj)
    assert wired.degraded_marks.refresh_s == REFRESH_MS / 1000  # tandem.yaml's serving.degraded_refresh
    wired.close()
    mark_degraded(client, PROJECT, {"city_driver": {"since": "2024-05-01T21:00:00+00:00", "why": "range(fare) 9 %"}})
    try:
        time.sleep(REFRESH_MS / 1000)  # the server honours a mark at most serving.degraded_refresh after it is written
        code, _, body = call(open_server.port, "POST", "/features", {
            "features": ["city_driver:cd_fare_sum_1h", "city_driver:cd_tip_avg_1h", "driver:driver_rides_5m"],
            "entities": {"city": ["NY"], "driver": ["d1"]}})
    finally:
        clear_degraded(client, PROJECT, ["city_driver"])
        time.sleep(REFRESH_MS / 1000)  # and the cleared mark: the next tests see none
    assert code == 200
    assert body["metadata"]["degraded"] == {"city_driver": {"since": "2024-05-01T21:00:00+00:00",
                                                            "why": "range(fare) 9 %"}}
    assert [r.get("statuses") for r in body["results"][2:]] == [["defaulted"], ["missing"], ["fresh"]]
    assert body["results"][2]["values"] == [0.0] and body["results"][2]["ages_ms"] == [5 * MIN]


def test_health_and_metrics(open_server):
    def served(text, group, status):
        for line in text.splitlines():
            if line.startswith(f'tandem_serve_values_total{{group="{group}",status="{status}"}}'):
                return float(line.split()[-1])
        return 0.0

    code, _, body = call(open_server.port, "GET", "/health")
    assert code == 200 and body == {"status": "ok", "project": PROJECT, "online_store": {"state": "closed"}}
    before = call(open_server.port, "GET", "/metrics")[2].decode()
    call(open_server.port, "POST", "/features", {"features": ["driver:driver_rides_5m", "driver:driver_cities_2h"],
                                                 "entities": {"driver": ["d1", "d2", "nobody"]}})
    code, headers, after = call(open_server.port, "GET", "/metrics")
    after = after.decode()
    assert code == 200 and headers["content-type"].startswith("text/plain")
    assert served(after, "driver", "fresh") - served(before, "driver", "fresh") == 2
    assert served(after, "driver", "stale") - served(before, "driver", "stale") == 2
    assert served(after, "driver", "defaulted") - served(before, "driver", "defaulted") == 2
    assert 'tandem_serve_request_seconds_bucket{endpoint="/features",le="0.001"}' in after
    assert 'tandem_serve_requests_total{code="200",endpoint="/features"}' in after
    assert 'tandem_serve_group_degraded{group="driver"} 0.0' in after


# --- bad input -----------------------------------------------------------------------------------------------

ENTITIES = {"driver": ["d1"]}
REFS = ["driver:driver_rides_5m"]


@pytest.mark.parametrize("request_body, status, kind, text", [
    (b'{"features": ["driver:driver_rides_5m"], "entities": ', 400, "bad_request", "the request body is not JSON: "),
    (b"\xff\xfe\x00garbage", 400, "bad_request", "the request body is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "bad_request", "not JSON"),
    (b"", 400, "bad_request", "the request body is not JSON"),
    (b'["driver:driver_rides_5m"]', 400, "bad_request", "the request body must be a JSON object"),
    ({"features": REFS}, 400, "bad_request", "the request has no entities"),
    ({"features": REFS, "entities": ENTITIES, "project": "x"}, 400, "bad_request", "unknown request key 'project'"),
    ({"features": REFS, "entities": ENTITIES, "full_feature_names": "yes"}, 400, "bad_request",
     "full_feature_names must be true or false"),
    ({"features": ["driver_rides_5m"], "entities": ENTITIES}, 400, "bad_request", "is not a \"view:feature\" ref"),
    ({"entities": ENTITIES}, 400, "bad_request", "give either features"),
    ({"features": ["nope:x"], "entities": ENTITIES}, 404, "not_found", "no feature view 'nope'"),
    ({"features": ["driver:nope"], "entities": ENTITIES}, 404, "not_found", "feature view 'driver' has no feature 'nope'"),
    ({"feature_service": "shop_all", "entities": ENTITIES}, 404, "not_found", "no feature service 'shop_all'"),
    ({"features": REFS, "entities": {}}, 422, "bad_entities", "entities lack key column 'driver'"),
    ({"features": REFS, "entities": {"driver": [7]}}, 422, "bad_entities", "driver[0] is 7 (int), but 'driver' is a string"),
    ({"features": ["vehicle:vehicle_rides_1h"], "entities": {"vehicle": ["7"]}}, 422, "bad_entities",
     "vehicle[0] is '7' (str), but 'vehicle' is an int64 key"),
    ({"features": ["vehicle:vehicle_rides_1h"], "entities": {"vehicle": [1.5]}}, 422, "bad_entities", "is an int64 key"),
    ({"features": ["vehicle:vehicle_rides_1h"], "entities": {"vehicle": [2**64]}}, 422, "bad_entities",
     "is an int64 key"),
    ({"features": ["vehicle:vehicle_rides_1h"], "entities": {"vehicle": [True]}}, 422, "bad_entities", "True (bool)"),
    ({"features": ["city_driver:cd_rides_10m"], "entities": {"city": ["NY", "C12"], "driver": ["d1"]}}, 422,
     "bad_entities", "'driver' has 1 values but 'city' has 2"),
    ({"features": REFS, "entities": {"driver": ["d1"], "vehicle": [1]}}, 422, "bad_entities",
     "'vehicle' (str) is not a key of the requested features"),
    ({"features": REFS, "entities": {"driver": [f"d{i}" for i in range(51)]}}, 413, "too_large",
     "51 entities in one lookup; this server takes at most 50"),
])
def test_bad_requests_get_a_json_error_with_the_right_status(open_server, request_body, status, kind, text):
    raw = request_body if isinstance(request_body, bytes) else None
    result = call(open_server.port, "POST", "/features", body=None if raw is not None else request_body, raw=raw)
    assert_error(result, status, kind, text)


def test_a_body_beyond_the_limit_is_refused_before_it_is_read(open_server):
    huge = b'{"features": ["driver:driver_rides_5m"], "entities": {"driver": ["' + b"x" * (2 << 20) + b'"]}}'
    assert_error(call(open_server.port, "POST", "/features", raw=huge), 413, "too_large",
                 f"the request body is {len(huge)} bytes; this server takes at most {1 << 20}")


def test_unknown_paths_and_methods_are_json_errors(open_server):
    assert_error(call(open_server.port, "GET", "/get-online-features"), 404, "not_found",
                 "no endpoint /get-online-features; the endpoints are POST /features")
    assert_error(call(open_server.port, "GET", "/features"), 405, "method_not_allowed", "GET /features is not served")
    assert_error(call(open_server.port, "DELETE", "/health"), 405, "method_not_allowed", "DELETE /health")


def test_the_server_keeps_serving_after_every_bad_request(open_server):
    for raw in (b"{", b"[]", b'{"features": 1, "entities": {}}', b"\x00" * 10):
        assert call(open_server.port, "POST", "/features", raw=raw)[0] == 400
    code, _, body = call(open_server.port, "POST", "/features", {"features": REFS, "entities": ENTITIES})
    assert code == 200 and body["results"][1]["values"] == [3]


def test_an_unreachable_redis_without_a_fallback_is_503_for_lookups_and_health(project):
    proj, _ = project
    dead = OnlineLookup.for_project(proj, redis=f"127.0.0.1:{free_port()},password=hunter2-hunter2", timeout=0.3,
                                    snapshot=None)
    with Server(create_app(dead)) as server:
        result = call(server.port, "POST", "/features", {"features": REFS, "entities": ENTITIES})
        assert_error(result, 503, "online_store_unavailable", "the online store (Redis at 127.0.0.1:")
        code, _, body = call(server.port, "GET", "/health")
        assert code == 503 and body["status"] == "unavailable" and "does not answer" in body["online_store"]["why"]
        assert "hunter2" not in json.dumps(result[2]) + json.dumps(body)
    dead.close()


def test_an_unreachable_redis_before_any_snapshot_serves_defaults_and_says_why(project):
    """A project's lookup falls back to its snapshot; with none written yet every value is absent (defaulted or
    missing), each view named in errors with what to run; /health is 503: nothing can serve."""
    proj, _ = project
    dead = OnlineLookup.for_project(proj, redis=f"127.0.0.1:{free_port()},password=hunter2-hunter2", timeout=0.3)
    with Server(create_app(dead)) as server:
        code, _, body = call(server.port, "POST", "/features", {"features": REFS + ["vehicle:vehicle_rides_1h"],
                                                                "entities": {"driver": ["d1"], "vehicle": [1]}})
        assert code == 200, body
        assert [r.get("statuses") for r in body["results"][2:]] == [["defaulted"], ["missing"]]
        assert set(body["metadata"]["errors"]) == {"driver", "vehicle"}
        assert "run `tandem materialize`" in body["metadata"]["errors"]["driver"]
        assert body["metadata"]["online_store"]["state"] == "closed"  # one failure: the breaker is not open yet
        assert "did not answer" in body["metadata"]["online_store"]["why"]
        code, _, health = call(server.port, "GET", "/health")
        assert code == 503 and health["status"] == "unavailable" and "does not answer" in health["online_store"]["why"]
        assert "hunter2" not in json.dumps(body) + json.dumps(health)
    dead.close()


# --- the token ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded_server(project):
    from runtime.secrets import Secret

    proj, _ = project
    lookup = OnlineLookup.for_project(proj, clock=lambda: NOW)
    with Server(create_app(lookup, token=Secret(TOKEN))) as server:
        yield server
    lookup.close()


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN},
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": "Bearer "}, {"X-Api-Key": TOKEN},
])
def test_every_endpoint_refuses_a_missing_or_wrong_token(guarded_server, headers):
    for method, path, body in (("POST", "/features", {"features": REFS, "entities": ENTITIES}), ("GET", "/health", None),
                               ("GET", "/metrics", None), ("GET", "/nowhere", None)):
        result = call(guarded_server.port, method, path, body, headers=headers)
        assert_error(result, 401, "unauthorized", "missing or wrong API token: send Authorization: Bearer <token>")
        assert result[1]["www-authenticate"] == "Bearer"
        assert TOKEN not in json.dumps(result[2])


def test_the_right_token_is_served(guarded_server):
    for scheme in ("Bearer", "bearer"):
        code, _, body = call(guarded_server.port, "POST", "/features", {"features": REFS, "entities": ENTITIES},
                             headers={"Authorization": f"{scheme} {TOKEN}"})
        assert code == 200 and body["results"][1]["statuses"] == ["fresh"]
    code, _, metrics = call(guarded_server.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and 'tandem_serve_requests_total{code="401",endpoint="/features"}' in metrics.decode()
    assert TOKEN not in metrics.decode()


def test_two_authorization_headers_are_refused(guarded_server):
    conn = http.client.HTTPConnection("127.0.0.1", guarded_server.port, timeout=10)
    conn.putrequest("GET", "/health")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Authorization", "Bearer other")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 401
    conn.close()


# --- the command ----------------------------------------------------------------------------------------------

def tandem_serve(project_dir, *args, **env):
    return subprocess.run([TANDEM, "serve", "--project", str(project_dir), *args], capture_output=True, text=True,
                          env=shell_env(**env), timeout=120)


def assert_one_line_error(result, text):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "serving.example.com"])
def test_serve_refuses_a_non_loopback_host_without_a_token(project, host):
    proj, _ = project
    assert_one_line_error(tandem_serve(proj.root, "--host", host),
                          f"--host {host} is not a loopback address and no API token is configured: set "
                          "$TANDEM_SERVE_TOKEN (or serving.token in tandem.yaml)")


def test_serve_refuses_a_short_token_without_showing_it(project):
    proj, _ = project
    result = tandem_serve(proj.root, "--host", "0.0.0.0", TANDEM_SERVE_TOKEN="abc123")
    assert_one_line_error(result, "$TANDEM_SERVE_TOKEN is too short or has spaces around it: use at least 16")
    assert "abc123" not in result.stderr


def test_serve_refuses_a_port_in_use(project, open_server):
    proj, _ = project
    assert_one_line_error(tandem_serve(proj.root, "--port", str(open_server.port)),
                          f"cannot listen on 127.0.0.1:{open_server.port}: Address already in use")


def test_tandem_serve_on_all_interfaces_with_a_token_from_tandem_yaml(project, tmp_path):
    """The real command: a token from tandem.yaml lets it bind 0.0.0.0, then every request needs it; the token is
    in no output; Ctrl-C stops it cleanly."""
    proj, _ = project
    folder = make_project(tmp_path / "guarded", proj.online_store,
                          f"serving:\n  token: {TOKEN}\n  max_entities: 2\n  timeout: 500ms\n")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([TANDEM, "serve", "--project", str(folder), "--host", "0.0.0.0", "--port",
                                    str(port)], stdout=out, stderr=subprocess.STDOUT, env=shell_env())
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert call(port, "GET", "/health")[0] == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert call(port, "GET", "/health", headers=auth)[:1] == (200,)
        code, _, body = call(port, "POST", "/features", {"feature_service": "rides_all", "entities": {
            "driver": ["d1"], "city": ["NY"], "vehicle": [2**63 - 1]}}, headers=auth)
        assert code == 200, body
        column = dict(zip(body["metadata"]["feature_names"], body["results"]))  # the wall clock: 2024 rows are old
        assert column["driver_rides_5m"]["values"] == [0] and column["driver_rides_5m"]["statuses"] == ["defaulted"]
        assert column["vehicle_rides_1h"]["values"] == [3] and column["vehicle_rides_1h"]["statuses"] == ["fresh"]
        assert_error(call(port, "POST", "/features", {"features": REFS, "entities": {"driver": ["a", "b", "c"]}},
                          headers=auth), 413, "too_large", "this server takes at most 2")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    output = log.read_text()
    assert code == 0, output
    assert "token required (from tandem.yaml)" in output and f"on http://0.0.0.0:{port}" in output
    assert TOKEN not in output and "Traceback" not in output
