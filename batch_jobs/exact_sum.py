"""``exact_sum`` / ``exact_mean`` as native Spark SQL aggregate functions.

Spark's ``SUM`` of doubles rounds in row order (1e16 + 1 + 1 gives 1e16), so a
float sum or mean in a feature uses these instead: the correctly rounded exact
sum of ``transforms.numbers.exact_sum``, whatever the order or partitioning,
also as window functions over RANGE frames. They are a JVM ``Aggregator``
(``jvm/udf``, shared accumulator with Flink) in the ``udf`` jar that
``build_spark`` puts on ``spark.jars``, so no Python runs per row.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

REGISTER_CLASS = "dev.tandem.udf.Register"


def register_exact_sum(spark: SparkSession) -> None:
    """Add ``exact_sum(double)`` and ``exact_mean(double)`` to ``spark``'s SQL functions.

    Registration is per session and idempotent. Raises ``RuntimeError`` when the
    udf jar is not on the driver's classpath (py4j would otherwise fail with an
    opaque ``'JavaPackage' object is not callable``).
    """
    jvm = spark.sparkContext._jvm
    if not jvm.org.apache.spark.util.Utils.classIsLoadable(REGISTER_CLASS):
        raise RuntimeError(f"{REGISTER_CLASS} is not on the Spark driver's classpath: build the session "
                           "with batch_jobs.spark_session.build_spark (spark.jars has jvm/jars/udf) "
                           "after ./dev setup")
    jvm.dev.tandem.udf.Register.spark(spark._jsparkSession)
