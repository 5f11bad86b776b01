"""Batch runs' metrics: the run log row as a Prometheus textfile, and pushed to a real HTTP receiver."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from local_services import free_port
from runtime.metrics import export
from runtime.operations import MetricsSettings
from tests.test_run_log import full_record


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_textfile_says_what_the_run_log_row_says(tmp_path):
    rec = full_record()  # blocked: completeness(tip) failed, 10,000 in, 9,876 out, rejected late 3 / schema 121
    assert export(rec, MetricsSettings(textfile=tmp_path / "m")) == []
    got = samples((tmp_path / "m" / "backfill_rides.prom").read_text())
    p = ("pipeline", "backfill:rides")
    assert got[("tandem_run_status", (p, ("status", "blocked")))] == 1
    assert got[("tandem_run_status", (p, ("status", "success")))] == 0
    assert ("tandem_run_last_success_timestamp_seconds", (p,)) not in got  # it did not succeed
    assert got[("tandem_run_duration_seconds", (p,))] == 42.5
    assert got[("tandem_run_rows_in", (p,))] == 10_000 and got[("tandem_run_rows_out", (p,))] == 9_876
    assert got[("tandem_run_rejected", (p, ("reason", "schema")))] == 121
    assert got[("tandem_gate_verdict", (("gate", "completeness(tip)"), p))] == 2
    assert got[("tandem_gate_figure", (("gate", "completeness(tip)"), p))] == 0.9
    assert got[("tandem_null_rate", (("column", "tip"), p))] == 0.1
    assert got[("tandem_newest_event_timestamp_seconds", (p,))] == rec.newest_event.timestamp()


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):  # prometheus-client's push_to_gateway: PUT /metrics/job/<job>
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.path, body.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_push_reaches_the_gateway_and_a_down_gateway_never_fails_the_run(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = f"127.0.0.1:{server.server_address[1]}"
        assert export(full_record(), MetricsSettings(textfile=tmp_path / "m", pushgateway=gateway)) == []
        path, body = _Receiver.received[-1]
        assert path == "/metrics/job/tandem_backfill_rides"
        assert 'tandem_run_status{pipeline="backfill:rides",status="blocked"} 1.0' in body
    finally:
        server.shutdown()
    down = MetricsSettings(textfile=Path(tmp_path / "m2"), pushgateway=f"127.0.0.1:{free_port()}")
    problems = export(full_record(), down)
    assert problems == ["metrics not pushed to the gateway: URLError"]
    assert (tmp_path / "m2" / "backfill_rides.prom").exists()  # the textfile is still written
