"""Any catalog, through everything: a user's project with a catalog unlike the example (tests/catalogs/rides.py).

One parity run (the real Spark batch path, the real Flink stream path, the
reference evaluator, then Feast apply + materialise into a real Redis, the
stream into the same Redis, and training = serving) is shared by the
tests below, and the same project also holds the example catalog, so two
event sources live side by side in one lake, one registry and one Redis.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runtime.events_io import write_events
from runtime.lake import Lake
from runtime.project import load_project
from tandem.parity.run import BATCH, REJECTED, STREAM, run_parity
from tandem.reference import evaluate
from tests.catalogs.rides import rides
from tests.factories import T0
from tests.shell import flink_logs_since

LATENESS_MS = 2_000
PROJECT = "rides_and_cards"


def make_project(folder: Path) -> Path:
    """A user's project: the rides catalog as their own module, beside the example catalog."""
    (folder / "features").mkdir(parents=True)
    (folder / "features" / "__init__.py").write_text("")
    shutil.copy(Path(__file__).parent / "catalogs" / "rides.py", folder / "features" / "rides.py")
    (folder / "tandem.yaml").write_text(f"project: {PROJECT}\ncatalogs:\n  - features.rides\n"
                                        "  - examples.transactions.features.transactions\nlake: lake\n"
                                        "defaults:\n  state_backend: rocksdb\n")
    return folder


def rocksdb_windows_built() -> int:
    """How many window operators (Flink's ProcessSetTableOperator) Flink's logs say got a RocksDB state backend."""
    return sum(line.count("ProcessSetTableOperator") for text in flink_logs_since(0) for line in text.splitlines()
               if "Finished building RocksDB keyed state-backend" in line)


