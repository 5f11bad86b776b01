"""The online sink inside the Flink job: a vectorised Python UDF that writes and acknowledges.

PyFlink runs Python only as functions, not as sinks, so the Redis writes
happen in a pandas UDF over the feature rows, feeding a blackhole table. That
placement gives the delivery guarantee Tandem needs: a UDF batch returns only
after ``OnlineWriter.write`` has been acknowledged by Redis, and Flink waits
for every in-flight Python batch before it completes a checkpoint, so no
checkpoint ever covers a row that is not in Redis. After a restart, rows
since the last checkpoint are written again: the server-side timestamp guard
makes that a no-op or the same value.
"""

from __future__ import annotations

import pandas as pd
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from transforms import Catalog


class _OnlineWrite(ScalarFunction):
    def __init__(self, address: str, columns: list[str], catalog: Catalog):
        self.address, self.columns, self.catalog = address, columns, catalog
        self.writer = None

    def is_deterministic(self) -> bool:
        return False  # a side effect: never fold, reorder or deduplicate calls

    def open(self, function_context: FunctionContext) -> None:
        from stream_jobs.online_sink import OnlineWriter

        self.writer = OnlineWriter(self.address, catalog=self.catalog)

    def eval(self, *columns: pd.Series) -> pd.Series:
        # Rows as dicts of Python values (what DataFrame.to_dict("records") gives, at a fifth of its cost).
        rows = [dict(zip(self.columns, values)) for values in zip(*(c.tolist() for c in columns))]
        self.writer.write(rows)
        return pd.Series([1] * len(rows), dtype="int32")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def online_write_sql(t_env: StreamTableEnvironment, features_view: str, address: str, catalog: Catalog) -> str:
    """Register the writing UDF and its blackhole sink; return the INSERT that runs them."""
    columns = [name for name, _ in catalog.feature_row_columns()]
    fn = udf(_OnlineWrite(address, columns, catalog), result_type=DataTypes.INT(), func_type="pandas",
             name="tandem_online_write")
    t_env.create_temporary_system_function("tandem_online_write", fn)
    t_env.execute_sql("CREATE TEMPORARY TABLE tandem_online_acks (acked INT) WITH ('connector' = 'blackhole')")
    args = ", ".join(f"`{c}`" for c in columns)
    return f"INSERT INTO tandem_online_acks SELECT tandem_online_write({args}) FROM {features_view}"
