"""The tandem command as a user runs it: clear help, one-line errors, non-zero exits, no tracebacks."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from tandem.init import example_dir
from tests.shell import shell_env

TANDEM = str(Path(sys.executable).parent / "tandem")


def run(*args, cwd=None, project=example_dir()):
    """``tandem ARGS`` in a subprocess, in the example project (``project=None``: as found from ``cwd``)."""
    env = shell_env() if project is None else shell_env(TANDEM_PROJECT=str(project))
    return subprocess.run([TANDEM, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def assert_one_line_error(result, code, text):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_help_lists_the_verbs():
    result = run("--help")
    assert result.returncode == 0
    for verb in ("generate", "reference", "demo"):
        assert verb in result.stdout


def test_unknown_option_is_one_line():
    assert_one_line_error(run("generate", "--out", "x.jsonl", "--bogus"), 2, "No such option: --bogus")


def test_unknown_command_is_one_line():
    assert_one_line_error(run("frobnicate"), 2, "No such command")


def test_bad_duration_is_one_line():
    assert_one_line_error(run("reference", "--events", "x.jsonl", "--allowed-lateness", "5 s"), 2, "invalid duration")


def _file(name, content):
    def make(directory):
        path = directory / name
        if content is not None:
            path.write_bytes(content)
        return path
    return make


@pytest.mark.parametrize("make, text", [
    (_file("missing.jsonl", None), "no such file"),
    (_file("g.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00"), "not UTF-8 text"),
    (_file("empty.jsonl", b""), "holds no records"),
    (_file("bad.jsonl", b"nope\n{}\n"), "no record was accepted"),
], ids=["missing", "binary", "empty", "all-invalid"])
def test_unusable_events_file_is_one_line(tmp_path, make, text):
    assert_one_line_error(run("reference", "--events", str(make(tmp_path))), 1, text)


def test_generate_then_reference_writes_outputs(tmp_path):
    events = tmp_path / "e.jsonl"
    gen = run("generate", "--out", str(events), "--users", "30", "--duration", "20m", "--seed", "9")
    assert gen.returncode == 0, gen.stderr
    ref = run("reference", "--events", str(events), "--out", str(tmp_path / "ref"), "--allowed-lateness", "5s")
    assert ref.returncode == 0, ref.stderr
    assert "feature rows" in ref.stdout
    features = pq.read_table(tmp_path / "ref" / "features.parquet")
    rejected = pq.read_table(tmp_path / "ref" / "rejected.parquet").to_pylist()
    read = sum(1 for line in events.read_text().splitlines() if line.strip())
    assert features.num_rows + len(rejected) == read  # every record accounted for
    assert {r["reason"] for r in rejected} == {"invalid", "duplicate", "late"}


def test_generate_refuses_a_bad_spec():
    assert_one_line_error(run("generate", "--out", "x.jsonl", "--invalid", "2"), 1, "invalid must be a fraction")


def test_demo_runs_the_main_job(tmp_path):
    """The whole pipeline on a small stream: every stage, the verdicts, a served user (with a Redis of its own)."""
    import json

    from runtime.events_io import read_events
    from tandem.reference import evaluate

    out = tmp_path / "demo"
    result = run("demo", "--out", str(out), "--duration", "15m", "--rate", "5", "--users", "40", "--merchants", "10")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "parity" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["serving"]["unexplained"] == 0
    assert report["serving"]["values"] > 0
    expected = evaluate(list(read_events(out / "events.jsonl")), TRANSACTIONS)
    assert pq.read_table(out / "parity" / "batch.parquet").num_rows == len(expected.rows) > 1000
    for stage in ("generating", "batch", "feast apply", "stream", "get_historical_features"):
        assert stage in result.stderr, stage  # progress, one line per stage
    assert "Online features served for user" in result.stdout
    assert "training = serving" in result.stdout and "FAIL" not in result.stdout


def test_demo_refuses_an_output_folder_with_files(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    assert_one_line_error(run("demo", "--out", str(tmp_path)), 1, "exists and is not empty")


def test_stream_with_an_unreachable_redis_is_one_line(tmp_path):
    from local_services import free_port

    events = tmp_path / "e.jsonl"
    events.write_text('{"transaction_id": "a"}\n')
    result = run("stream", "--source", f"file:{events}", "--out", str(tmp_path / "out"),
                 "--redis", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is unreachable" in errors[0], result.stderr


def test_tandem_stream_and_the_flink_run_main_take_the_same_options():
    """Defined once (stream_jobs/options.py): the same flags, defaults and help on both entry points."""
    import typer

    from stream_jobs.options import OPTIONS, argument_parser
    from tandem.cli import app

    command = typer.main.get_command(app).commands["stream"]
    cli = {p.opts[0]: (p.default, p.help) for p in command.params if p.opts[0].startswith("--")}
    job = {a.option_strings[0]: (a.default, a.help) for a in argument_parser()._actions if a.option_strings
           and a.option_strings[0] != "-h"}
    assert set(cli) == set(job) == {o.flag for o in OPTIONS}
    for o in OPTIONS:
        assert cli[o.flag][1] == o.help and job[o.flag][1].startswith(o.help)
        assert cli[o.flag][0] in (o.default, None if o.required else o.default) and job[o.flag][0] == o.default
