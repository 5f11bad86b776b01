"""Redis over TLS, with a CA of the user's own: the address ``host:port,ssl=true,ssl_ca_certs=CA.pem`` (Feast's
connection string, redis-py's options) works for every Redis client Tandem has -- the stream job's JVM sink,
the Python writer of ``tandem materialize``, the serving lookup -- and for Feast. A server whose certificate the
CA did not sign is refused in one line, and what the JVM sink cannot honour is refused, not dropped.

The server is a real redis-server with TLS only (no plain port), its certificates made by ``openssl``."""

from __future__ import annotations

import pytest

from feature_repo import store as fs
from local_services.redis_server import RedisServer
from local_services.tls import make_certificates
from runtime.errors import UserError
from runtime.events_io import write_events
from serving.lookup import OnlineLookup
from stream_jobs.job import run
from stream_jobs.online_sink import RedisUnreachable
from examples.transactions.features.generate import StreamSpec, generate
from tandem.reference import evaluate
from tests.factories import T0, TEST_PROJECT, online_writer, stream_spec, tx
from tests.test_online_sink import GROUPS, feast, latest_rows, marker_row, online, version_of  # noqa: F401
from tests.test_stream_redis_outage import served, wanted
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    certificates = make_certificates(tmp_path_factory.mktemp("certs"))
    with RedisServer(tls=certificates) as server:
        yield server, certificates, (f"{server.host}:{server.port},ssl=true,ssl_ca_certs={certificates.ca},"
                                     "ssl_check_hostname=true")


def test_the_stream_sink_the_writer_and_feast_speak_tls_with_the_users_ca(flink_table_env, feast, tls, tmp_path):
    server, _, address = tls
    records = generate(StreamSpec(users=8, merchants=3, rate_per_s=0.1, duration="1h", seed=91))
    events = tmp_path / "events.jsonl"
    write_events(records, events, TRANSACTIONS)
    run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "out", 5_000, redis=address))  # the JVM sink

    rows = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000).rows
    latest = {g.entity: latest_rows(rows, g) for g in GROUPS}
    users, merchants = sorted(latest["user"]), sorted(latest["merchant"])
    pairs = [(users[i % len(users)], merchants[i % len(merchants)]) for i in range(max(len(users), len(merchants)))]
    store = fs.open_store(TEST_PROJECT, feast["lake"], address)
    assert served(store, pairs) == wanted(latest, pairs)  # Feast reads, over TLS, what the JVM sink wrote

    with online_writer(address) as writer:  # tandem materialize's writer, in Python
        assert writer.write([marker_row("u-tls", "m-tls", T0 + 7, 7)]).written == 2
    got, _ = online(store, [("u-tls", "m-tls")])
    assert version_of(got, 0) == {"user": 7, "merchant": 7}

    lookup = OnlineLookup([TRANSACTIONS], TEST_PROJECT, address)  # tandem serve's
    user = users[0]
    result = lookup.lookup({"user_id": [user]}, features=[f"user:{f.name}" for f in GROUPS[0].features])
    assert not result.errors and result.online_store["state"] == "closed", (result.errors, result.online_store)
    values = result.rows()[0]
    assert [values[f"user:{f.name}"].value for f in GROUPS[0].features] == \
        [latest["user"][user][f.name] for f in GROUPS[0].features]


def test_a_server_the_ca_did_not_sign_and_what_the_jvm_sink_cannot_do_are_one_line(flink_table_env, feast, tls,
                                                                                   tmp_path):
    server, certificates, address = tls
    plain = f"{server.host}:{server.port},ssl=true"  # the JVM's and Python's own CAs: not the test CA's
    with pytest.raises(RedisUnreachable, match="certificate verify failed") as e:
        online_writer(plain)
    assert "\n" not in str(e.value)

    events = tmp_path / "events.jsonl"
    write_events([tx("a", t=T0)], events, TRANSACTIONS)
    # a client certificate (the server's pair serves: the server asks for none): the sink has none to give
    client_cert = f"{address},ssl_certfile={certificates.cert},ssl_keyfile={certificates.key}"
    with pytest.raises(UserError, match="the stream job's online sink does not take ssl_certfile"):
        run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "out", 5_000, redis=client_cert))
    unverified = f"{server.host}:{server.port},ssl=true,ssl_cert_reqs=none"
    with pytest.raises(UserError, match=r"verifies the server's certificate \(ssl_cert_reqs=none"):
        run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "out2", 5_000, redis=unverified))
