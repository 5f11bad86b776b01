"""Projects: tandem init, finding tandem.yaml, loading the user's catalogs, and every mistake as one line.

No engine starts here: what these checks refuse is refused before Spark or Flink would.
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.errors import UserError
from runtime.project import find_project, load_catalog, load_project
from tests.shell import shell_env
from transforms import Catalog

TANDEM = str(Path(sys.executable).parent / "tandem")

CATALOG_PY = textwrap.dedent('''
    from transforms import Agg, Catalog, EventSchema, Feature, FeatureGroup, Field, FieldType

    SCHEMA = EventSchema(
        name="{source}", version=1,
        fields=(Field("id", FieldType.STRING), Field("{key}", FieldType.STRING), Field("at", FieldType.TIMESTAMP_MS)),
        event_id="id", entity_keys=("{key}",), event_time="at")
    CATALOG = Catalog(schema=SCHEMA, row_functions=(),
                      groups=(FeatureGroup("{group}", "{key}", (Feature("{group}_count_1h", Agg.COUNT, "1h"),)),))
''')


def make_project(folder: Path, catalogs=("rides",), yaml_extra: str = "", name="demo") -> Path:
    """A project with one module per catalog in its features/ package."""
    (folder / "features").mkdir(parents=True)
    (folder / "features" / "__init__.py").write_text("")
    for source in catalogs:
        (folder / "features" / f"{source}.py").write_text(
            CATALOG_PY.format(source=source, key=f"{source}_key", group=f"{source}_group"))
    listed = "".join(f"\n  - features.{c}" for c in catalogs)
    (folder / "tandem.yaml").write_text(f"project: {name}\ncatalogs:{listed}\n{yaml_extra}")
    return folder


def tandem(*args, cwd, **env):
    return subprocess.run([TANDEM, *args], capture_output=True, text=True, cwd=cwd, env=shell_env(**env),
                          timeout=120)


def assert_one_line_error(result, text):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_the_nearest_tandem_yaml_at_or_above_the_current_directory_is_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_PROJECT", raising=False)
    root = make_project(tmp_path / "repo")
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(start=deep).root == root.resolve()
    assert find_project(root).root == root.resolve()  # --project
    with pytest.raises(UserError, match="tandem init"):
        find_project(start=tmp_path)


def test_paths_are_relative_to_tandem_yaml_and_the_environment_overrides_them(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_LAKE", raising=False)
    monkeypatch.delenv("TANDEM_REDIS", raising=False)
    root = make_project(tmp_path / "p", yaml_extra="lake: data/lake\nonline_store: redis.internal:6379\n"
                                                   "defaults:\n  allowed_lateness: 30s\n")
    project = load_project(root / "tandem.yaml")
    assert project.lake_root == (root / "data" / "lake").resolve()
    assert project.online_store == "redis.internal:6379"
    assert project.allowed_lateness_ms == 30_000 and project.max_future_ms == 3_600_000
    assert project.state_backend == "hashmap"
    monkeypatch.setenv("TANDEM_LAKE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TANDEM_REDIS", "10.0.0.1:6380")
    project = load_project(root / "tandem.yaml")
    assert project.lake_root == (tmp_path / "elsewhere").resolve() and project.online_store == "10.0.0.1:6380"


def test_the_stream_state_backend_is_a_project_default_and_a_wrong_one_is_one_line(tmp_path):
    root = make_project(tmp_path / "p", yaml_extra="defaults:\n  state_backend: rocksdb\n")
    assert load_project(root / "tandem.yaml").state_backend == "rocksdb"
    root = make_project(tmp_path / "q", yaml_extra="defaults:\n  state_backend: memory\n")
    with pytest.raises(UserError) as e:
        load_project(root / "tandem.yaml")
    assert str(e.value) == f"{root / 'tandem.yaml'}: defaults: state_backend must be one of hashmap, rocksdb " \
                           "(got 'memory')"


def test_a_password_comes_from_the_environment_and_tandem_env_prints_only_the_reference(tmp_path, monkeypatch):
    """``${VAR}`` in online_store is read from the environment when the project loads; ``tandem env`` prints the
    text as written, double-quoted, so the shell that evals it expands the reference (and nothing else)."""
    monkeypatch.delenv("TANDEM_REDIS", raising=False)
    root = make_project(tmp_path / "p", yaml_extra='online_store: "redis.internal:6380,ssl=true,password=${P_PW}"\n'
                                                   'kafka: "${P_BROKERS}"\n')
    with pytest.raises(UserError, match=r"online_store refers to \$\{P_PW\}, which is not set: export it"):
        load_project(root / "tandem.yaml")
    secret = 'a$b"c`d\\e,f'
    monkeypatch.setenv("P_PW", secret)
    monkeypatch.setenv("P_BROKERS", "k1:9092,k2:9092")
    project = load_project(root / "tandem.yaml")
    assert project.online_store == f"redis.internal:6380,ssl=true,password={secret}"
    assert project.kafka == "k1:9092,k2:9092"
    env = {k: v for k, v in shell_env(P_PW=secret, P_BROKERS="x").items() if k != "TANDEM_REDIS"}
    done = subprocess.run([TANDEM, "env"], capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout and "password=${P_PW}" in done.stdout
    shell = subprocess.run(["bash", "-c", done.stdout + '\nprintf %s "$TANDEM_REDIS"'], capture_output=True,
                           text=True, env=env)
    assert shell.stdout == f"redis.internal:6380,ssl=true,password={secret}"  # what Feast will read
    done = subprocess.run([TANDEM, "env"], capture_output=True, text=True, cwd=root, timeout=120,
                          env={**env, "TANDEM_REDIS": f"h:1,password={secret}"})
    assert secret not in done.stdout and "TANDEM_REDIS" not in done.stdout  # yours already: not printed back


def test_kafka_properties_reach_the_project_with_their_secrets_read_from_the_environment(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", yaml_extra=(
        "kafka_properties:\n  security.protocol: SASL_SSL\n  sasl.mechanism: SCRAM-SHA-512\n"
        "  sasl.jaas.config: x required username=\"u\" password=\"${P_KAFKA}\";\n"
        "  request.timeout.ms: 30000\n  enable.idempotence: true\n"))
    with pytest.raises(UserError, match=r"kafka_properties.sasl.jaas.config refers to \$\{P_KAFKA\}, which is not set"):
        load_project(root / "tandem.yaml")
    monkeypatch.setenv("P_KAFKA", "s3cret")
    project = load_project(root / "tandem.yaml")
    assert project.kafka_properties == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                        "sasl.jaas.config": 'x required username="u" password="s3cret";',
                                        "request.timeout.ms": "30000", "enable.idempotence": "true"}
    assert "s3cret" not in repr(project)


@pytest.mark.parametrize("text, message", [
    ("kafka_properties: SASL_SSL", "kafka_properties must map Kafka client properties to values"),
    ("kafka_properties: {Security Protocol: SSL}", "'Security Protocol' is not a Kafka property name"),
    ("kafka_properties: {bootstrap.servers: 'k:9092'}", "bootstrap.servers is set by Tandem for each client"),
    ("kafka_properties: {group.id: mine}", "group.id is set by Tandem for each client"),
    ("kafka_properties: {ssl.keystore.location: [a, b]}", "ssl.keystore.location must be a string or a number"),
])
def test_bad_kafka_properties_are_one_line(tmp_path, text, message):
    root = make_project(tmp_path / "p", yaml_extra=text + "\n")
    with pytest.raises(UserError, match=re.escape(message)) as e:
        load_project(root / "tandem.yaml")
    assert str(root / "tandem.yaml") in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("address, shown", [
    ("h:6379,password=abc,ssl=true", "h:6379,password=***,ssl=true"),
    ("h:6379,db=2,Password = a=b", "h:6379,db=2,Password =***"),
    ("redis://u:p%40ss@h:1/0", "redis://u:***@h:1/0"),
    ("rediss://:pw@h:1/0", "rediss://:***@h:1/0"),
    ("redis://h:1/0", "redis://h:1/0"),
    ("h:6379", "h:6379"),
])
def test_an_address_is_shown_without_its_password(address, shown):
    from runtime.secrets import redact_address

    assert redact_address(address) == shown


def test_two_projects_with_a_features_package_each_load_their_own(tmp_path):
    one = load_project(make_project(tmp_path / "one", catalogs=("rides",)) / "tandem.yaml")
    two = load_project(make_project(tmp_path / "two", catalogs=("rides",)) / "tandem.yaml")
    (tmp_path / "two" / "features" / "rides.py").write_text(
        CATALOG_PY.format(source="rides", key="driver", group="drivers"))
    assert one.catalog().groups[0].key == ("rides_key",)
    assert two.catalog().groups[0].key == ("driver",)


def test_a_project_with_two_catalogs_asks_which_one(tmp_path):
    project = load_project(make_project(tmp_path / "p", catalogs=("rides", "payments")) / "tandem.yaml")
    assert set(project.catalogs()) == {"rides", "payments"}
    assert project.catalog("payments").schema.name == "payments"
    with pytest.raises(UserError, match="has 2 catalogs .*--catalog"):
        project.catalog()


def test_a_catalog_file_path_and_an_attribute_load(tmp_path):
    root = make_project(tmp_path / "p")
    by_file = load_catalog("features/rides.py:CATALOG", root)
    assert isinstance(by_file, Catalog) and by_file.schema.name == "rides"


def test_group_names_are_unique_across_the_catalogs_of_a_project(tmp_path):
    root = make_project(tmp_path / "p", catalogs=("rides", "payments"))
    (root / "features" / "payments.py").write_text(
        CATALOG_PY.format(source="payments", key="payments_key", group="rides_group"))
    with pytest.raises(UserError, match="feature group 'rides_group' is in catalogs"):
        load_project(root / "tandem.yaml").catalogs()


BROKEN = {
    "unknown key": ("tandem.yaml", "project: demo\ncatalogs: [features.rides]\nonline: x\n", "unknown key 'online'"),
    "not yaml": ("tandem.yaml", "project: [demo\n", "is not valid YAML"),
    "a gate on an unknown column": ("features/rides.py", CATALOG_PY.format(source="rides", key="k", group="g").replace(
        "groups=(", "gates=(Completeness(column='tip'),), groups=(").replace(
        "import Agg,", "import Agg, Completeness,"), "gate completeness(tip): unknown column 'tip'"),
    "a gate threshold out of range": ("features/rides.py", CATALOG_PY.format(source="rides", key="k", group="g").replace(
        "groups=(", "gates=(Completeness(column='k', min=95),), groups=(").replace(
        "import Agg,", "import Agg, Completeness,"), "min must be a share between 0 and 1 (got 95)"),
    "an availability target out of range": (
        "tandem.yaml", "project: demo\ncatalogs: [features.rides]\npipelines:\n  rides: {availability: 99}\n",
        "pipelines.rides.availability must be a share between 0 and 1"),
    "an alert channel Tandem does not have": (
        "tandem.yaml", "project: demo\ncatalogs: [features.rides]\nalerts: {pager: x}\n", "alerts: unknown key 'pager'"),
    "a freshness SLA that is no duration": (
        "tandem.yaml", "project: demo\ncatalogs: [features.rides]\npipelines:\n  stream:rides: {freshness: soon}\n",
        "pipelines.stream:rides.freshness: invalid duration"),
    "no catalogs": ("tandem.yaml", "project: demo\n", "'catalogs' must list"),
    "missing catalog file": ("tandem.yaml", "project: demo\ncatalogs: [features/nope.py]\n", "no such file"),
    "missing module": ("tandem.yaml", "project: demo\ncatalogs: [features.nope]\n", "no module named 'features.nope'"),
    "import fails": ("features/rides.py", "import numpy\n1 / 0\n", "importing it failed: ZeroDivisionError"),
    "not a catalog": ("tandem.yaml", "project: demo\ncatalogs: ['features.rides:SCHEMA']\n",
                      "'SCHEMA' is not a Catalog"),
    "engines cannot run it": ("features/rides.py", CATALOG_PY.format(source="rides", key="k", group="g").replace(
        'Feature("g_count_1h", Agg.COUNT, "1h")', 'Feature("g_sum", Agg.SUM, "1h", of="k")'),
        "feature g_sum: sum needs a numeric (int64 or float64) column"),
    "a row function no two machines agree on": ("features/rides.py", CATALOG_PY.format(source="rides", key="k", group="g")
                                                 .replace("row_functions=()", "row_functions=(rf,)")
                                                 .replace("SCHEMA = ", "import numpy as np\nfrom transforms import "
                                                          "row_function\nrf = row_function(FieldType.FLOAT64)("
                                                          "lambda at: np.log1p(at))\nSCHEMA = "),
                                                "use transforms.portable.log1p"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_project_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, case):
    root = make_project(tmp_path / "p")
    path, text, message = BROKEN[case]
    (root / path).write_text(text)
    events = tmp_path / "e.jsonl"
    events.write_text('{"id": "a", "rides_key": "k", "at": 1714564800000}\n')
    result = tandem("ingest", "--events", str(events), cwd=root)
    assert_one_line_error(result, message)
    assert str(root) in result.stderr or case == "import fails" or "features" in result.stderr
    assert not (root / "lake").exists()


def test_a_catalog_option_that_names_no_catalog_of_the_project_is_one_line(tmp_path):
    root = make_project(tmp_path / "p")
    result = tandem("reference", "--events", str(tmp_path / "e.jsonl"), "--catalog", "payments", cwd=root)
    assert_one_line_error(result, "--catalog payments: names no catalog of")


def test_without_a_project_a_verb_says_so_and_names_tandem_init(tmp_path):
    result = tandem("backfill", "--start", "2024-05-01", "--end", "2024-05-01", cwd=tmp_path, TANDEM_PROJECT="")
    assert_one_line_error(result, "tandem init")


def test_init_makes_a_project_that_loads_and_refuses_a_folder_with_files(tmp_path):
    result = tandem("init", str(tmp_path / "shop"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = load_project(tmp_path / "shop" / "tandem.yaml")
    assert project.name == "shop"
    assert project.catalog().schema.name == "transactions"
    assert (tmp_path / "shop" / "feast_repo" / "feature_store.yaml").read_text().count("project: shop") == 1
    assert not (tmp_path / "shop" / "__init__.py").exists()
    assert (tmp_path / "shop" / "landing" / "transactions").is_dir()  # tandem orchestrate's landing folder
    assert_one_line_error(tandem("init", str(tmp_path / "shop"), cwd=tmp_path), "is not an empty folder")


def test_feast_materialize_is_refused_where_it_would_serve_an_int_as_a_double(tmp_path):
    """An int64 feature that can be null: Feast's materialize would round it beyond 2**53 (or fail near 2**63)."""
    root = make_project(tmp_path / "p")
    (root / "features" / "fleet.py").write_text((Path(__file__).parent / "catalogs" / "fleet.py").read_text())
    (root / "tandem.yaml").write_text("project: demo\ncatalogs:\n  - features.fleet\n")
    result = tandem("feast", "materialize", "2024-05-01T00:00:00", "2024-05-02T00:00:00", cwd=root)
    assert_one_line_error(result, "feature cd_max_seats_1h is an int64 that can be null")
    assert "tandem materialize" in result.stderr and not (root / "lake").exists()


