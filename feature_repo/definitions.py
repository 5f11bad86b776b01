"""A project's Feast objects, generated from its catalogs (no second list of names).

Per feature group: one ``Entity`` (named as the group's entity, joined on its
key) and one ``FeatureView`` of the same name over the Delta table the Spark
batch job writes (``runtime.lake``), so a feature is referenced as
``user:user_txn_count_1h``. Per catalog: one ``FeatureService`` with every
feature of its groups, named ``<source>_all``.

``ttl=timedelta(0)`` is Feast's "no bound": the training value at ``t`` is
the row of the entity's latest event at or before ``t``, however old. (Feast
does not enforce ttl on online reads anyway; Redis holds the latest row.)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from runtime.feast_layout import value_type
from runtime.lake import EVENT_DATE, Lake
from transforms import Catalog


def quiet_experimental_warnings() -> None:
    """Silence Feast 0.67's "the spark ... is an experimental feature" RuntimeWarning, raised for every Spark
    object and call: nothing for a user to act on. Feast's Spark store resets the warning filters when it is
    imported (``simplefilter("once", RuntimeWarning)``), so this imports it first."""
    import warnings

    import feast.infra.offline_stores.contrib.spark_offline_store.spark  # noqa: F401

    warnings.filterwarnings("ignore", message="The spark .* is an experimental", category=RuntimeWarning)


def service_name(catalog: Catalog) -> str:
    """The feature service holding every feature of ``catalog``."""
    return f"{catalog.schema.name}_all"


def feast_objects(catalogs: list[Catalog], lake_root: str | Path) -> list:
    """Entities, feature views and services of ``catalogs`` over the lake at ``lake_root``, for ``apply``."""
    from feast import Entity, FeatureService, FeatureView, Field
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.table_format import DeltaFormat
    from feast.types import from_value_type
    from feast.value_type import ValueType

    lake = Lake.at(lake_root)
    quiet_experimental_warnings()
    objects: list = []
    for catalog in catalogs:
        views = []
        for group in catalog.groups:
            entity = Entity(name=group.entity, join_keys=[group.key], value_type=ValueType.STRING,
                            description=group.description)
            source = SparkSource(
                name=f"{group.entity}_features",
                path=lake.tables(catalog).features(group.entity),
                table_format=DeltaFormat(),  # file_format="delta" raises in Feast's Spark store
                timestamp_field=catalog.schema.event_time,
                date_partition_column=EVENT_DATE,  # prunes partitions; = UTC date of the event time
            )
            schema = [Field(name=f.name, dtype=from_value_type(value_type(catalog.feature_dtype(f)))) for f in group.features]
            view = FeatureView(name=group.entity, entities=[entity], ttl=timedelta(0), schema=schema,
                               source=source, online=True, description=group.description)
            objects += [entity, view]
            views.append(view)
        objects.append(FeatureService(name=service_name(catalog), features=views,
                                      description=f"Every feature of the {catalog.schema.name} catalog"))
    return objects
