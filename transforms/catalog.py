"""A feature catalog: the event schema, row functions and feature groups that belong together.

This module holds the checks that make a catalog well-formed; the reference
catalog itself lives in :mod:`transforms.reference_catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transforms.aggregations import Agg, Feature, FeatureGroup
from transforms.rows import RowFunction
from transforms.schema import EventSchema, FieldType


#: The types a feature may have: what the Feast views and both online writers carry today.
FEATURE_TYPES = (FieldType.INT64, FieldType.FLOAT64)


@dataclass(frozen=True)
class Catalog:
    schema: EventSchema
    row_functions: tuple[RowFunction, ...]
    groups: tuple[FeatureGroup, ...]

    def __post_init__(self) -> None:
        columns = dict(self.input_columns())
        seen: set[str] = set(columns)
        for group in self.groups:
            if group.key not in self.schema.entity_keys:
                raise ValueError(f"group {group.entity}: key {group.key!r} is not an entity key of {self.schema.name}")
            for feature in group.features:
                if feature.name in seen:
                    raise ValueError(f"feature name {feature.name!r} is used twice")
                seen.add(feature.name)
                if feature.of is not None and feature.of not in columns:
                    raise ValueError(f"feature {feature.name}: unknown column {feature.of!r}")
                if feature.agg.needs_numeric and columns[feature.of] not in (FieldType.FLOAT64, FieldType.INT64):
                    raise ValueError(f"feature {feature.name}: {feature.agg.value} needs a numeric column")

    def not_yet_supported(self) -> list[str]:
        """What in this catalog the engines, Feast and the online writers cannot run yet, one line each.

        The reference evaluator runs any well-formed catalog; a project refuses
        these when it loads the catalog (``runtime.project``), not in a job.
        """
        problems = []
        for group in self.groups:
            key = self.schema.get_field(group.key)
            if key.type is not FieldType.STRING or not key.required:
                problems.append(f"group {group.entity}: key {group.key!r} is {'optional ' if not key.required else ''}"
                                f"{key.type.value}; keys are required strings for now")
            for feature in group.features:
                if feature.of in self.schema.field_names and not self.schema.get_field(feature.of).required:
                    problems.append(f"feature {feature.name}: column {feature.of!r} is optional; aggregating "
                                    "optional fields is not supported yet")
                dtype = self.feature_dtype(feature)
                if dtype not in FEATURE_TYPES:
                    problems.append(f"feature {feature.name}: {feature.agg.value} of {feature.of!r} is {dtype.value}; "
                                    f"features are {' or '.join(t.value for t in FEATURE_TYPES)} for now (what the "
                                    "Feast views and the online writers carry)")
        return problems

    def input_columns(self) -> list[tuple[str, FieldType]]:
        """Schema fields then row-function outputs: everything a feature can aggregate."""
        cols = [(f.name, f.type) for f in self.schema.fields]
        known = {name for name, _ in cols}
        for fn in self.row_functions:
            missing = [i for i in fn.inputs if i not in known]
            if missing:
                raise ValueError(f"row function {fn.name}: unknown inputs {missing}")
            if fn.name in known:
                raise ValueError(f"row function {fn.name}: name is already a column")
            cols.append((fn.name, fn.dtype))
            known.add(fn.name)
        return cols

    @property
    def features(self) -> tuple[tuple[FeatureGroup, Feature], ...]:
        return tuple((g, f) for g in self.groups for f in g.features)

    def feature_dtype(self, feature: Feature) -> FieldType:
        if feature.agg in (Agg.COUNT, Agg.DISTINCT_COUNT):
            return FieldType.INT64
        if feature.agg is Agg.MEAN:
            return FieldType.FLOAT64
        return dict(self.input_columns())[feature.of]

    def feature_row_columns(self) -> list[tuple[str, FieldType]]:
        """Columns of a feature row, in order: id, keys, time, row functions, features."""
        s = self.schema
        head = [s.event_id, *s.entity_keys, s.event_time]
        cols = [(name, s.get_field(name).type) for name in head]
        cols += [(fn.name, fn.dtype) for fn in self.row_functions]
        cols += [(f.name, self.feature_dtype(f)) for _, f in self.features]
        return cols

    def group(self, entity: str) -> FeatureGroup:
        for g in self.groups:
            if g.entity == entity:
                return g
        raise KeyError(f"no feature group for entity {entity!r}")
