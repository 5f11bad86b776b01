"""Tandem's Feast definitions, generated from the feature catalog (no second list of names).

One entity and one feature view per feature group of ``REFERENCE_CATALOG``,
over the Delta table the Spark batch job writes at ``$TANDEM_LAKE/features/<entity>``
(layout: ``tandem.lake``). The view's name is the group's entity, so a
feature is referenced as ``user:user_txn_count_1h``.

``ttl=timedelta(0)`` is Feast's "no bound": DESIGN.md's training value at ``t``
is the row of the entity's latest event at or before ``t``, however old. (Feast
does not enforce ttl on online reads anyway; Redis holds the latest row.)
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.table_format import DeltaFormat
from feast.types import Float64, Int64
from feast.value_type import ValueType

from feature_repo.store import EVENT_DATE, EVENT_TIME, SERVICE
from tandem.lake import Lake
from transforms import REFERENCE_CATALOG, FieldType

_unset = [v for v in ("TANDEM_LAKE", "TANDEM_REDIS", "TANDEM_SPARK_JARS", "TANDEM_SPARK_DRIVER_MEMORY")
          if not os.environ.get(v)]
if _unset:  # feature_store.yaml would keep "${VAR}" as literal text and fail obscurely later
    raise RuntimeError(f"{', '.join(_unset)} not set: run "
                       '`eval "$(.venv/bin/python -m feature_repo.store env)"` from the repo root first')

FEAST_TYPES = {FieldType.INT64: Int64, FieldType.FLOAT64: Float64}


def _view(group) -> tuple[Entity, FeatureView]:
    entity = Entity(name=group.entity, join_keys=[group.key], value_type=ValueType.STRING,
                    description=group.description)
    source = SparkSource(
        name=f"{group.entity}_features",
        path=Lake.at().features(group.entity),  # $TANDEM_LAKE, as in the registry path
        table_format=DeltaFormat(),  # file_format="delta" raises in Feast's Spark store
        timestamp_field=EVENT_TIME,
        date_partition_column=EVENT_DATE,  # prunes partitions; = UTC date of event_time
    )
    schema = [Field(name=f.name, dtype=FEAST_TYPES[REFERENCE_CATALOG.feature_dtype(f)]) for f in group.features]
    view = FeatureView(name=group.entity, entities=[entity], ttl=timedelta(0), schema=schema,
                       source=source, online=True, description=group.description)
    return entity, view


_defs = [_view(g) for g in REFERENCE_CATALOG.groups]
ENTITIES = [e for e, _ in _defs]
VIEWS = [v for _, v in _defs]
# `feast apply` collects only module-level attributes, so name each generated object.
globals().update({f"{v.name}_entity": e for e, v in _defs} | {f"{v.name}_features": v for _, v in _defs})

tandem_reference = FeatureService(name=SERVICE, features=VIEWS,
                                  description="Every feature of the reference catalog")
