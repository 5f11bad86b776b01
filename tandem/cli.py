"""The ``tandem`` command line. Verbs wrap the library; a user's mistake is one line on stderr.

Exit codes: 0 ok, 1 a failed run (e.g. bad input data), 2 a usage error,
3 ``tandem shadow --fail-on-change`` found a change.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from runtime.errors import UserError
from transforms import FieldType, parse_duration

app = typer.Typer(
    name="tandem",
    help="Tandem: one feature definition, executed by Spark (batch) and Flink (stream), proven identical.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True, soft_wrap=True)  # a path or an id is never folded or cut
out = Console(soft_wrap=True)

# Shared options ---------------------------------------------------------------

Users = Annotated[int, typer.Option(help="Distinct users (entity keys).", min=1)]
Merchants = Annotated[int, typer.Option(help="Distinct merchants.", min=1)]
Rate = Annotated[float, typer.Option(help="Mean events per second of event time.")]
Duration = Annotated[str, typer.Option(help="Event-time span of the stream, e.g. 10m, 1h, 2d.")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same stream.")]
ProjectOption = Annotated[Optional[Path], typer.Option(
    "--project", help="The project folder (default: the nearest tandem.yaml at or above the current directory).")]
CatalogOption = Annotated[Optional[str], typer.Option(
    "--catalog", help="The catalog to run: a source name of the project, or MODULE_OR_FILE[:ATTR] "
                      "(default: the project's only catalog).")]

EveryCatalogOption = Annotated[Optional[str], typer.Option(
    "--catalog", help="One catalog: a source name of the project, or MODULE_OR_FILE[:ATTR] "
                      "(default: every catalog of the project).")]


def _project(folder: Path | None):
    from runtime.project import find_project

    return find_project(folder)


def _example_project():
    """The example project shipped with Tandem (what `tandem init` copies and `tandem demo` runs)."""
    from runtime.project import load_project
    from tandem.init import example_dir

    return load_project(example_dir() / "tandem.yaml")


def _duration_ms(text: str, option: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=option) from None


def _spec(**kwargs):
    from examples.transactions.features.generate import StreamSpec

    try:
        return StreamSpec(**kwargs)
    except ValueError as e:
        raise UserError(str(e)) from None


@app.command()
def setup(
    jars_dir: Annotated[Optional[Path], typer.Option(help="Where to put the jar tree (default: $TANDEM_JARS_DIR, "
                                                     "a checkout's jvm/jars, else ~/.local/share/tandem/jars).")] = None,
    jvm_tests: Annotated[bool, typer.Option(help="Run Tandem's JUnit tests when its jar is built.")] = False,
) -> None:
    """Fetch the pinned JVM jars (Spark, Flink, Kafka; checksummed) and build Tandem's own. Needs Java 17 and Maven.

    Run once after installing; jobs never download anything when they start.
    """
    from runtime.jar_setup import setup_jars

    root = setup_jars(jars_dir, jvm_tests, say=lambda text: out.print(text, highlight=False))
    out.print(f"jars ready in {root}" + ("" if jars_dir is None else f"; export TANDEM_JARS_DIR={root}"),
              highlight=False)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="A new (or empty) folder for the project.")],
    name: Annotated[Optional[str], typer.Option(help="The project's name (default: the folder's).")] = None,
) -> None:
    """Create a project: tandem.yaml, a features/ package with the example catalog, its Feast repository."""
    from tandem.init import init as make

    config = make(folder, name)
    out.print(f"created {config}; next: cd {folder} && tandem generate --out data/events.jsonl "
              "&& tandem ingest --events data/events.jsonl (see its README.md)", highlight=False)


@app.command()
def env(project: ProjectOption = None) -> None:
    """Print the exports the project's Feast repository (feast_repo/) needs: eval "$(tandem env)"."""
    import os
    import shlex

    from feature_repo.store import feast_env
    from runtime.project import ENV_PROJECT

    proj = _project(project)
    exports = {ENV_PROJECT: str(proj.root), **feast_env(proj.lake_root, proj.online_store)}
    for key, value in exports.items():
        if key == "TANDEM_REDIS" and os.environ.get(key):  # yours already: not printed back (it may hold a password)
            continue
        if key == "TANDEM_REDIS" and proj.online_store_as_written:  # ${VARS} as written: the shell expands them
            out.print(f"export {key}={_shell_expanding(proj.online_store_as_written)}", highlight=False,
                      soft_wrap=True)
        else:
            out.print(f"export {key}={shlex.quote(value)}", highlight=False, soft_wrap=True)


