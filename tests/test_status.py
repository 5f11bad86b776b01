"""tandem status: every figure checked against arithmetic done by hand on a crafted run history; the page looked at.

The history (``history()``) spans the period [S, U] = [2026-12-01 00:00Z, 2026-12-08 00:00Z] with runs
before it, after it and still running, so each boundary of the definitions in tandem/status.py is crossed.
The expected figures are literals; the comment beside each shows the arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runtime.project import load_project
from runtime.run_log import GateResult, RunLog, RunRecord, utc_now
from tandem.status import PipelineStatus, compute, parse_since, render_html
from tests.shell import shell_env

ROOT = Path(__file__).resolve().parents[1]  # the code under test: this checkout's tandem
S = datetime(2026, 12, 1, tzinfo=timezone.utc)
U = datetime(2026, 12, 8, tzinfo=timezone.utc)

TANDEM_YAML = textwrap.dedent("""\
    project: shop
    catalogs:
      - features.rides
    pipelines:
      defaults: {owner: platform, availability: 0.95}
      rides: {owner: rides-team, availability: 0.75}
      ingest:rides: {freshness: 12h}
    """)  # ingest:rides: rides-team, 75 %, SLA 12h; stream:rides: rides-team, 75 %, 15 min (a stream's default);
# backfill:trips: platform, 95 %, 26h (a batch pipeline's default). status never loads the catalog.


def t(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=timezone.utc)


def run(pipeline, trigger, start, end, status="success", newest=None, rows=1000, **more) -> RunRecord:
    return RunRecord(pipeline, trigger, start, end, status=status, newest_event=newest, rows_in=rows,
                     rows_out=rows, **more)


def gate(name, verdict, action, why, figure=None, threshold=None, kind="volume") -> GateResult:
    return GateResult(name, kind, None, figure, threshold, verdict, action, why)


FARE_GATE = gate("completeness(fare)", "pass", "block", "fare 99.0% non-null", 0.99, 0.95, "completeness")
BLOCKED_FARE = gate("completeness(fare)", "fail", "block", "fare is 80.0% non-null, below 95%", 0.8, 0.95,
                    "completeness")
LOST = "spark executor lost"
UNREACHABLE = "source unreachable: s3://rides/2026-12-02"


def history() -> list[RunRecord]:
    ride, trips, stream = "ingest:rides", "backfill:trips", "stream:rides"
    return [
        # ingest:rides, daily at 02:00 -------------------------------------------------------------------
        run(ride, "schedule", t(30, 2, month=11), t(30, 2, 10, month=11), newest=t(30, 0, month=11),
            null_rates={"fare": 0.5}),                                                    # R0: before S
        run(ride, "schedule", t(30, 20, month=11), t(30, 20, 5, month=11), "failed", error="disk full"),  # R0b
        run(ride, "schedule", t(1, 2), t(1, 2, 10), newest=t(1, 0), gates=[FARE_GATE]),    # R1
        run(ride, "schedule", t(2, 2), t(2, 2, 4), "failed", rows=0, error=UNREACHABLE),  # R2
        run(ride, "retry", t(2, 2, 30), t(2, 2, 40), "failed", rows=0, error=UNREACHABLE),  # R3
        run(ride, "retry", t(2, 3), t(2, 3, 12), newest=t(2, 0), retries=2, gates=[FARE_GATE]),  # R4
        run(ride, "schedule", t(3, 2), t(3, 2, 10), newest=t(3, 0), gates=[FARE_GATE]),    # R5
        run(ride, "schedule", t(4, 2), t(4, 2, 6), "blocked", newest=t(4, 0), gates=[BLOCKED_FARE]),  # R6
        run(ride, "cli", t(4, 5), t(4, 5, 10), newest=t(4, 0), gates=[FARE_GATE]),         # R7
        run(ride, "schedule", t(5, 2), t(5, 2, 10), newest=t(5, 0), gates=[FARE_GATE],
            null_rates={"fare": 0.02, "tip": 0.1, "distance": 0.0}),                       # R8
        run(ride, "schedule", t(6, 2), t(6, 2, 10), newest=t(6, 0), gates=[FARE_GATE],
            null_rates={"fare": 0.01, "tip": 0.04}),                                       # R9
        run(ride, "schedule", t(7, 2), t(7, 2, 3), "failed", rows=0, error=LOST),          # R10
        run(ride, "cli", t(7, 23), None),                                                  # R11: still running
        run(ride, "retry", t(7, 23, 50), t(8, 0, 20), newest=t(7, 23)),                    # R12: ends after U
        # backfill:trips ----------------------------------------------------------------------------------
        run(trips, "schedule", t(6, 1), t(6, 1, 30), newest=t(5, 23, 59), rows=5000, null_rates={"distance": 0.0},
            gates=[gate("volume", "pass", "block", "5,000 rows, at least 1,000", 5000, 1000),
                   gate("drift(distance)", "warn", "warn", "PSI 0.21 above 0.2", 0.21, 0.2, "drift")]),  # T1
        run(trips, "schedule", t(7, 1), t(7, 1, 20), "blocked", rows=12,
            gates=[gate("volume", "fail", "block", "rows 12 below 1,000", 12, 1000),
                   gate("drift(distance)", "pass", "warn", "PSI 0.02", 0.02, 0.2, "drift")]),            # T2
        run(trips, "retry", t(7, 6), t(7, 6, 30), newest=t(7, 0), rows=4800,
            null_rates={"distance": 0.25, "fare": 0.0},
            gates=[gate("volume", "pass", "block", "4,800 rows, at least 1,000", 4800, 1000)]),          # T3
        # stream:rides, checkpoints only --------------------------------------------------------------------
        run(stream, "checkpoint", t(7, 23, 40), t(7, 23, 50), newest=t(7, 23, 49, 30), rows=300),        # C1
    ]


EXPECTED = {
    "ingest:rides": dict(
        owner="rides-team", availability_target=0.75, freshness_sla_s=43200.0,  # 12h = 12 * 3600
        runs=10,  # R1..R10 ended in [S, U]; R0, R0b ended before S, R11 has no end, R12 ended after U
        scheduled_runs=7,  # R1 R2 R5 R6 R8 R9 R10
        failed_runs=4,  # R2 R3 (failed, retry included) R6 (blocked) R10
        availability=4 / 7,  # successful scheduled: R1 R5 R8 R9 = 4 of 7 (0.5714...)
        budget_left=-1.25 / 1.75,  # allowed (1 - 0.75) * 7 = 1.75; failed scheduled 7 - 4 = 3; (1.75 - 3) / 1.75
        freshness_age_s=172800.0,  # R9 is the latest success ended by U: U - newest 12-06 00:00 = 2 d = 2 * 86400
        fresh=False,  # 172800 > 43200
        completeness=0.96,  # R9's null rates: min(1 - 0.01, 1 - 0.04) (R8's 0.1 on tip is older)
        last_failure_at=t(7, 2, 3), last_failure_why=LOST,  # R10
        # episodes: R0b 11-30 20:05 -> R1 12-01 02:10 = 6h05m = 21900 s (opened before S, closed in the period);
        # R2 12-02 02:04 -> R4 03:12 (R3 failed inside it) = 68 min = 4080 s; R6 12-04 02:06 -> R7 05:10 = 3h04m
        # = 11040 s; R10 12-07 02:03 is still open at U (R12 ends after U): not counted.
        mttr_s=12340.0,  # (21900 + 4080 + 11040) / 3 = 37020 / 3
    ),
    "backfill:trips": dict(
        owner="platform", availability_target=0.95, freshness_sla_s=93600.0,  # 26h = 26 * 3600
        runs=3, scheduled_runs=2, failed_runs=1,  # T1 T2 T3; T1 T2 scheduled; T2 blocked
        availability=0.5,  # T1 of T1, T2
        budget_left=-9.0,  # allowed (1 - 0.95) * 2 = 0.1; failed scheduled 1; (0.1 - 1) / 0.1
        freshness_age_s=86400.0,  # T3 (a retry): U - 12-07 00:00 = 24h
        fresh=True,  # 86400 <= 93600
        completeness=0.75,  # T3: min(1 - 0.25, 1 - 0.0)
        last_failure_at=t(7, 1, 20), last_failure_why="rows 12 below 1,000",  # T2's blocking gate (drift passed)
        mttr_s=18600.0,  # T2 12-07 01:20 -> T3 06:30 = 5h10m = 310 min * 60
    ),
    "stream:rides": dict(
        owner="rides-team", availability_target=0.75, freshness_sla_s=900.0,  # a stream's default 15 min
        runs=1, scheduled_runs=0, failed_runs=0,  # C1, a checkpoint
        availability=None, budget_left=None,  # nothing scheduled
        freshness_age_s=630.0,  # U - 12-07 23:49:30 = 10 min 30 s
        fresh=True,  # 630 <= 900
        completeness=None,  # C1 recorded no null rates
        last_failure_at=None, last_failure_why=None, mttr_s=None,
    ),
}


def assert_status(actual: PipelineStatus, expected: dict) -> None:
    fields = {f.name for f in dataclasses.fields(PipelineStatus)} - {"pipeline"}
    assert set(expected) == fields, "the expectation names every figure"
    for name, want in expected.items():
        got = getattr(actual, name)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12), (actual.pipeline, name)
        else:
            assert got == want, (actual.pipeline, name)


def make_project(folder: Path, records: list[RunRecord]) -> Path:
    folder.mkdir(parents=True)
    (folder / "tandem.yaml").write_text(TANDEM_YAML)
    RunLog(folder / "lake").append(*records)
    return folder


def shifted(records: list[RunRecord], by: timedelta) -> list[RunRecord]:
    def move(value):
        return None if value is None else value + by

    return [dataclasses.replace(r, started_at=r.started_at + by, ended_at=move(r.ended_at),
                                newest_event=move(r.newest_event)) for r in records]


def tandem(*args, cwd):
    """``tandem ARGS`` as a user runs it, with this checkout's code (not the installed script's)."""
    env = shell_env(PYTHONPATH=str(ROOT))
    env.pop("TANDEM_PROJECT", None)
    env.pop("TANDEM_LAKE", None)
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def assert_one_line_error(result, code: int, *texts: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in texts:
        assert text in lines[0], result.stderr


# --- the figures ----------------------------------------------------------------------------------


def test_figures_are_the_hand_computed_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_LAKE", raising=False)
    project = load_project(make_project(tmp_path / "p", history()) / "tandem.yaml")
    records = RunLog(project.lake_root).read()  # through the Delta table, as the verb reads them
    statuses = compute(records, project.operations, S, U)
    assert [s.pipeline for s in statuses] == ["backfill:trips", "ingest:rides", "stream:rides"]
    for s in statuses:
        assert_status(s, EXPECTED[s.pipeline])


def test_a_pipeline_with_no_success_is_not_fresh_and_nothing_scheduled_has_no_budget():
    records = [run("ingest:x", "cli", t(2, 1), t(2, 2), "failed", error="boom")]
    (s,) = compute(records, None, S, U)
    assert_status(s, dict(
        owner="unowned", availability_target=0.99, freshness_sla_s=93600.0,  # Tandem's defaults
        runs=1, scheduled_runs=0, failed_runs=1, availability=None, budget_left=None,
        freshness_age_s=None, fresh=False, completeness=None,  # no success: no age, so not fresh
        last_failure_at=t(2, 2), last_failure_why="boom", mttr_s=None))  # the episode is still open


def test_since_is_a_duration_before_now_or_a_date_or_time():
    assert parse_since("7d", U) == S
    assert parse_since("36h", U) == t(6, 12)
    assert parse_since("2026-12-01", U) == S  # UTC unless it says otherwise
    assert parse_since("2026-12-01T02:00+02:00", U) == t(1, 0)
    for bad in ("last week", "7", "-1d", "2027-01-01"):
        with pytest.raises(ValueError):
            parse_since(bad, U)


# --- the verb -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_project(tmp_path_factory):
    """The crafted history moved so that U is now: the verb's default period is the test's [S, U]."""
    now = utc_now()
    return make_project(tmp_path_factory.mktemp("live") / "p", shifted(history(), now - U))


def test_the_table_shows_each_pipeline_with_its_owner_and_figures(live_project):
    result = tandem("status", cwd=live_project)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 8}
    rides, trips, stream = rows["ingest:rides"], rows["backfill:trips"], rows["stream:rides"]
    # ingest:rides: 10 runs, 4 failed; 4/7 = 57.1 % vs 75 %; budget -1.25/1.75 = -71.4 %; 2 d old vs 12h;
    # 0.96 complete; MTTR 12340 s = 3h 25m 40s
    for text in ("rides-team", "10 (4)", "57.1% / 75%", "-71.4%", "2d / 12h", "96%", "3h 25m", LOST):
        assert text in rides, (text, rides)
    for text in ("platform", "3 (1)", "50% / 95%", "-900%", "1d / 1d 2h", "75%", "5h 10m", "rows 12 below 1,000"):
        assert text in trips, (text, trips)
    for text in ("rides-team", "1 (0)", "n/a / 75%"):
        assert text in stream, (text, stream)
    assert re.search(r"│ +10m \d+s / 15m │", stream), stream  # 10m 30s at U, plus the seconds since U
    assert "2 of 3 pipelines miss a target: backfill:trips, ingest:rides" in result.stdout


def test_one_pipeline_and_the_page(live_project, tmp_path):
    page = tmp_path / "out" / "status.html"
    result = tandem("status", "--pipeline", "backfill:trips", "--html", str(page), "--since", "3d",
                    cwd=live_project)
    assert result.returncode == 0, result.stderr
    assert "backfill:trips" in result.stdout and "ingest:rides" not in result.stdout
    text = page.read_text()
    assert text.count("<svg") == 3 and "ingest:rides" not in text  # freshness, volume, gates
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "") and "<script" not in text


def test_an_empty_run_log_is_one_line(tmp_path):
    root = make_project(tmp_path / "p", [])
    result = tandem("status", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [f"no runs yet: the run log {root / 'lake' / '_tandem' / 'run_log'} "
                                                  "is empty"]


def test_bad_input_is_one_line(live_project):
    assert_one_line_error(tandem("status", "--since", "last week", cwd=live_project), 2,
                          "--since", "'last week' is neither a duration")
    assert_one_line_error(tandem("status", "--pipeline", "ingest:trips", cwd=live_project), 2,
                          "--pipeline", "'ingest:trips' is not in the run log",
                          "backfill:trips, ingest:rides, stream:rides")


# --- the page, looked at --------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run ./dev setup (or apt-get install chromium)")
    return found


def headless(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           *args], capture_output=True, text=True, timeout=120)


def png_pixels(path: Path):
    """The pixels of an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes) as a height x width x 3 array."""
    import numpy as np

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 8 + length])
        elif kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp, raw = (3 if colour == 2 else 4), zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):  # undo each scanline's filter (PNG spec, section 9)
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 2:
            line = bytearray((np.frombuffer(line, np.uint8) + np.frombuffer(prev, np.uint8)).tobytes())
        elif kind in (1, 3, 4):
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(rows), np.uint8).reshape(height, width, bpp)[:, :, :3]


def test_the_page_renders_in_chromium_with_its_charts(tmp_path):
    records = history()
    statuses = compute(records, load_project(make_project(tmp_path / "p", []) / "tandem.yaml").operations, S, U)
    page, shot = tmp_path / "status.html", tmp_path / "status.png"
    page.write_text(render_html(statuses, records, S, U, "shop"), encoding="utf-8")
    began = time.monotonic()
    result = headless(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr
    dom = headless(tmp_path / "profile", "--dump-dom", page.as_uri())
    print(f"chromium: screenshot and DOM in {time.monotonic() - began:.1f} s")
    assert dom.returncode == 0, dom.stderr
    for kind, charts in (("freshness", 3), ("volume", 3), ("gates", 2)):  # stream:rides ran no gate
        assert dom.stdout.count(f"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{kind}\"") == charts, kind
    # a dot per run with an age at its end and a ring for now: ingest:rides 10 + 1, backfill:trips 3 + 1, stream 1 + 1
    assert dom.stdout.count("<circle") == 17
    assert dom.stdout.count("<polyline") == 3
    pixels = png_pixels(shot)
    assert pixels.shape == (1600, 1280, 3)
    rgb = pixels[:, :, 0].astype(int) << 16 | pixels[:, :, 1].astype(int) << 8 | pixels[:, :, 2]
    colours = set(rgb.ravel().tolist())
    assert len(colours) > 20, "the screenshot is blank"
    # the charts drew the status colours: green successes, red failures, amber blocked runs
    for colour in (0x1a7f37, 0xcf222e, 0xc88a00):
        assert colour in colours, hex(colour)


def test_alert_sends_each_sla_breach_once_to_the_projects_channels(tmp_path):
    """ingest:rides is 2 d old against 12 h and 57.1 % available against 75 %; backfill:trips 50 % against 95 %
    (and fresh); stream:rides meets its SLA: three breaches. A second look within repeat_after repeats none."""
    root = make_project(tmp_path / "p", shifted(history(), utc_now() - U))
    first = tandem("status", "--alert", cwd=root)
    assert first.returncode == 0, first.stderr
    alerts = [json.loads(line) for line in (root / "lake" / "_tandem" / "alerts.jsonl").read_text().splitlines()]
    assert sorted((a["pipeline"], a["subject"], a["owner"]) for a in alerts) == [
        ("backfill:trips", "availability", "platform"), ("ingest:rides", "availability", "rides-team"),
        ("ingest:rides", "freshness", "rides-team")]
    assert all(a["kind"] == "sla_breach" and a["runbook"] == "RUNBOOK.md#a-pipeline-missed-its-sla" for a in alerts)
    assert first.stdout.count("sla_breach") == 3
    second = tandem("status", "--alert", cwd=root)
    assert second.stdout.count("repeat, suppressed") == 3


def test_a_malformed_run_log_row_is_one_line_naming_it(tmp_path):
    from deltalake import write_deltalake
    import pyarrow as pa

    from runtime.run_log import SCHEMA, _row

    root = make_project(tmp_path / "p", history()[:1])
    bad = _row(history()[0]) | {"run_id": "r-broken", "trigger": "cron"}
    write_deltalake(str(root / "lake" / "_tandem" / "run_log"), pa.Table.from_pylist([bad], schema=SCHEMA), mode="append")
    assert_one_line_error(tandem("status", cwd=root), 1, "run log row r-broken", "trigger 'cron' is not one of")
