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
With one string key per view and a UTC session this cannot happen (the
timestamp text always starts with a 4-digit year and has a fixed shape, so one
id cannot end in two different timestamps), but it does with composite keys
(``("1","23")`` vs ``("12","3")``) and with a session time zone that has DST:
two instants an hour apart in the autumn fold print the same local time.
:func:`check_row_ids` proves the ids of an entity dataframe unique before Feast
runs, and fails loudly otherwise. The same join returns one row per *feature
row* at the latest timestamp, so peers (same entity, same millisecond) would
repeat an entity row; :func:`training_data` returns exactly one row per input
row, in input order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

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
    """What Spark's ``CAST(ts AS STRING)`` prints in a UTC session: fraction without trailing zeros."""
    ts = pd.to_datetime(ts, utc=True)
    frac = ts.dt.strftime("%f").str.rstrip("0")
    return ts.dt.strftime("%Y-%m-%d %H:%M:%S") + frac.where(frac == "", "." + frac)


def check_row_ids(entity_df: pd.DataFrame, join_keys: dict[str, list[str]], ts_col: str = ENTITY_TS,
                  session_time_zone: str = "UTC") -> None:
    """Raise ``ValueError`` if Feast's Spark row ids would merge distinct entity rows.

    ``join_keys`` maps each requested feature view to its join keys. The id is
    rebuilt exactly as Feast builds it (keys then timestamp text, no
    separator) and must identify one (keys, timestamp) per view.
    """
    if session_time_zone != "UTC":
        raise ValueError(f"Spark session time zone is {session_time_zone!r}, not UTC: Feast's row ids use "
                         "local timestamp text, which repeats in a DST fold and merges entity rows")
    ts_text = _spark_ts_text(entity_df[ts_col])
    for view, keys in join_keys.items():
        ids = ts_text.copy()
        for key in reversed(keys):
            ids = entity_df[key].astype(str) + ids
        keyed = entity_df[keys].notna().all(axis=1)  # a null key makes Spark's CONCAT null: no id
        distinct = pd.DataFrame({"id": ids, "ts": ts_text, **{k: entity_df[k] for k in keys}})[keyed]
        distinct = distinct.drop_duplicates()
        clash = distinct[distinct["id"].duplicated(keep=False)]
        if not clash.empty:
            raise ValueError(f"feature view {view!r}: Feast's Spark row id CONCAT({', '.join(keys)}, ts) "
                             f"is the same for different entity rows, which would get each other's "
                             f"features:\n{clash.head(6).to_string(index=False)}")


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
    before ``event_timestamp`` (null when there is none). One output row per input row, same order.

    ``entity_df``: the join keys and ``event_timestamp``. ``features``: a
    feature service name (``feature_repo.definitions.service_name``), a
    ``FeatureService`` or a list of ``"view:feature"`` refs.
    """
    from batch_jobs.spark_session import build_spark

    spark = build_spark()  # Feast reuses the active session: Tandem's Delta/UTC settings
    features = _resolve(store, features)
    check_row_ids(entity_df, _join_keys(store, features),
                  session_time_zone=spark.conf.get("spark.sql.session.timeZone"))
    rows = entity_df.assign(**{_ROW: range(len(entity_df))})  # a copy: Feast rewrites its input
    out = store.get_historical_features(entity_df=rows, features=features).to_df()
    # Peers (same ms) are several feature rows at the latest time, so Feast repeats the entity
    # row once per peer; the layout promises peers are equal, and we check it.
    out = out.drop_duplicates()
    if out[_ROW].duplicated().any():
        raise ValueError("peers (same entity, same event_time) carry different feature values: "
                         "the feature table breaks its layout")
    # Feast hands the timestamp back without its zone; keep the caller's columns as given.
    features_only = out.sort_values(_ROW).drop(columns=[_ROW, *entity_df.columns]).reset_index(drop=True)
    return pd.concat([entity_df.reset_index(drop=True), features_only], axis=1)


def online_features(store, entity_rows: list[dict[str, Any]], features: Any) -> dict[str, list]:
    """The latest feature row per entity from Redis, as ``{column: [values]}``."""
    return store.get_online_features(features=_resolve(store, features), entity_rows=entity_rows).to_dict()