def _shell_expanding(text: str) -> str:
    """``text`` double-quoted for a POSIX shell: its ``${VAR}`` references expand, nothing else does."""
    import re

    quoted = re.sub(r'(["\\`])', r"\\\1", text)
    quoted = re.sub(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})", r"\\$", quoted)
    return f'"{quoted}"'


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def feast(
    ctx: typer.Context,
    project: ProjectOption = None,
) -> None:
    """Run the feast CLI in the project's generated Feast repository, e.g. `tandem feast apply`.

    The repository (feast_repo/) is regenerated from tandem.yaml first, and the environment it reads is set.
    """
    import os
    import subprocess

    from feature_repo.repo import write_repo
    from feature_repo.store import feast_env
    from runtime.project import ENV_PROJECT

    if not ctx.args:
        raise typer.BadParameter("name a feast command, e.g. `tandem feast apply`", param_hint="ARGS")
    proj = _project(project)
    catalogs = proj.catalogs()  # a catalog that does not load fails here, in one line, not inside feast
    if ctx.args[0].startswith("materialize"):
        lossy = [f.name for c in catalogs.values() for _, f in c.features
                 if c.feature_dtype(f) == FieldType.INT64 and c.may_be_null(f.name)]
        if lossy:  # Feast would serve them as doubles, rounded beyond 2**53, or fail near 2**63
            raise UserError(f"feature {lossy[0]} is an int64 that can be null, which feast materialize serves as "
                            "a double: run `tandem materialize` instead")
    folder = write_repo(proj)
    (proj.lake_root / "_feast").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, ENV_PROJECT: str(proj.root), **feast_env(proj.lake_root, proj.online_store)}
    feast_cli = Path(sys.executable).with_name("feast")
    code = subprocess.call([str(feast_cli), *ctx.args], cwd=folder, env=env)
    raise typer.Exit(code)


@app.command()
def generate(
    out_path: Annotated[Path, typer.Option("--out", help="File to write: .jsonl or .parquet.")],
    users: Users = 1_000,
    merchants: Merchants = 200,
    rate: Rate = 10.0,
    duration: Duration = "1h",
    start: Annotated[str, typer.Option(help="Event time of the stream's start (ISO-8601 UTC).")] = "2024-05-01T00:00:00Z",
    skew: Annotated[float, typer.Option(help="Zipf exponent of key popularity (0 = uniform; hot keys above 1).")] = 1.0,
    ties: Annotated[float, typer.Option(help="Share of events in the same millisecond as the previous one.")] = 0.02,
    out_of_order: Annotated[float, typer.Option(help="Share of events delivered late.")] = 0.05,
    max_delay: Annotated[str, typer.Option(help="How late a disordered event may arrive.")] = "30s",
    duplicates: Annotated[float, typer.Option(help="Share of events retried (same event id).")] = 0.01,
    invalid: Annotated[float, typer.Option(help="Share of records corrupted (missing fields, wrong types, ...).")] = 0.01,
    time_format: Annotated[str, typer.Option(help="Event time as 'iso' strings or 'epoch_ms' integers.")] = "iso",
    seed: Seed = 0,
) -> None:
    """Write a realistic, deterministic stream of card transactions (the example project's events)."""
    from examples.transactions.features.generate import PARQUET_INVALID_KINDS, INVALID_KINDS, generate as gen
    from runtime.events_io import write_events

    parquet = out_path.suffix.lower() in (".parquet", ".pq")
    spec = _spec(
        users=users, merchants=merchants, rate_per_s=rate, duration=duration, start=start, skew=skew, ties=ties,
        out_of_order=out_of_order, max_delay=max_delay, duplicates=duplicates, invalid=invalid,
        invalid_kinds=PARQUET_INVALID_KINDS if parquet else tuple(INVALID_KINDS),
        time_format="epoch_ms" if parquet else time_format, seed=seed,
    )
    n = write_events(gen(spec), out_path, _example_project().catalog())
    console.print(f"wrote {n:,} records to {out_path}")


