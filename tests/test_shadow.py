"""``tandem shadow``: a changed catalog beside the current one, compared per feature on the real batch path.

The oracle is the reference evaluator run with each catalog: the features the
candidate changed must differ exactly where the two reference evaluations
differ, and nowhere else.
"""

import json
import textwrap
from pathlib import Path

import pytest

from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from tandem.parity.compare import same
from tandem.reference import evaluate
from runtime.project import load_catalog
from tandem.shadow import run_shadow
from tests.test_cli import assert_one_line_error, run
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

CANDIDATE = textwrap.dedent('''
    """A reviewed change: the 1 h count becomes 2 h, max gives way to min."""
    from transforms import Agg, Catalog, Feature, FeatureGroup
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
    from examples.transactions.features.transactions import MERCHANT_FEATURES, USER_FEATURES

    kept = [Feature("user_txn_count_1h", Agg.COUNT, "2h") if f.name == "user_txn_count_1h" else f
            for f in USER_FEATURES.features if f.name != "user_amount_max_24h"]
    USER = FeatureGroup("user", "user_id", (*kept, Feature("user_amount_min_24h", Agg.MIN, "24h", of="amount")))
    CATALOG = Catalog(TRANSACTIONS.schema, TRANSACTIONS.row_functions, (USER, MERCHANT_FEATURES))
''')


@pytest.fixture(scope="module")
def shadow_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("shadow")
    module = root / "candidate.py"
    module.write_text(CANDIDATE)
    records = generate(StreamSpec(users=15, merchants=4, rate_per_s=0.05, duration="6h", seed=5))
    write_events(records, root / "events.jsonl", TRANSACTIONS)
    result = run_shadow(root / "events.jsonl", str(module), root / "out", TRANSACTIONS, spark=spark)
    return result, records, load_catalog(str(module), Path.cwd())


def test_changed_features_differ_exactly_where_the_reference_says(shadow_run):
    result, records, candidate = shadow_run
    current_rows = {r["transaction_id"]: r for r in evaluate(records, TRANSACTIONS).rows}
    candidate_rows = {r["transaction_id"]: r for r in evaluate(records, candidate).rows}
    by_name = {f.name: f for f in result.features}
    kept = [name for name in by_name if by_name[name].status == "kept"]
    for name in kept:
        want = sum(not same(current_rows[i][name], candidate_rows[i][name]) for i in current_rows)
        assert by_name[name].changed == want, name
    assert by_name["user_txn_count_1h"].changed > 0  # the generated stream exercises the change
    assert {name for name in kept if by_name[name].changed} == {"user_txn_count_1h"}
    example = by_name["user_txn_count_1h"].examples[0]
    assert (example["current"], example["candidate"]) == (
        current_rows[example["event_id"]]["user_txn_count_1h"], candidate_rows[example["event_id"]]["user_txn_count_1h"])
    assert by_name["user_amount_min_24h"].status == "added"
    assert by_name["user_amount_max_24h"].status == "removed"
    assert result.changed and not result.only_current and not result.only_candidate


def test_report_json_says_what_changed(shadow_run):
    result, _, _ = shadow_run
    doc = json.loads((result.out_dir / "shadow.json").read_text())
    assert doc["changed"] is True
    statuses = {f["name"]: (f["status"], f["changed"]) for f in doc["features"]}
    assert statuses["user_amount_min_24h"][0] == "added" and statuses["user_amount_max_24h"][0] == "removed"
    assert statuses["merchant_amount_avg_24h"] == ("kept", 0)


def test_the_same_catalog_changes_nothing(spark, tmp_path):
    module = tmp_path / "same.py"
    module.write_text("from examples.transactions.features.transactions import CATALOG\n")
    write_events(generate(StreamSpec(users=5, merchants=2, rate_per_s=0.02, duration="2h", seed=9)),
                 tmp_path / "events.jsonl", TRANSACTIONS)
    result = run_shadow(tmp_path / "events.jsonl", str(module), tmp_path / "out", TRANSACTIONS, spark=spark)
    assert not result.changed
    assert all(f.status == "kept" and f.changed == 0 and f.rows > 0 for f in result.features)


@pytest.mark.parametrize("source, message", [
    ("raise RuntimeError('boom at import')\n", "importing it failed: RuntimeError: boom at import"),
    ("import no_such_package_xyz\n", "importing it failed: ModuleNotFoundError"),
    ("X = 1\n", "expected one Catalog"),
])
def test_a_candidate_that_does_not_give_a_catalog_is_one_line(tmp_path, source, message):
    module = tmp_path / "candidate.py"
    module.write_text(source)
    (tmp_path / "events.jsonl").write_text("")
    result = run("shadow", "--candidate", str(module), "--events", str(tmp_path / "events.jsonl"),
                 "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 1, message)
    assert not (tmp_path / "out").exists()


def test_a_missing_candidate_module_is_one_line(tmp_path):
    result = run("shadow", "--candidate", "no_such_module.anything", "--events", "x.jsonl", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 1, "no module named 'no_such_module'")


def test_an_empty_events_file_is_one_line(tmp_path):
    module = tmp_path / "same.py"
    module.write_text("from examples.transactions.features.transactions import CATALOG\n")
    (tmp_path / "events.jsonl").write_text("")
    result = run("shadow", "--candidate", str(module), "--events", str(tmp_path / "events.jsonl"),
                 "--out", str(tmp_path / "out"))
    assert_one_line_error(result, 1, "holds no records")
