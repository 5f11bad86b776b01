"""A project's Feast objects, generated from its catalogs (no second list of names).

Per key column: one ``Entity`` named as the column and joined on it (a Feast
entity has one join key), shared by every group and catalog of the project
that keys on it. Per feature group: one ``FeatureView`` named as the group's
entity, over the entities of its key columns (a composite key is several),
reading the Delta table the Spark batch job writes (``runtime.lake``), so a
feature is referenced as ``user:user_txn_count_1h``. Per catalog: one
``FeatureService`` with every feature of its groups, named ``<source>_all``.

``ttl=timedelta(0)`` is Feast's "no bound": the training value at ``t`` is
the row of the entity's latest event at or before ``t``, however old. (Feast
does not enforce ttl on online reads anyway; Redis holds the latest row.)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from runtime.feast_layout import value_type
from runtime.lake import EVENT_DATE, Lake
from transforms import Catalog, FieldType


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


def key_entities(catalogs: list[Catalog]) -> dict:
    """One Feast ``Entity`` per key column of ``catalogs``, by name; a column must have one type in a project,
    since Feast keys its online rows by the entity's value type."""
    from feast import Entity

    typed: dict[str, tuple[FieldType, str]] = {}
    for catalog in catalogs:
        for group in catalog.groups:
            for column in group.key:
                field_type = catalog.schema.get_field(column).type
                seen = typed.setdefault(column, (field_type, catalog.schema.name))
                if seen[0] is not field_type:
                    raise ValueError(f"key column {column!r} is {seen[0].value} in catalog {seen[1]} but "
                                     f"{field_type.value} in catalog {catalog.schema.name}: rename one, or give "
                                     "both one type")
    return {column: Entity(name=column, join_keys=[column], value_type=value_type(field_type))
            for column, (field_type, _) in typed.items()}


def feast_objects(catalogs: list[Catalog], lake_root: str | Path) -> list:
    """Entities, feature views and services of ``catalogs`` over the lake at ``lake_root``, for ``apply``."""
    from feast import FeatureService, FeatureView, Field
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.table_format import DeltaFormat
    from feast.types import from_value_type

    lake = Lake.at(lake_root)
    quiet_experimental_warnings()
    entities = key_entities(catalogs)
    objects: list = list(entities.values())
    for catalog in catalogs:
        views = []
        for group in catalog.groups:
            source = SparkSource(
                name=f"{group.entity}_features",
                path=lake.tables(catalog).features(group.entity),
                table_format=DeltaFormat(),  # file_format="delta" raises in Feast's Spark store
                timestamp_field=catalog.schema.event_time,
                date_partition_column=EVENT_DATE,  # prunes partitions; = UTC date of the event time
            )
            schema = [Field(name=f.name, dtype=from_value_type(value_type(catalog.feature_dtype(f)))) for f in group.features]
            view = FeatureView(name=group.entity, entities=[entities[k] for k in group.key], ttl=timedelta(0),
                               schema=schema, source=source, online=True, description=group.description)
            objects.append(view)
            views.append(view)
        objects.append(FeatureService(name=service_name(catalog), features=views,
                                      description=f"Every feature of the {catalog.schema.name} catalog"))
    return objects
