"""A feature catalog: the event schema, row functions and feature groups that belong together.

This module holds the checks that make a catalog well-formed, so a catalog
an engine could not run is refused when it is built, naming the feature.
"""

from __future__ import annotations

from dataclasses import dataclass

from transforms.aggregations import Agg, Feature, FeatureGroup
from transforms.budgets import check_default
from transforms.quality import Drift, Freshness, Gate, Range, References, Volume, default_gates
from transforms.rows import RowFunction
from transforms.schema import EventSchema, FieldType


#: The types a feature may have (Feast views, both online writers and both engines carry each).
FEATURE_TYPES = (FieldType.STRING, FieldType.INT64, FieldType.FLOAT64, FieldType.BOOL)
#: The types an entity key part may have.
KEY_TYPES = (FieldType.STRING, FieldType.INT64)
NUMERIC = (FieldType.INT64, FieldType.FLOAT64)


@dataclass(frozen=True)
class Catalog:
    schema: EventSchema
    row_functions: tuple[RowFunction, ...]
    groups: tuple[FeatureGroup, ...]
    gates: tuple[Gate, ...] = ()  # quality gates beside the defaults (transforms.quality)

    def __post_init__(self) -> None:
        columns = dict(self.input_columns())
        seen: set[str] = set(columns)
        entities: set[str] = set()
        for group in self.groups:
            if group.entity in entities:
                raise ValueError(f"group name {group.entity!r} is used twice")
            entities.add(group.entity)
            for part in group.key:
                if part not in self.schema.entity_keys:
                    raise ValueError(f"group {group.entity}: key {part!r} is not an entity key of {self.schema.name}")
                field = self.schema.get_field(part)
                if field.type not in KEY_TYPES or not field.required:
                    raise ValueError(f"group {group.entity}: key {part!r} is {'an optional' if not field.required else 'a'}"
                                     f" {field.type.value} field; keys are required string or int64 fields")
            for feature in group.features:
                if feature.name in seen:
                    raise ValueError(f"feature name {feature.name!r} is used twice")
                seen.add(feature.name)
                if feature.of is not None and feature.of not in columns:
                    raise ValueError(f"feature {feature.name}: unknown column {feature.of!r}")
                if feature.agg.needs_numeric and columns[feature.of] not in NUMERIC:
                    raise ValueError(f"feature {feature.name}: {feature.agg.value} needs a numeric (int64 or float64) "
                                     f"column; {feature.of!r} is {columns[feature.of].value}")
                if feature.of is not None and columns[feature.of] not in FEATURE_TYPES:
                    raise ValueError(f"feature {feature.name}: {feature.agg.value} of {feature.of!r}, a "
                                     f"{columns[feature.of].value} column; features aggregate "
                                     f"{', '.join(t.value for t in FEATURE_TYPES)} columns")
                check_default(feature.name, feature.default, self.feature_dtype(feature))
        object.__setattr__(self, "gates", tuple(self.gates))
        self._check_gates()

    def _check_gates(self) -> None:
        types = {**{f.name: f.type for f in self.schema.fields},
                 **{f.name: self.feature_dtype(f) for _, f in self.features}}
        functions = {fn.name for fn in self.row_functions}
        seen: set[str] = set()
        for gate in self.gates:
            if not isinstance(gate, Gate):
                raise ValueError(f"gates: {gate!r} is not a quality gate (transforms.quality)")
            gate.check()
            if gate.name in seen:
                raise ValueError(f"gate {gate.name} is declared twice")
            seen.add(gate.name)
            if isinstance(gate, (Freshness, Volume)):
                continue
            if gate.column in functions:
                raise ValueError(f"gate {gate.name}: {gate.column!r} is a row function, which no table stores; "
                                 "gate a field (checked on ingest) or a feature of it (on backfill and materialize)")
            if gate.column not in types:
                raise ValueError(f"gate {gate.name}: unknown column {gate.column!r}; gates guard a field or a feature "
                                 "of the catalog")
            if isinstance(gate, (Range, Drift)) and types[gate.column] not in NUMERIC:
                raise ValueError(f"gate {gate.name}: {gate.kind} needs a numeric column; {gate.column!r} is "
                                 f"{types[gate.column].value}")
            if isinstance(gate, References) and gate.column not in self.schema.field_names:
                raise ValueError(f"gate {gate.name}: references checks a field of the events; {gate.column!r} is not one")

    def input_columns(self) -> list[tuple[str, FieldType]]:
        """Schema fields then row-function outputs: everything a feature can aggregate."""
        cols = [(f.name, f.type) for f in self.schema.fields]
        known = {name for name, _ in cols}
        for fn in self.row_functions:
            missing = [i for i in fn.inputs if i not in known]
            if missing:
                raise ValueError(f"row function {fn.name}: unknown inputs {missing}")
            optional = [i for i in fn.inputs if i in self.schema.field_names and not self.schema.get_field(i).required]
            if optional:
                raise ValueError(f"row function {fn.name}: input {optional[0]!r} is optional; row functions read "
                                 "required fields (aggregate the optional field directly: aggregations skip nulls)")
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

    @property
    def quality_gates(self) -> tuple[Gate, ...]:
        """The declared gates and the defaults (``transforms.quality.default_gates``)."""
        columns = [(f.name, False) for f in self.schema.fields] + [(f.name, f.critical) for _, f in self.features]
        return default_gates(columns, self.gates)

    def may_be_null(self, column: str) -> bool:
        """Whether a feature row's ``column`` can hold a null: an optional field, or a feature aggregating one
        (row functions read required fields; count and distinct_count are never null)."""
        fields = self.schema.field_names
        if column in fields:
            return not self.schema.get_field(column).required
        feature = next((f for _, f in self.features if f.name == column), None)
        return (feature is not None and feature.agg not in (Agg.COUNT, Agg.DISTINCT_COUNT)
                and feature.of in fields and not self.schema.get_field(feature.of).required)

    def feature_row_columns(self) -> list[tuple[str, FieldType]]:
        """Columns of a feature row, in order: id, entity keys, time, row functions, features."""
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