@app.command()
def reference(
    events: Annotated[Path, typer.Option(help="Transactions: .jsonl or .parquet, in arrival order.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Write features.parquet and rejected.parquet here.")] = None,
    allowed_lateness: Annotated[
        Optional[str], typer.Option(help="Apply stream lateness (e.g. 5s); omit for batch semantics.")
    ] = None,
    project: ProjectOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Evaluate the project's catalog with the pure-Python reference evaluator (the ground truth)."""
    lateness = _duration_ms(allowed_lateness, "--allowed-lateness") if allowed_lateness is not None else None
    _evaluate_and_report(events, out_dir, lateness, _project(project).catalog(catalog))


@app.command()
def demo(
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="A new (or empty) folder for everything the run "
                                                                  "writes (default: out/demo/run-<UTC time>).")] = None,
    users: Users = 500,
    merchants: Merchants = 100,
    rate: Rate = 0.3,
    duration: Annotated[str, typer.Option(help="Event-time span of the stream; past a day, so the 10m, 1h, 24h and 7d "
                                               "windows all differ.")] = "30h",
    seed: Seed = 7,
    allowed_lateness: Annotated[Optional[str], typer.Option(
        help="The stream's allowed lateness, e.g. 500ms, 5s, 2m (default: the generator's largest delay, 30s, so "
             "no event is late).")] = None,
    redis: Annotated[Optional[str], typer.Option(help="Redis host:port (default: $TANDEM_REDIS, else a local "
                                                      "redis-server started for the run).")] = None,
) -> None:
    """The main job: generate a stream and run the whole pipeline of the example project on it, then print a summary.

    Ingest into Delta, backfill the feature tables, feast apply + materialize into Redis, the Flink stream
    job into the same Redis, parity (batch = stream = reference) and training = serving.
    """
    from examples.transactions.features.generate import generate as gen
    from runtime.events_io import write_events
    from tandem.parity.run import REPORT_HTML, REPORT_JSON, check_out_dir, run_parity

    began = time.perf_counter()
    spec = _spec(users=users, merchants=merchants, rate_per_s=rate, duration=duration, seed=seed)
    lateness = _duration_ms(allowed_lateness or spec.max_delay, "--allowed-lateness")
    out_dir = out_dir or Path("out/demo") / time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
    check_out_dir(out_dir)
    example = _example_project()
    catalog = example.catalog()
    events, parity_dir = out_dir / "events.jsonl", out_dir / "parity"
    with _progress() as step:
        with step("generating transactions"):
            out_dir.mkdir(parents=True, exist_ok=True)
            write_events(gen(spec), events, catalog)
        with _online_store(redis, step) as address:
            result = run_parity(events, parity_dir, lateness, catalog, step=step, serving_redis=address,
                                serving_project=example.name, state_backend=example.state_backend)
            sample = _online_sample(result, address, catalog, example.name)
    _print_demo_summary(result, sample, catalog, time.perf_counter() - began)
    out.print(f"reports: {parity_dir / REPORT_JSON}, {parity_dir / REPORT_HTML}; lake: {parity_dir / 'work' / 'lake'}",
              highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def _online_sample(result, redis: str, catalog, project: str) -> tuple[str, object, dict]:
    """What Feast serves online for the busiest entity of the first group: (group, key, {feature: value})."""
    from collections import Counter

    import pyarrow.parquet as pq

    from feature_repo.store import online_features, open_store
    from tandem.parity.run import BATCH

    group = catalog.groups[0]
    rows = pq.read_table(result.out_dir / BATCH, columns=list(group.key)).to_pylist()
    key = Counter(group.key_of(r) for r in rows).most_common(1)[0][0]
    store = open_store(project, result.out_dir / "work" / "lake", redis)
    entity = dict(zip(group.key, key))
    served = online_features(store, [entity], [f"{group.entity}:{f.name}" for f in group.features])
    return group.entity, group.shown_key(entity), {name: values[0] for name, values in served.items()
                                                   if name not in group.key}


def _print_demo_summary(result, sample: tuple[str, str, dict], catalog, elapsed: float) -> None:
    c, s = result.comparison, result.serving
    summary = Table(title="Tandem: the whole pipeline on one stream", show_header=False)
    summary.add_row("records", f"{result.records:,}")
    for path in ("batch", "stream"):
        counts = c.counts[path]
        rejected = ", ".join(f"{reason} {counts[reason]:,}" for reason in ("invalid", "duplicate", "late") if counts[reason])
        summary.add_row(f"{path} feature rows", f"{counts['accepted']:,} (rejected: {rejected or 'none'})")
    summary.add_row("features per row", str(len(catalog.features)))
    summary.add_row("parity (batch = stream = reference)",
                    f"{'PASS' if c.passed else 'FAIL'}: {c.unexplained:,} unexplained, "
                    f"{len(c.confirmed_late):,} late events explain the rest")
    summary.add_row("training = serving", f"{'PASS' if s.passed else 'FAIL'}: {s.values:,} values of "
                                          f"{sum(s.entities.values()):,} entities, {s.exact:,} exact, "
                                          f"{s.explained:,} explained, {s.unexplained:,} unexplained")
    differ = len(s.differences)
    summary.add_row("served values that differ from training",
                    f"{differ:,}" + ("" if not differ else
                                     f": {s.explained:,} because a late event the stream left out is in the served "
                                     f"row's window, {s.unexplained:,} unexplained"))
    summary.add_row("time", f"{elapsed:.0f} s")
    out.print(summary)
    entity, key, features = sample
    table = Table(title=f"Online features served for {entity} {key} (get_online_features)", show_header=False)
    for name, value in features.items():
        table.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
    out.print(table)


LakeOption = Annotated[
    Optional[Path], typer.Option("--lake", help="Lake root holding the Delta tables (default: the project's lake; "
                                                "$TANDEM_LAKE overrides it).")
]


@app.command()
def ingest(
    events: Annotated[Path, typer.Option(help="A .jsonl/.parquet file, or a directory of them (read in name order).")],
    lake: LakeOption = None,
    project: ProjectOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Validate raw events into the source's Delta events table; rejects go to its dead_letters."""
    from batch_jobs.ingest import input_files, ingest as run_ingest
    from batch_jobs.spark_session import build_spark
    from runtime.lake import Lake

    proj = _project(project)
    chosen = proj.catalog(catalog)
    input_files(events)  # a bad path fails before Spark starts
    target = Lake.at(lake or proj.lake_root)
    with console.status("starting Spark"):
        spark = build_spark("tandem-ingest")
    with console.status(f"ingesting {events}"):
        result = run_ingest(spark, events, target, chosen, max_future_ms=proj.max_future_ms,
                                operations=proj.operations)
    for f in result.skipped_files:
        console.print(f"skipped {f}: this content was ingested before")
    if result.files:
        rejected = ", ".join(f"{reason} {n:,}" for reason, n in sorted(result.rejected.items())) or "none"
        out.print(f"ingested {result.records:,} records from {len(result.files)} file(s): "
                  f"{result.accepted:,} events, rejected {rejected} -> {target.tables(chosen).root}")


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First event date (UTC), e.g. 2024-05-01.")],
    end: Annotated[str, typer.Option(help="Last event date (UTC), inclusive.")],
    lake: LakeOption = None,
    project: ProjectOption = None,
    catalog: EveryCatalogOption = None,
) -> None:
    """Recompute the Delta feature tables for a date range (idempotent; windows read the history they need)."""
    from batch_jobs.backfill import backfill as run_backfill, parse_date
    from batch_jobs.spark_session import build_spark
    from runtime.lake import Lake

    proj = _project(project)
    catalogs = [proj.catalog(catalog)] if catalog else list(proj.catalogs().values())
    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    target = Lake.at(lake or proj.lake_root)
    with console.status("starting Spark"):
        spark = build_spark("tandem-backfill")
    for chosen in catalogs:
        with console.status(f"backfilling {chosen.schema.name} {first} .. {last}"):
            result = run_backfill(spark, target, first, last, chosen, operations=proj.operations)
        out.print(f"backfilled {result.rows:,} feature rows of {chosen.schema.name} for {result.start} .. "
                  f"{result.end} into " + ", ".join(result.tables.values()))


@app.command()
def materialize(
    start: Annotated[Optional[str], typer.Option(help="First event date (UTC), e.g. 2024-05-01 (default: all).")] = None,
    end: Annotated[Optional[str], typer.Option(help="Last event date (UTC), inclusive (default: all).")] = None,
    group: Annotated[Optional[list[str]], typer.Option(
        "--group", help="Only this feature group (its entity name); repeatable (default: every group).")] = None,
    redis: Annotated[Optional[str], typer.Option(
        help="Redis host:port (default: the project's online_store; $TANDEM_REDIS overrides it).")] = None,
    lake: LakeOption = None,
    project: ProjectOption = None,
    catalog: EveryCatalogOption = None,
) -> None:
    """Write each entity's latest feature row into Redis, exactly (use this, not `tandem feast materialize`).

    Feast's own materialize serves an int64 feature with a null rounded beyond 2**53 and never replaces a row
    of the same event time (a corrected backfill); this one writes Feast's layout through the stream's
    timestamp-guarded writer: a row replaces the served one when its event time is the same or newer.
    """
    from batch_jobs.backfill import parse_date
    from batch_jobs.spark_session import build_spark
    from feature_repo.materialize import check_groups, materialize as run_materialize
    from runtime.lake import Lake
    from runtime.secrets import redact_address
    from stream_jobs.online_sink import OnlineWriter, RedisUnreachable

    proj = _project(project)
    catalogs = [proj.catalog(catalog)] if catalog else list(proj.catalogs().values())
    check_groups(catalogs, group)
    first = parse_date(start, "--start") if start else None
    last = parse_date(end, "--end") if end else None
    address = redis or proj.online_store
    if not address:
        raise UserError("no online store: set online_store in tandem.yaml, $TANDEM_REDIS or --redis")
    try:  # refused credentials are said before Spark starts; RedisRefused goes up
        OnlineWriter(address, catalog=catalogs[0], project=proj.name).close()
    except RedisUnreachable:
        pass  # an outage: the serving snapshot is still refreshed before the write fails (RUNBOOK.md)
    with console.status("starting Spark"):
        spark = build_spark("tandem-materialize")
    with console.status(f"materializing into Redis at {redact_address(address)}"):
        done = run_materialize(spark, Lake.at(lake or proj.lake_root), catalogs, address, proj.name, first, last,
                               groups=group, operations=proj.operations)
    for m in done:
        kept = f", {m.stale:,} kept a newer served row" if m.stale else ""
        out.print(f"materialized {m.group} ({m.catalog}): {m.rows:,} entities, {m.written:,} written{kept}")


def stream(**values) -> None:
    """Run the Flink stream job on the local mini-cluster (a real cluster: see README, flink run).

    A bounded run ends with the feature rows and the dead letters per reason, read from the committed outputs.
    Each checkpoint (and a failure) is a row of the run log (stream:<source>); --metrics-port serves live metrics.
    """
    from stream_jobs import dead_letters as dl
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.job import StreamJobSpec, run
    from stream_jobs.options import job_arguments
    from stream_jobs.outputs import feature_rows

    spec = StreamJobSpec(**job_arguments(values, project_lake=True))  # every run in the project's run log
    kafka = dl.parse_target(spec.dead_letters)
    started_ms = time.time_ns() // 1_000_000
    with console.status("starting Flink"):
        t_env = build_table_env(parallelism=1, worker_processes=True)
    if spec.rest_port is not None:
        console.print(f"Flink REST API and web UI: http://localhost:{spec.rest_port}", highlight=False)
    if spec.metrics_port is not None:
        console.print(f"Prometheus metrics: http://localhost:{spec.metrics_port}/metrics", highlight=False)
    with console.status(f"streaming {spec.source}"):
        run(t_env, spec)
    with console.status("counting dead letters"):
        reasons = (dl.file_counts(spec.out_dir) if kafka is None
                   else dl.kafka_counts(*kafka, since_ms=started_ms, catalog=spec.catalog,
                                        properties=spec.kafka_properties))
    where = spec.out_dir if kafka is None else f"{spec.out_dir} (dead letters: kafka topic {kafka[1]})"
    out.print(f"{len(feature_rows(spec.out_dir, spec.catalog)):,} feature rows, dead letters: "
              + (", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items())) or "none") + f" -> {where}",
              highlight=False)


def _typer_signature(function, options) -> None:
    """Give ``function`` one typer option per entry of ``options`` (``stream_jobs.options``: defined once)."""
    import inspect

    kinds = {"flag": bool, "int": Optional[int], "path": Optional[Path], "duration": Optional[str],
             "text": Optional[str]}
    params = []
    for o in options:
        base = (Path if o.kind == "path" else str) if o.required else kinds[o.kind]
        annotation = Annotated[base, typer.Option(o.flag, help=o.help, show_default=o.default is not None)]
        default = inspect.Parameter.empty if o.required else o.default
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=annotation))
    function.__signature__ = inspect.Signature(params, return_annotation=None)
    function.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}


