"""Alerts against a real HTTP receiver on 127.0.0.1: what arrives, what is suppressed, what is never shown.

The receiver is http.server in a thread; nothing of HTTP is mocked. Expected
bodies, lines and file records are written from the rules of runtime/alerts.py,
not produced by calling it.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runtime import alerts
from runtime.alerts import ALERT_KINDS, RUNBOOK, Alert, resolve, send
from runtime.operations import AlertSettings
from tests.receiver import Receiver
from tests.shell import shell_env

T = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
HOUR_MS = 3_600_000
SECRETS = ("SECRETTOKEN", "SECRET2", "SECRETPASS")


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment must not stand in for the receiver
    r = Receiver()
    yield r
    r.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(tmp_path: Path, webhook: str | None, repeat_after_ms: int = HOUR_MS) -> AlertSettings:
    return AlertSettings(file=tmp_path / "deep" / "alerts.jsonl", webhook=webhook, repeat_after_ms=repeat_after_ms)


def records(s: AlertSettings) -> list[dict]:
    return [json.loads(line) for line in s.file.read_text().splitlines()]


def gate_alert(subject="completeness(tip)", pipeline="backfill:rides") -> Alert:
    return Alert(kind="gate_blocked", pipeline=pipeline, owner="fraud-oncall",
                 summary="completeness(tip) 90.0% < 95%: the Delta commit was blocked",
                 figures={"figure": 0.9, "threshold": 0.95, "rows": 10_000}, run_id="r1", subject=subject)


def test_the_post_arrives_with_a_slack_compatible_body_and_the_structured_fields(tmp_path, receiver):
    s = settings(tmp_path, receiver.url)
    d = send(gate_alert(), s, now=T)

    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["path"] == "/hook"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["body"]["text"] == ("[gate_blocked] backfill:rides (fraud-oncall): completeness(tip) 90.0% < 95%: "
                                    "the Delta commit was blocked — RUNBOOK.md#a-quality-gate-blocked-a-write")
    fields = {"kind": "gate_blocked", "pipeline": "backfill:rides", "owner": "fraud-oncall",
              "summary": "completeness(tip) 90.0% < 95%: the Delta commit was blocked",
              "figures": {"figure": 0.9, "threshold": 0.95, "rows": 10_000}, "run_id": "r1",
              "subject": "completeness(tip)", "runbook": "RUNBOOK.md#a-quality-gate-blocked-a-write"}
    assert post["body"]["tandem"] == {**fields, "at": "2026-12-04T02:00:00+00:00"}

    assert (d.sent, d.failed, d.suppressed) == (["file", "webhook"], [], False)
    assert d.line() == "gate_blocked completeness(tip): sent file, webhook"
    assert records(s) == [{"type": "alert", "at": "2026-12-04T02:00:00+00:00", **fields,
                           "sent": ["file", "webhook"], "failed": [], "suppressed": False}]


def test_an_unreachable_webhook_is_a_failed_delivery_and_the_alert_is_still_in_the_file(tmp_path):
    port = closed_port()
    s = settings(tmp_path, f"http://127.0.0.1:{port}/hook")
    d = send(gate_alert(), s, now=T)  # must not raise

    assert d.sent == ["file"] and not d.suppressed
    assert len(d.failed) == 1
    assert d.failed[0].startswith("webhook not delivered: ")
    assert d.failed[0].endswith(f"(http://127.0.0.1:{port})")
    assert d.line() == f"gate_blocked completeness(tip): sent file; {d.failed[0]}"
    (rec,) = records(s)
    assert (rec["kind"], rec["pipeline"], rec["sent"], rec["failed"]) == (
        "gate_blocked", "backfill:rides", ["file"], d.failed)


def test_a_webhook_answering_500_is_not_delivered_after_one_retry(tmp_path, receiver):
    receiver.status = 500
    s = settings(tmp_path, receiver.url)
    d = send(gate_alert(), s, now=T)

    assert len(receiver.posts) == 2  # the first try and one retry
    assert d.sent == ["file"]
    assert d.failed == [f"webhook not delivered: HTTP 500 Internal Server Error (http://127.0.0.1:{receiver.port})"]
    assert records(s)[0]["failed"] == d.failed


def test_a_4xx_is_not_delivered_and_not_retried(tmp_path, receiver):
    receiver.status = 404
    d = send(gate_alert(), settings(tmp_path, receiver.url), now=T)
    assert len(receiver.posts) == 1
    assert d.failed == [f"webhook not delivered: HTTP 404 Not Found (http://127.0.0.1:{receiver.port})"]


def test_a_webhook_that_does_not_answer_in_time_is_not_delivered_and_not_retried(tmp_path, receiver, monkeypatch):
    monkeypatch.setattr(alerts, "TIMEOUT_S", 0.2)
    receiver.delay_s = 1.0
    d = send(gate_alert(), settings(tmp_path, receiver.url), now=T)
    assert len(receiver.posts) == 1
    assert d.failed == [f"webhook not delivered: no answer within 0.2 s (http://127.0.0.1:{receiver.port})"]


def test_a_repeat_within_repeat_after_is_suppressed_and_after_it_is_sent_again(tmp_path, receiver):
    s = settings(tmp_path, receiver.url)
    first = send(gate_alert(), s, now=T)
    repeat = send(gate_alert(), s, now=T + timedelta(minutes=59))

    assert len(receiver.posts) == 1
    assert not first.suppressed
    assert (repeat.sent, repeat.failed, repeat.suppressed) == (["file"], [], True)
    assert repeat.line() == "gate_blocked completeness(tip): repeat, suppressed"
    assert [r["suppressed"] for r in records(s)] == [False, True]

    # repeat_after is counted from the last alert that was sent, not from the suppressed repeat
    again = send(gate_alert(), s, now=T + timedelta(minutes=60))
    assert not again.suppressed and again.sent == ["file", "webhook"]
    assert len(receiver.posts) == 2
    assert send(gate_alert(), s, now=T + timedelta(minutes=61)).suppressed
    assert len(receiver.posts) == 2


def test_a_resolve_in_between_makes_the_next_failure_alert_at_once(tmp_path, receiver):
    s = settings(tmp_path, receiver.url)
    send(gate_alert(), s, now=T)
    resolve("backfill:rides", s, now=T + timedelta(minutes=1))
    d = send(gate_alert(), s, now=T + timedelta(minutes=2))

    assert not d.suppressed and len(receiver.posts) == 2
    kinds = [(r["type"], r["pipeline"]) for r in records(s)]
    assert kinds == [("alert", "backfill:rides"), ("resolved", "backfill:rides"), ("alert", "backfill:rides")]
    assert records(s)[1]["at"] == "2026-12-04T02:01:00+00:00"


def test_a_resolve_of_another_pipeline_ends_nothing_here(tmp_path, receiver):
    s = settings(tmp_path, receiver.url)
    send(gate_alert(), s, now=T)
    resolve("backfill:trips", s, now=T + timedelta(minutes=1))
    assert send(gate_alert(), s, now=T + timedelta(minutes=2)).suppressed
    assert len(receiver.posts) == 1


def test_a_resolve_with_nothing_ongoing_writes_nothing(tmp_path):
    s = settings(tmp_path, None)
    resolve("backfill:rides", s, now=T)
    assert not s.file.exists()
    send(gate_alert(), s, now=T)
    resolve("backfill:rides", s, now=T + timedelta(minutes=1))
    resolve("backfill:rides", s, now=T + timedelta(minutes=2))
    assert [r["type"] for r in records(s)] == ["alert", "resolved"]


def test_different_subjects_and_kinds_are_independent_failures(tmp_path, receiver):
    s = settings(tmp_path, receiver.url)
    assert not send(gate_alert("completeness(tip)"), s, now=T).suppressed
    assert not send(gate_alert("range(fare)"), s, now=T + timedelta(minutes=1)).suppressed
    sla = Alert("sla_breach", "backfill:rides", "fraud-oncall", "newest event 27.0 h old > 26 h")
    assert not send(sla, s, now=T + timedelta(minutes=2)).suppressed
    assert send(gate_alert("completeness(tip)"), s, now=T + timedelta(minutes=3)).suppressed
    assert len(receiver.posts) == 3
    assert [p["body"]["tandem"]["subject"] for p in receiver.posts] == ["completeness(tip)", "range(fare)", None]


def test_a_failed_webhook_does_not_start_a_quiet_period(tmp_path, receiver):
    """A repeat after an undelivered alert tries the webhook again: a down channel hides nothing."""
    receiver.status = 503
    s = settings(tmp_path, receiver.url)
    send(gate_alert(), s, now=T)
    receiver.status = 200
    d = send(gate_alert(), s, now=T + timedelta(minutes=1))
    assert not d.suppressed and d.sent == ["file", "webhook"]
    assert len(receiver.posts) == 3  # 503, its retry, then the repeat delivered


def test_no_webhook_is_file_only_and_no_failure(tmp_path):
    s = settings(tmp_path, None)
    d = send(gate_alert(), s, now=T)
    assert (d.sent, d.failed, d.suppressed) == (["file"], [], False)
    assert d.line() == "gate_blocked completeness(tip): sent file"
    assert records(s)[0]["sent"] == ["file"]
    assert send(gate_alert(), s, now=T + timedelta(minutes=5)).suppressed


def test_an_unwritable_file_is_a_failure_and_the_webhook_still_gets_the_alert(tmp_path, receiver):
    (tmp_path / "deep").write_text("a file where the alerts directory should be")
    d = send(gate_alert(), settings(tmp_path, receiver.url), now=T)
    assert d.sent == ["webhook"]
    assert len(d.failed) == 1 and d.failed[0].startswith("file not written: ")
    assert len(receiver.posts) == 1


def test_a_webhook_url_path_query_and_password_never_show(tmp_path, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    secret_path = "/services/T0/B0/SECRETTOKEN?key=SECRET2"
    bad = closed_port()
    urls = [
        f"http://127.0.0.1:{receiver.port}{secret_path}",  # delivered
        f"http://127.0.0.1:{bad}{secret_path}",  # refused
        f"http://user:SECRETPASS@127.0.0.1:{bad}{secret_path}",  # refused, with a password
        f"http://user:SECRETPASS@127.0.0.1:notaport{secret_path}",  # not a URL urllib can open
        f"hooks.example.com{secret_path}",  # no scheme
        f"ftp://127.0.0.1{secret_path}",  # not http
        f"http://127.0.0.1:{receiver.port}/SECRETTOKEN x?key=SECRET2",  # a space: http.client refuses the path
    ]
    lines, failures = [], []
    for i, url in enumerate(urls):
        s = settings(tmp_path, url)
        d = send(gate_alert(subject=f"g{i}"), s, now=T)
        lines.append(d.line())
        failures += d.failed
    receiver.status = 500
    d = send(gate_alert(subject="answered 500"), settings(tmp_path, urls[0]), now=T)
    lines.append(d.line())
    failures += d.failed

    assert receiver.posts[0]["path"] == "/services/T0/B0/SECRETTOKEN?key=SECRET2"  # the real URL was used
    assert len(failures) == len(urls)  # every one but the delivered first (the 500 makes up the count)
    shown = "\n".join([*lines, *failures, settings(tmp_path, None).file.read_text(), caplog.text])
    for secret in SECRETS:
        assert secret not in shown
    assert f"(http://127.0.0.1:{bad})" in shown  # the host and port are shown, to know which webhook


def test_a_password_in_the_webhook_url_is_sent_as_basic_auth(tmp_path, receiver):
    url = f"http://hook%20user:SECRET%3APASS@127.0.0.1:{receiver.port}/hook"
    d = send(gate_alert(), settings(tmp_path, url), now=T)
    assert d.sent == ["file", "webhook"]
    assert receiver.posts[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(
        b"hook user:SECRET:PASS").decode()


def test_an_unknown_kind_is_a_value_error():
    with pytest.raises(ValueError, match="page_everyone"):
        Alert(kind="page_everyone", pipeline="backfill:rides", owner="o", summary="s")


def test_every_kind_has_a_runbook_section():
    assert set(RUNBOOK) == set(ALERT_KINDS)
    assert all(v.startswith("RUNBOOK.md#") for v in RUNBOOK.values())
    headings = [line[3:] for line in (Path(__file__).parent.parent / "RUNBOOK.md").read_text().splitlines()
                if line.startswith("## ")]
    anchors = {"-".join(h.lower().replace("`", "").split()) for h in headings}  # GitHub's anchors, these headings
    assert {v.removeprefix("RUNBOOK.md#") for v in RUNBOOK.values()} <= anchors
    assert Alert("stream_degraded", "stream:rides", "o", "s").runbook == RUNBOOK["stream_degraded"]


def test_a_multi_line_summary_is_folded_to_one_line_and_odd_figures_stay_json(tmp_path, receiver):
    a = Alert("pipeline_failed", "ingest:rides", "o", "Py4JError:\n  at line 3\n", figures={"psi": float("nan")})
    send(a, settings(tmp_path, receiver.url), now=T)
    body = receiver.posts[0]["body"]
    assert body["text"] == "[pipeline_failed] ingest:rides (o): Py4JError: at line 3 — " + RUNBOOK["pipeline_failed"]
    assert body["tandem"]["figures"] == {"psi": "nan"}


def test_two_processes_appending_at_once_write_whole_lines(tmp_path):
    path = tmp_path / "alerts.jsonl"
    script = (
        "import sys\n"
        "from datetime import datetime, timezone\n"
        "from pathlib import Path\n"
        "from runtime.alerts import Alert, send\n"
        "from runtime.operations import AlertSettings\n"
        "s = AlertSettings(file=Path(sys.argv[1]), webhook=None)\n"
        "t = datetime(2026, 12, 4, tzinfo=timezone.utc)\n"
        "for i in range(200):\n"
        "    send(Alert('gate_blocked', 'backfill:p' + sys.argv[2], 'o', 'x' * 5000, subject=str(i)), s, now=t)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], cwd=Path(__file__).parents[1],
                              env=shell_env()) for n in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    recs = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole JSON
    assert sorted((r["pipeline"], r["subject"]) for r in recs) == sorted(
        (f"backfill:p{n}", str(i)) for n in (1, 2) for i in range(200))
