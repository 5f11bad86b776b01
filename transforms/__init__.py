"""Tandem's one feature library: schemas, row functions, declarative aggregations, catalogs.

Pure Python (stdlib, numpy, pandas, pyarrow, mpmath). Engines import this package; it
never imports an engine (tests/test_transforms_is_engine_free.py enforces it).
"""

from transforms.aggregations import Agg, Feature, FeatureGroup
from transforms.catalog import Catalog
from transforms.durations import format_duration, parse_duration
from transforms.quality import Completeness, Drift, Freshness, Range, References, Volume
from transforms.rows import RowFunction, row_expression, row_function
from transforms.schema import EventSchema, Field, FieldType, Invalid, InvalidKind

__all__ = [
    "Agg", "Catalog", "Completeness", "Drift", "EventSchema", "Feature", "FeatureGroup", "Field", "FieldType", "Invalid",
    "Freshness", "InvalidKind", "Range", "References", "RowFunction", "Volume", "format_duration",
    "parse_duration", "row_expression", "row_function",
]