def _register_stream() -> None:
    from stream_jobs.options import OPTIONS

    _typer_signature(stream, OPTIONS)
    app.command("stream")(stream)


_register_stream()


@app.command()
def parity(
    events: Annotated[Path, typer.Option(help="Transactions: .jsonl or .parquet, replayed by the stream in file order.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new (or empty) folder for the outputs and reports.")],
    allowed_lateness: Annotated[Optional[str], typer.Option(
        help="The stream's allowed lateness, e.g. 500ms, 5s, 2m (default: the project's).")] = None,
    serving: Annotated[bool, typer.Option(help="Also check training = serving through Feast and Redis.")] = False,
    redis: Annotated[Optional[str], typer.Option(help="Redis host:port for --serving (default: $TANDEM_REDIS, "
                                                      "else a local redis-server started for the run).")] = None,
    project: ProjectOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Run the batch (Spark) and stream (Flink) paths and the reference on the same events; compare per feature.

    Exit 0 only when every difference is explained by a late event the stream reported.
    """
    from tandem.parity.report import print_table
    from tandem.parity.run import REPORT_HTML, REPORT_JSON, check_out_dir, run_parity

    proj = _project(project)
    chosen = proj.catalog(catalog)
    lateness = proj.allowed_lateness_ms if allowed_lateness is None else _duration_ms(allowed_lateness,
                                                                                      "--allowed-lateness")
    check_out_dir(out_dir)
    with _progress() as step, _online_store(redis if serving else "", step) as address:
        result = run_parity(events, out_dir, lateness, chosen, step=step, serving_redis=address or None,
                            serving_project=f"{proj.name}_parity", state_backend=proj.state_backend)
    print_table(result, out)
    out.print(f"reports: {out_dir / REPORT_JSON}, {out_dir / REPORT_HTML}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress():
    """Yield ``step(name)``: a context manager showing one line per stage, ticked when it ends."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        @contextlib.contextmanager
        def step(name: str):
            task = progress.add_task(name, total=1)
            try:
                yield
            except BaseException:
                progress.remove_task(task)  # the error line says what failed
                raise
            progress.update(task, completed=1)

        yield step


@contextlib.contextmanager
def _online_store(address: str | None, step):
    """``address`` or ``$TANDEM_REDIS``; else a local redis-server for the run ("" means none wanted)."""
    import os

    if address == "":
        yield None
        return
    address = address or os.environ.get("TANDEM_REDIS")
    if address:
        yield address
        return
    from local_services.redis_server import RedisServer

    with step("starting a local redis-server for the run"):
        server = RedisServer().start()
    try:
        yield f"{server.host}:{server.port}"
    finally:
        server.stop()


@app.command()
def shadow(
    candidate: Annotated[str, typer.Option(help="The changed catalog: pkg.module or path/to/file.py, "
                                                "optionally :ATTRIBUTE.")],
    events: Annotated[Path, typer.Option(help="Transactions (.jsonl or .parquet) both catalogs run on.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new (or empty) folder for shadow.json and the lakes.")],
    fail_on_change: Annotated[bool, typer.Option(help="Exit 3 when any feature changed (for CI gates).")] = False,
    project: ProjectOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Run a changed catalog beside the project's current one on the same events (batch path); report changes."""
    from tandem.shadow import REPORT_JSON, print_report, run_shadow

    current = _project(project).catalog(catalog)
    with console.status("shadow run") as status:
        result = run_shadow(events, candidate, out_dir, current, step=lambda name: _status_step(status, name))
    print_report(result, out)
    out.print(f"report: {out_dir / REPORT_JSON}", highlight=False)
    if fail_on_change and result.changed:
        raise typer.Exit(3)


def _status_step(status, name: str):
    from contextlib import nullcontext

    status.update(name)
    return nullcontext()


def _evaluate_and_report(events: Path, out_dir: Path | None, lateness_ms: int | None, catalog) -> None:
    from runtime.events_io import read_events, write_feature_rows, write_rejections
    from tandem.reference import evaluate

    started = time.perf_counter()
    records = read_events(events)
    with console.status("evaluating"):
        result = evaluate(records, catalog, allowed_lateness_ms=lateness_ms)
    elapsed = time.perf_counter() - started
    if result.records_in == 0:
        raise UserError(f"{events}: holds no records")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_feature_rows(result.rows, out_dir / "features.parquet", catalog)
        write_rejections(result.rejected, out_dir / "rejected.parquet", catalog)
    _print_summary(result, elapsed, out_dir, catalog)
    if not result.rows:
        raise UserError(f"{events}: no record was accepted ({result.counts['invalid']} invalid); see the rejections")


def _print_summary(result, elapsed: float, out_dir: Path | None, catalog) -> None:
    from collections import Counter

    c = result.counts
    summary = Table(title="Reference evaluation", show_header=False)
    summary.add_row("records read", f"{result.records_in:,}")
    summary.add_row("feature rows (accepted events)", f"{c['accepted']:,}")
    for reason in ("invalid", "duplicate", "late"):
        summary.add_row(f"rejected: {reason}", f"{c[reason]:,}")
    kinds = Counter(r.kind for r in result.rejected if r.reason == "invalid")
    if kinds:
        summary.add_row("invalid by kind", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    summary.add_row("features per row", str(len(catalog.features)))
    summary.add_row("time", f"{elapsed:.1f} s ({result.records_in / max(elapsed, 1e-9):,.0f} records/s)")
    if out_dir is not None:
        summary.add_row("outputs", f"{out_dir / 'features.parquet'}, {out_dir / 'rejected.parquet'}")
    out.print(summary)
    if result.rows and catalog.groups:
        schema, group = catalog.schema, catalog.groups[0]
        busiest = Counter(group.key_of(r) for r in result.rows).most_common(1)[0][0]
        latest = max((r for r in result.rows if group.key_of(r) == busiest),
                     key=lambda r: (r[schema.event_time], r[schema.event_id]))
        sample = Table(title=f"Latest feature row of the busiest {', '.join(group.key)}: {group.shown_key(latest)}",
                       show_header=False)
        for name, value in latest.items():
            sample.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
        out.print(sample)


@app.command()
def status(
    since: Annotated[str, typer.Option(help="The period's start: a duration before now (12h, 7d) or a date or time "
                                            "(2026-05-01, 2026-05-01T12:00Z).")] = "7d",
    pipeline: Annotated[Optional[str], typer.Option(
        help="Only this pipeline, <kind>:<source> (default: every pipeline in the run log).")] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Also write the status page here (one HTML file: charts per pipeline, no scripts).")] = None,
    alert: Annotated[bool, typer.Option(
        "--alert", help="Alert each SLA breach (freshness, availability) to the project's channels; "
                        "repeats of one ongoing breach wait for alerts.repeat_after.")] = False,
    project: ProjectOption = None,
) -> None:
    """How each pipeline has run, from the run log: availability, reliability budget, freshness, completeness,
    last failure, time to repair. Targets breached in red; the definitions are in tandem/status.py."""
    from runtime.run_log import RunLog, utc_now
    from tandem.status import compute, parse_since, print_table, render_html

    until = utc_now()
    try:
        start = parse_since(since, until)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--since") from None
    proj = _project(project)
    log = RunLog(proj.lake_root)
    records = log.read()
    if not records:
        out.print(f"no runs yet: the run log {log.path} is empty", highlight=False)
        return
    if pipeline is not None:
        known = sorted({r.pipeline for r in records})
        if pipeline not in known:
            raise typer.BadParameter(f"{pipeline!r} is not in the run log; its pipelines: {', '.join(known)}",
                                     param_hint="--pipeline")
        records = [r for r in records if r.pipeline == pipeline]
    statuses = compute(records, proj.operations, start, until)
    print_table(statuses, out, start, until)
    if html is not None:
        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(render_html(statuses, records, start, until, proj.name), encoding="utf-8")
        except OSError as e:
            raise UserError(f"--html {html}: cannot write it ({e.strerror or e})") from None
        out.print(f"page: {html}", highlight=False)
    if alert:
        from runtime.alerts import send
        from tandem.status import breaches

        for a in breaches(statuses):
            out.print(send(a, proj.operations.alerts).line(), highlight=False)


@app.command()
def orchestrate(
    port: Annotated[int, typer.Option(help="The Dagster UI's port.")] = 3000,
    host: Annotated[str, typer.Option(help="The address the UI listens on (loopback by default).")] = "127.0.0.1",
    project: ProjectOption = None,
) -> None:
    """Run the project's pipelines on Dagster: its UI, schedules, sensors and retries (`dagster dev`).

    The Dagster home (runs, schedules' ticks, SQLite storage) is the project's .dagster folder; the
    definitions come from the project (orchestrate/definitions.py). Stop with Ctrl-C.
    """
    import os
    import subprocess

    from orchestrate.definitions import orchestration
    from runtime.project import ENV_PROJECT

    proj = _project(project)
    orchestration(proj)  # a bad cron or a missing landing folder: one line, before Dagster starts
    home = proj.root / ".dagster"
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists():  # no telemetry: nothing leaves the machine
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, ENV_PROJECT: str(proj.root), "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).with_name("dagster")
    console.print(f"Dagster UI: http://{host}:{port} (home {home}); Ctrl-C stops it", highlight=False)
    try:
        code = subprocess.call([str(dagster), "dev", "-m", "orchestrate.repo", "-h", host, "-p", str(port)],
                               env=env, cwd=proj.root)
    except KeyboardInterrupt:
        code = 130
    if code:
        raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="The address to listen on; one that is not loopback needs an API token "
                                           "($TANDEM_SERVE_TOKEN or serving.token in tandem.yaml).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=1, max=65535)] = 6566,
    redis: Annotated[Optional[str], typer.Option(
        help="Redis host:port (default: the project's online_store; $TANDEM_REDIS overrides it).")] = None,
    max_entities: Annotated[Optional[int], typer.Option(
        help="Entities in one lookup, at most (default: serving.max_entities, else 1000).", min=1)] = None,
    access_log: Annotated[bool, typer.Option(help="Log a line per request (method, path, status).")] = False,
    project: ProjectOption = None,
) -> None:
    """Serve the project's online features over HTTP: each value with its event time, age and status.

    POST /features {"features": ["view:feature", ...] or "feature_service": "<source>_all", "entities": {...}};
    GET /health; GET /metrics (Prometheus). Statuses: fresh, stale, defaulted, missing, and fallback while the
    circuit breaker around Redis is open (values from the snapshot tandem materialize writes; README "Serving").
    """
    import os
    import socket

    from runtime.serving_settings import ENV_TOKEN
    from serving.access import check_bind

    proj = _project(project)
    settings = proj.serving
    check_bind(host, settings.token)  # before anything listens
    try:  # a port in use or an address not on this machine: one line, before uvicorn logs its own
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    import uvicorn

    from serving.http import create_app
    from serving.lookup import OnlineLookup
    from serving.metrics import ServeMetrics

    lookup = OnlineLookup.for_project(proj, redis, timeout=settings.timeout_ms / 1000, metrics=ServeMetrics(),
                                      **({} if max_entities is None else {"max_entities": max_entities}))
    problem = lookup.store.ping()
    if problem:  # served anyway: from the fallback snapshot until Redis is back
        console.print(f"warning: {problem}; lookups are served from the fallback snapshot until it does",
                      highlight=False, markup=False)
    # The fallback snapshot is loaded now, so the first lookup of an outage does not pay for reading it
    # (a newer one written by tandem materialize is picked up on use).
    loaded = lookup.snapshot.warm(lookup.views)
    missing = sorted(v for v, snap in loaded.items() if isinstance(snap, str))
    entities = sum(len(snap) for snap in loaded.values() if not isinstance(snap, str))
    console.print(f"fallback snapshot: {len(loaded) - len(missing)} of {len(loaded)} views, {entities:,} entities"
                  + (f"; none for {', '.join(missing)} (run tandem materialize)" if missing else ""),
                  highlight=False, markup=False)
    services = ", ".join(lookup.features.services)
    auth = f"token required (from {ENV_TOKEN if os.environ.get(ENV_TOKEN) else 'tandem.yaml'})" \
        if settings.token is not None else "no token (loopback only)"
    console.print(f"serving project {proj.name} (feature services: {services}) from Redis at "
                  f"{lookup.store.address} on http://{host}:{port}; {auth}; Ctrl-C stops it",
                  highlight=False, markup=False)
    app_ = create_app(lookup, settings.token)
    uvicorn.run(app_, host=host.strip("[]"), port=port, log_level="warning", access_log=access_log,
                server_header=False, lifespan="off")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn user mistakes into one line and a non-zero exit."""
    try:
        app(args=argv, prog_name="tandem", standalone_mode=False)
    except typer.Exit as e:  # --help and friends
        sys.exit(e.exit_code)
    except typer.Abort:
        console.print("aborted", highlight=False)
        sys.exit(130)
    except typer.TyperException as e:  # usage errors: unknown option, bad value, missing argument
        if type(e).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help was printed already
        ctx = getattr(e, "ctx", None)
        where = f"tandem {ctx.command.name} --help" if ctx is not None and ctx.parent is not None else "tandem --help"
        console.print(f"error: {e.format_message()} (see {where})", highlight=False, soft_wrap=True, markup=False)
        sys.exit(getattr(e, "exit_code", 2))
    except UserError as e:
        console.print(f"error: {e}", highlight=False, soft_wrap=True, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
