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

LATENESS_MS = 2_000
PROJECT = "rides_and_cards"


def make_project(folder: Path) -> Path:
    """A user's project: the rides catalog as their own module, beside the example catalog."""
    (folder / "features").mkdir(parents=True)
    (folder / "features" / "__init__.py").write_text("")
    shutil.copy(Path(__file__).parent / "catalogs" / "rides.py", folder / "features" / "rides.py")
    (folder / "tandem.yaml").write_text(f"project: {PROJECT}\ncatalogs:\n  - features.rides\n"
                                        "  - examples.transactions.features.transactions\nlake: lake\n")
    return folder


@pytest.fixture(scope="module")
def parity_run(spark, redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("any-catalog")
    project = load_project(make_project(root / "project") / "tandem.yaml")
    catalog = project.catalog("rides")
    records = rides(1_500, seed=11, start_ms=T0)
    write_events(records, root / "rides.jsonl", catalog)
    address = f"{redis_server.host}:{redis_server.port},db=11"
    result = run_parity(root / "rides.jsonl", root / "out", LATENESS_MS, catalog, spark=spark, serving_redis=address,
                        serving_sample=1_000, serving_project=PROJECT)
    return project, catalog, records, result


def test_the_catalog_is_the_users_own_module(parity_run):
    project, catalog, _, _ = parity_run
    assert catalog.row_functions[0].fn.__module__ == "features.rides"
    assert set(project.catalogs()) == {"rides", "transactions"}


def test_both_engines_equal_the_reference_bit_for_bit(parity_run):
    _, catalog, records, result = parity_run
    c = result.comparison
    assert result.passed, [(col.name, col.unexplained) for col in c.columns if col.unexplained][:10]
    assert c.unexplained == 0 and not c.issues
    reference = evaluate(records, catalog)
    assert c.counts["batch"]["accepted"] == len(reference.rows) > 1_000
    assert {"invalid", "duplicate"} <= {reason for reason in reference.counts if reference.counts[reason]}
    assert c.counts["stream"]["late"] > 0  # the disorder bites: some rows are explained by late events


def test_training_equals_serving_through_feast_and_redis(parity_run):
    _, catalog, _, result = parity_run
    s = result.serving
    assert s.passed and s.unexplained == 0
    assert set(s.entities) == {"driver", "driver_day", "city"}
    assert s.values == sum(s.entities[g.entity] * len(g.features) for g in catalog.groups)
    assert s.entities["city"] == 6  # ("NY", "C12") and ("NYC", "12") style keys stay apart


def test_outputs_use_the_catalogs_own_names(parity_run, spark):
    _, catalog, _, result = parity_run
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
        assert table.columns[:3] == [group.key, "ts", "ride_id"]
