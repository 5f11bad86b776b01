"""Opening Tandem's Feast store and reading features from it, safely.

The lake layout is ``runtime.lake``'s (written by the Spark batch job,
registered by ``feature_repo.definitions``): one Delta table per feature
group, partitioned by ``event_date``, one row per accepted event: the group
key, the event time, the event id, the group's features. The Feast registry
lives with the tables it describes, at ``<lake>/_feast/registry.db``.

``feature_store.yaml`` (``runtime.feast_layout``) takes machine-specific
values from ``TANDEM_LAKE``, ``TANDEM_REDIS``, ``TANDEM_SPARK_JARS`` and
``TANDEM_SPARK_DRIVER_MEMORY``; :func:`feast_env` computes them (``tandem
env`` prints them for a shell).

**Why training reads go through** :func:`training_data`: Feast 0.67's Spark
point-in-time join (``MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN`` in
``feast/infra/offline_stores/contrib/spark_offline_store/spark.py``) identifies
an entity row, per view, by ``CONCAT(CAST(key1 AS STRING), ...,
CAST(ts AS STRING))`` with no separator, then joins features back on that id
alone. Two entity rows with the same id get each other's values, silently.
With one key per view and a UTC session this cannot happen (the timestamp
text always starts with a 4-digit year and has a fixed shape, so one id cannot
end in two different timestamps), but it does with composite keys
(``("NY", "C12")`` vs ``("NYC", "12")`` at one instant; an int64 key prints in
decimal, so ``("NY", 112)`` vs ``("NY1", 12)`` too) and with a session time
zone that has DST: two instants an hour apart in the autumn fold print the
same local time. So :func:`training_data` refuses a session that is not UTC,
and splits the entity rows into batches in which no two distinct entity rows
share an id in any view (:func:`collision_free_batches`, on ids rebuilt by
:func:`row_ids`), running Feast once per batch: one batch unless ids collide.
The same join returns one row per *feature row* at the latest timestamp, so
peers (same entity, same millisecond) would repeat an entity row;
:func:`training_data` returns exactly one row per input row, in input order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from runtime.feast_layout import feature_store_yaml
from runtime.lake import Lake

ENTITY_TS = "event_timestamp"  # the entity dataframe's timestamp column
_ROW = "_tandem_row"


def feast_env(lake: str | Path, redis: str | None = None) -> dict[str, str]:
    """The variables ``feature_store.yaml`` needs: the arguments, else the environment, else defaults."""
    from batch_jobs.spark_session import submit_conf

    return {
        "TANDEM_LAKE": str(Lake.at(lake).root),
        "TANDEM_REDIS": redis or os.environ.get("TANDEM_REDIS") or "localhost:6379",
        # An explicit list: Spark resolves a glob here for the driver classpath but then fails
        # SparkContext.addJar on the pattern itself ("Jar .../*.jar not found").
        "TANDEM_SPARK_JARS": submit_conf()["spark.jars"],
        "TANDEM_SPARK_DRIVER_MEMORY": submit_conf()["spark.driver.memory"],
    }


def repo_config(project: str, lake: str | Path, redis: str | None = None, repo_path: Path | None = None):
    """The project's ``feature_store.yaml`` read as the feast CLI reads it, with :func:`feast_env`'s values."""
    import yaml
    from feast.repo_config import RepoConfig

    env = feast_env(lake, redis)
    text = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), os.environ.get(m.group(1), m.group(0))),
                  feature_store_yaml(project))
    config = RepoConfig(**yaml.safe_load(text))
    config.repo_path = repo_path or Lake.at(lake).registry.parent
    return config


def open_store(project: str, lake: str | Path, redis: str | None = None):
    """The FeatureStore of a project's lake (applied with ``feast apply``) and a Redis ``host:port``."""
    from feast import FeatureStore

    from feature_repo.definitions import quiet_experimental_warnings

    quiet_experimental_warnings()

    return FeatureStore(config=repo_config(project, lake, redis))


