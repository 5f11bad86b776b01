"""Training = serving: what Feast's point-in-time join returns vs what Feast serves online.

The production layout, run for real: the batch feature tables are registered
(``FeatureStore.apply``) and materialised into Redis, then the stream job
writes into the same Redis (its writes are timestamp-guarded: a row replaces
the stored one when its event time is the same or newer). Afterwards, for a
sample of entities of each feature group, at a moment after every event:

* **training**: ``get_historical_features`` (via ``feature_repo.store.training_data``)
  = the batch row of the entity's latest event;
* **serving**: ``get_online_features`` = whichever row Redis kept: the
  stream's row of the entity's latest accepted event, or the materialised batch
  row when that is newer (the entity's latest event came late to the stream).

Each value must equal what the reference evaluator says for its side
(``tandem.reference`` with and without the stream's allowed lateness, and the
guard's rule above). A training/serving difference is *explained* only when
both sides equal their reference and a late event the stream reported (and
the reference agrees is late) lies in the feature's window of the served row;
anything else is *unexplained*. Floats compare by their bits.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tandem.parity.compare import same
from tandem.reference import LATE, Evaluation
from transforms import Catalog, FieldType

EXACT, EXPLAINED, UNEXPLAINED = "exact", "explained", "unexplained"


def register(project: str, catalogs: list[Catalog], lake: str | Path, redis: str):
    """``feast apply`` in-process: the catalogs' entities, views and services over ``lake``; the store."""
    from feature_repo.definitions import feast_objects
    from feature_repo.store import open_store

    (Path(lake) / "_feast").mkdir(parents=True, exist_ok=True)
    with _feast_quiet():
        store = open_store(project, lake, redis)
        store.apply(feast_objects(catalogs, lake))
    return store


@contextlib.contextmanager
def _feast_quiet():
    """Feast 0.67 warns that its Spark store is "experimental" on every object and call: noise in a report."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The spark .* is an experimental", category=RuntimeWarning)
        yield


@contextlib.contextmanager
def _spark_conf_kept(key: str = "spark.sql.parser.quotedRegexColumnNames"):
    """Feast's Spark store flips this on the shared session; put it back so later jobs parse as before."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    before = spark.conf.get(key, None) if spark else None
    try:
        with _feast_quiet():
            yield
    finally:
        if spark is not None:
            spark.conf.unset(key) if before is None else spark.conf.set(key, before)


@dataclass
class ServingDifference:
    entity: str
    key: Any  # the key value, or the tuple of a composite key
    feature: str
    training: Any
    serving: Any
    status: str
    why: str


@dataclass
class ServingComparison:
    moment_ms: int
    entities: dict[str, int]  # group entity -> entities sampled
    values: int = 0
    exact: int = 0
    explained: int = 0
    differences: list[ServingDifference] = field(default_factory=list)

    @property
    def unexplained(self) -> int:
        return sum(d.status == UNEXPLAINED for d in self.differences)

    @property
    def passed(self) -> bool:
        return self.unexplained == 0


def compare_training_serving(store, catalog: Catalog, batch_ref: Evaluation, stream_ref: Evaluation,
                             reported_late: set[str], sample: int = 25, seed: int = 0) -> ServingComparison:
    """Sample up to ``sample`` entities per group; compare training and serving values feature by feature."""
    from feature_repo.store import ENTITY_TS, online_features, training_data

    schema = catalog.schema
    moment = max(r[schema.event_time] for r in batch_ref.rows) + 1  # after every event
    confirmed_late = reported_late & {r.event_id for r in stream_ref.rejected if r.reason == LATE}
    # A late event is valid, so its batch feature row carries its keys and time.
    late_events = [r for r in batch_ref.rows if r[schema.event_id] in confirmed_late]
    rng = random.Random(seed)
    result = ServingComparison(moment, {})
    for group in catalog.groups:
        batch_latest, stream_latest = _latest(batch_ref.rows, group, schema), _latest(stream_ref.rows, group, schema)
        keys = sorted(batch_latest)  # key tuples
        keys = sorted(rng.sample(keys, min(sample, len(keys))))
        result.entities[group.entity] = len(keys)
        if not keys:
            continue
        refs = [f"{group.entity}:{f.name}" for f in group.features]
        entity_rows = [dict(zip(group.key, k)) for k in keys]
        entity_df = pd.DataFrame(entity_rows).assign(**{ENTITY_TS: pd.to_datetime([moment] * len(keys), unit="ms", utc=True)})
        with _spark_conf_kept():
            training = training_data(store, entity_df, refs)
        serving = online_features(store, entity_rows, refs)
        for n, key in enumerate(keys):
            want_training = batch_latest[key]
            served = stream_latest.get(key)
            # The guard keeps the newest row; on a tie the stream's (written after materialisation).
            if served is None or served[schema.event_time] < want_training[schema.event_time]:
                served = want_training
            for f in group.features:
                dtype = catalog.feature_dtype(f)
                t = _python(training[f.name].iloc[n], dtype)
                s = _python(serving[f.name][n], dtype)
                result.values += 1
                if same(t, s) and same(t, want_training[f.name]) and same(s, served[f.name]):
                    result.exact += 1
                    continue
                status, why = _classify(t, s, want_training, served, f, group, key, late_events, schema)
                result.explained += status == EXPLAINED
                result.differences.append(ServingDifference(group.entity, group.shown_key(want_training), f.name,
                                                            t, s, status, why))
    return result


def _classify(t, s, want_training, served, feature, group, key, late_events, schema) -> tuple[str, str]:
    if not same(t, want_training[feature.name]):
        return UNEXPLAINED, f"training {t!r} is not the batch reference's {want_training[feature.name]!r}"
    if not same(s, served[feature.name]):
        return UNEXPLAINED, f"serving {s!r} is not the stream/guard reference's {served[feature.name]!r}"
    end = served[schema.event_time]
    late = [e[schema.event_id] for e in late_events
            if group.key_of(e) == key and end - feature.window_ms <= e[schema.event_time] <= end]
    if late:
        return EXPLAINED, f"late event(s) in the served row's window: {', '.join(sorted(late)[:3])}"
    return UNEXPLAINED, "the values differ and no reported late event is in the window"


def _latest(rows: list[dict], group, schema) -> dict[tuple, dict]:
    """Entity (key tuple) -> the row of its latest event (peers share their window features)."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = group.key_of(r)
        cur = out.get(key)
        if cur is None or r[schema.event_time] >= cur[schema.event_time]:
            out[key] = r
    return out


_PYTHON = {FieldType.INT64: int, FieldType.FLOAT64: float, FieldType.BOOL: bool, FieldType.STRING: str}


def _python(value: Any, dtype: FieldType) -> Any:
    """A pandas/numpy/Feast value as the Python type the reference uses (None stays None)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return _PYTHON[dtype](value)