@pytest.fixture(scope="module")
def parity_run(spark, redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("any-catalog")
    project = load_project(make_project(root / "project") / "tandem.yaml")
    catalog = project.catalog("rides")
    records = rides(1_500, seed=11, start_ms=T0)
    write_events(records, root / "rides.jsonl", catalog)
    address = f"{redis_server.host}:{redis_server.port},db=11"
    rocksdb_before = rocksdb_windows_built()
    result = run_parity(root / "rides.jsonl", root / "out", LATENESS_MS, catalog, spark=spark, serving_redis=address,
                        serving_sample=1_000, serving_project=PROJECT, state_backend=project.state_backend)
    # the project's state backend ran the stream: its window operators kept their state in RocksDB
    assert rocksdb_windows_built() > rocksdb_before
    return project, catalog, records, result, address


def test_the_catalog_is_the_users_own_module(parity_run):
    project, catalog, _, _, _ = parity_run
    assert catalog.row_functions[0].fn.__module__ == "features.rides"
    assert set(project.catalogs()) == {"rides", "transactions"}


def test_both_engines_equal_the_reference_bit_for_bit(parity_run):
    _, catalog, records, result, _ = parity_run
    c = result.comparison
    assert result.passed, [(col.name, col.unexplained) for col in c.columns if col.unexplained][:10]
    assert c.unexplained == 0 and not c.issues
    reference = evaluate(records, catalog)
    assert c.counts["batch"]["accepted"] == len(reference.rows) > 1_000
    assert {"invalid", "duplicate"} <= {reason for reason in reference.counts if reference.counts[reason]}
    assert c.counts["stream"]["late"] > 0  # the disorder bites: some rows are explained by late events


def test_training_equals_serving_through_feast_and_redis(parity_run):
    _, catalog, records, result, _ = parity_run
    s = result.serving
    assert s.passed and s.unexplained == 0
    assert set(s.entities) == {"driver", "driver_day", "city_driver", "vehicle"}
    assert s.values == sum(s.entities[g.entity] * len(g.features) for g in catalog.groups)
    pairs = {(r["city"], r["driver"]) for r in evaluate(records, catalog).rows}
    assert {("NY", "C12"), ("NYC", "12")} <= pairs  # keys that concatenate alike ...
    assert s.entities["city_driver"] == len(pairs)  # ... each served as its own entity
    assert s.entities["vehicle"] == 8  # int64 keys, 2**63 - 1 and -2**63 among them


def test_outputs_use_the_catalogs_own_names(parity_run, spark):
    _, catalog, _, result, _ = parity_run
    out = result.out_dir
    assert pq.read_table(out / REJECTED).column_names == ["ride_id", "path", "reason", "detail"]
    for name in (BATCH, STREAM):
        assert pq.read_table(out / name).column_names == [c for c, _ in catalog.feature_row_columns()]
    tables = Lake.at(out / "work" / "lake").tables(catalog)
    assert tables.root.name == "rides"
    dead = spark.read.format("delta").load(tables.dead_letters)
    assert "ride_id" in dead.columns and "transaction_id" not in dead.columns
    invalid_ids = {r["ride_id"] for r in dead.where("reason = 'invalid'").collect()}
    assert any(i.endswith("-bad") for i in invalid_ids)  # an invalid record keeps its id under any id name
    for group in catalog.groups:
        table = spark.read.format("delta").load(tables.features(group.entity))
        assert table.columns[:len(group.key) + 2] == [*group.key, "ts", "ride_id"]


def _latest(rows, group, t):
    """Entity -> the row of its latest event (peers carry the same features)."""
    out = {}
    for r in rows:
        if group.key_of(r) not in out or r[t] >= out[group.key_of(r)][t]:
            out[group.key_of(r)] = r
    return out


def _served_rows(catalog, records, group):
    """Entity -> the row Redis keeps after a materialisation then the stream: the newer of the batch reference's
    and the stream reference's latest rows, the stream's on a tie (the guard writes equal times)."""
    t = catalog.schema.event_time
    stream = _latest(evaluate(records, catalog, allowed_lateness_ms=LATENESS_MS).rows, group, t)
    batch = _latest(evaluate(records, catalog).rows, group, t)
    return {k: stream[k] if k in stream and stream[k][t] >= b[t] else b for k, b in batch.items()}


def test_a_second_source_lives_beside_the_first_in_one_lake_registry_and_redis(parity_run, spark, tmp_path):
    """The example catalog ingested, backfilled, registered, materialised and streamed into the rides run's lake,
    Feast project and Redis: both sources' tables, views and online rows side by side, neither disturbing the
    other."""
    from datetime import date

    from batch_jobs.backfill import backfill
    from batch_jobs.ingest import ingest
    from examples.transactions.features.generate import StreamSpec, generate
    from feature_repo.store import online_features
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.job import StreamJobSpec, run
    from feature_repo.materialize import materialize
    from tandem.serving import register

    project, rides_catalog, rides_records, result, address = parity_run
    cards = project.catalog("transactions")
    lake_root = result.out_dir / "work" / "lake"
    records = generate(StreamSpec(users=12, merchants=5, rate_per_s=1.0, duration="30m", seed=5))
    write_events(records, tmp_path / "cards.jsonl", cards)
    lake = Lake.at(lake_root)
    ingest(spark, tmp_path / "cards.jsonl", lake, cards)
    backfill(spark, lake, date(2024, 5, 1), date(2024, 5, 1), cards)
    assert {p.name for p in lake_root.iterdir()} >= {"rides", "transactions", "_feast"}

    store = register(PROJECT, [rides_catalog, cards], lake_root, address)
    assert {v.name for v in store.list_feature_views()} == {g.entity for c in (rides_catalog, cards) for g in c.groups}
    materialize(spark, lake, [rides_catalog, cards], address, PROJECT,
                groups=[g.entity for g in cards.groups])  # rides' stay as they were
    run(build_table_env(parallelism=1),
        StreamJobSpec(f"file:{tmp_path / 'cards.jsonl'}", tmp_path / "stream", LATENESS_MS, catalog=cards,
                      project=PROJECT, redis=address, checkpoint_interval_ms=0))

    for catalog, events in ((cards, records), (rides_catalog, rides_records)):  # each served as its reference says
        for group in catalog.groups:
            want = _served_rows(catalog, events, group)
            keys = sorted(want)
            served = online_features(store, [dict(zip(group.key, k)) for k in keys],
                                     [f"{group.entity}:{f.name}" for f in group.features])
            for f in group.features:
                assert served[f.name] == [want[k][f.name] for k in keys], (group.entity, f.name)