def _spark_ts_text(ts: pd.Series) -> pd.Series:
    """What Spark's ``CAST(ts AS STRING)`` prints in a UTC session: fraction without trailing zeros.
    (numpy's formatting: pandas' strftime took seconds per million rows.)"""
    micros = pd.to_datetime(ts, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = pd.Series(np.datetime_as_string(micros, unit="us"), index=ts.index)  # 2024-05-01T12:00:00.250000
    frac = text.str[20:].str.rstrip("0")
    return text.str[:10] + " " + text.str[11:19] + ("." + frac).where(frac != "", "")


def row_ids(entity_df: pd.DataFrame, keys: list[str], ts_col: str = ENTITY_TS) -> pd.Series:
    """Feast's Spark row id of each entity row for a view joined on ``keys``, in a UTC session: each key's
    text, then the timestamp's, with no separator; null where a key is null (Spark's CONCAT). The one
    place that knows Feast's rule."""
    texts = [_key_text(entity_df[key]) for key in keys]
    return texts[0].str.cat([*texts[1:], _spark_ts_text(entity_df[ts_col])], sep="")


def _key_text(column: pd.Series) -> pd.Series:
    """Spark's ``CAST(key AS STRING)`` of a string or integer key column: the string, or decimal digits."""
    if pd.api.types.is_float_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ValueError(f"entity_df column {column.name!r} is {column.dtype}: keys are strings or integers "
                         "(for an integer key with nulls, use pandas' 'Int64' dtype)")
    return column.astype(str).where(column.notna())


def check_session_time_zone(zone: str) -> None:
    """Raise unless Spark's session time zone is UTC, the one zone in which :func:`row_ids` are Feast's."""
    if zone != "UTC":
        raise ValueError(f"Spark session time zone is {zone!r}, not UTC: Feast's row ids use local timestamp "
                         "text, which repeats in a DST fold and merges entity rows")


def collision_free_batches(entity_df: pd.DataFrame, join_keys: dict[str, list[str]],
                           ts_col: str = ENTITY_TS) -> list[np.ndarray]:
    """Positions of ``entity_df``'s rows, split so that within a batch no two distinct entity rows (keys,
    timestamp) of any view in ``join_keys`` (view -> its join keys) share a Feast row id.

    Greedy: a batch keeps each row that is, in every view, the first (keys, timestamp) of its id among the
    rows left, and defers the others to the next batch (the first row left is always kept). Rows with the
    same keys and timestamp share an id harmlessly (they get the same features), so rows equal in every key
    and the timestamp stay together.
    """
    ids = {view: pd.factorize(row_ids(entity_df, keys, ts_col))[0] for view, keys in join_keys.items()}  # -1: null
    rows = {view: entity_df.groupby(keys + [ts_col], dropna=False, sort=False).ngroup().to_numpy()
            for view, keys in join_keys.items()}
    left, batches = np.arange(len(entity_df)), []
    while len(left):
        keep = np.ones(len(left), dtype=bool)
        for view in join_keys:
            id_, row = ids[view][left], rows[view][left]
            first = np.full(len(ids[view]) + 1, -1)  # id -> its first entity row left (slot -1: null ids)
            _, at = np.unique(id_, return_index=True)
            first[id_[at]] = row[at]
            keep &= (id_ < 0) | (first[id_] == row)
        batches.append(left[keep])
        left = left[~keep]
    return batches


def _resolve(store, features: Any):
    """A service name -> the FeatureService; a FeatureService or a list of refs as is."""
    return store.get_feature_service(features) if isinstance(features, str) else features


def _join_keys(store, features: Any) -> dict[str, list[str]]:
    """Join keys of each feature view that ``features`` reads."""
    if isinstance(features, list):
        views = sorted({ref.split(":")[0] for ref in features})
    else:
        views = [p.name for p in features.feature_view_projections]
    return {v: store.get_feature_view(v).join_keys for v in views}


def training_data(store, entity_df: pd.DataFrame, features: Any) -> pd.DataFrame:
    """Point-in-time training rows: for each entity row, each view's row of the latest event at or
    before ``event_timestamp`` (null when there is none). One output row per input row, same order;
    one Feast run per batch of :func:`collision_free_batches` (one batch unless Feast's row ids collide).

    ``entity_df``: the join keys and ``event_timestamp``. ``features``: a
    feature service name (``feature_repo.definitions.service_name``), a
    ``FeatureService`` or a list of ``"view:feature"`` refs.
    """
    from batch_jobs.spark_session import build_spark

    spark = build_spark()  # Feast reuses the active session: Tandem's Delta/UTC settings
    check_session_time_zone(spark.conf.get("spark.sql.session.timeZone"))
    features = _resolve(store, features)
    rows = entity_df.assign(**{_ROW: range(len(entity_df))})  # a copy: Feast rewrites its input
    out = pd.concat([_exact_frame(store.get_historical_features(entity_df=rows.iloc[batch].copy(),
                                                                features=features).to_spark_df())
                     for batch in collision_free_batches(entity_df, _join_keys(store, features))])
    # Peers (same ms) are several feature rows at the latest time, so Feast repeats the entity
    # row once per peer; the layout promises peers are equal, and we check it.
    out = out.drop_duplicates()
    if out[_ROW].duplicated().any():
        raise ValueError("peers (same entity, same event_time) carry different feature values: "
                         "the feature table breaks its layout")
    # Feast hands the timestamp back without its zone; keep the caller's columns as given.
    features_only = out.sort_values(_ROW).drop(columns=[_ROW, *entity_df.columns]).reset_index(drop=True)
    return pd.concat([entity_df.reset_index(drop=True), features_only], axis=1)


#: Arrow -> pandas dtypes that hold a null without changing the values: Feast's ``to_df`` (Spark's
#: ``toPandas``) makes an int64 column with a null float64, wrong beyond 2**53.
_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def _exact_frame(frame) -> pd.DataFrame:
    """A Spark DataFrame as pandas, through Arrow: int64 as ``Int64``, bool as ``boolean``, exactly."""
    return frame.toArrow().to_pandas(types_mapper=_NULLABLE.get)


def online_features(store, entity_rows: list[dict[str, Any]], features: Any) -> dict[str, list]:
    """The latest feature row per entity from Redis, as ``{column: [values]}``."""
    return store.get_online_features(features=_resolve(store, features), entity_rows=entity_rows).to_dict()
