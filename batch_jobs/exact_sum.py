"""Exact float sums as native Spark SQL functions.

Spark's ``SUM`` of doubles rounds in row order (1e16 + 1 + 1 gives 1e16), so a
float sum or mean in a feature uses these instead: the correctly rounded exact
sum of ``transforms.numbers.exact_sum``, whatever the order or partitioning.

- ``exact_sum(double)`` / ``exact_mean(double)``: aggregates (group-by or any
  window frame);
- ``exact_sum_state(double)``: the exact sum's state as bytes, and
  ``exact_window_sum(upto, before)`` / ``exact_window_mean(upto, before)``,
  which subtract two such states exactly and round once. Over two frames that
  start at ``UNBOUNDED PRECEDING`` (which Spark evaluates incrementally) they
  give a sliding window's exact sum in O(1) per row; this is how
  ``batch_jobs/compile_catalog.py`` compiles float sums and means.

All are JVM code (``jvm/udf``, the accumulator shared with Flink) in the
``udf`` jar that ``build_spark`` puts on ``spark.jars``: no Python runs per row.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from runtime.jars import setup_command

REGISTER_CLASS = "dev.tandem.udf.Register"


def register_exact_sum(spark: SparkSession) -> None:
    """Add the functions above to ``spark``'s SQL functions.

    Registration is per session and idempotent. Raises ``RuntimeError`` when the
    udf jar is not on the driver's classpath (py4j would otherwise fail with an
    opaque ``'JavaPackage' object is not callable``).
    """
    jvm = spark.sparkContext._jvm
    if not jvm.org.apache.spark.util.Utils.classIsLoadable(REGISTER_CLASS):
        raise RuntimeError(f"{REGISTER_CLASS} is not on the Spark driver's classpath: build the session "
                           "with batch_jobs.spark_session.build_spark (spark.jars has the udf jar) "
                           f"after {setup_command()}")
    if not spark.catalog.functionExists("exact_window_mean"):  # re-registering logs a WARN per function
        jvm.dev.tandem.udf.Register.spark(spark._jsparkSession)