def test_materialize_names_an_unknown_group_and_a_missing_feature_table_in_one_line(tmp_path):
    root = make_project(tmp_path / "p")
    assert_one_line_error(tandem("materialize", "--group", "nope", cwd=root),
                          "no catalog has a feature group 'nope'")
    assert_one_line_error(tandem("materialize", cwd=root), "no online store: set online_store in tandem.yaml")
    assert_one_line_error(tandem("materialize", "--redis", "127.0.0.1:1", cwd=root),
                          "no feature table of group 'rides_group'")


def test_pipeline_settings_come_from_the_pipeline_then_its_source_then_defaults(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", yaml_extra=textwrap.dedent("""\
        pipelines:
          defaults: {owner: platform, availability: 0.95}
          rides: {owner: rides-team}
          stream:rides: {freshness: 10m}
        alerts: {webhook: "http://127.0.0.1:9/hook", file: out/alerts.jsonl, repeat_after: 30m}
        """))
    monkeypatch.delenv("TANDEM_ALERT_WEBHOOK", raising=False)
    ops = load_project(root / "tandem.yaml").operations
    stream, backfill, other = (ops.pipeline(n) for n in ("stream:rides", "backfill:rides", "ingest:payments"))
    assert (stream.owner, stream.availability, stream.freshness_for("stream:rides")) == ("rides-team", 0.95, 600_000)
    assert (backfill.owner, backfill.freshness_for("backfill:rides")) == ("rides-team", 26 * 3_600_000)
    assert (other.owner, other.availability, other.freshness_for("stream:x")) == ("platform", 0.95, 15 * 60_000)
    assert ops.alerts.file == (root / "out" / "alerts.jsonl").resolve() and ops.alerts.repeat_after_ms == 1_800_000
    assert ops.alerts.webhook == "http://127.0.0.1:9/hook"
    monkeypatch.setenv("TANDEM_ALERT_WEBHOOK", "http://127.0.0.1:8/other")
    assert load_project(root / "tandem.yaml").operations.alerts.webhook == "http://127.0.0.1:8/other"
