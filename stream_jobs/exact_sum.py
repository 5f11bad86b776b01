"""``exact_sum`` / ``exact_mean`` as native Flink SQL aggregate functions.

Flink's ``SUM`` of doubles in a bounded OVER window subtracts the rows leaving
the window in doubles and drifts (STACK_NOTES.md: -0.9 for a true 1.1). These
keep an exact accumulator and retract exactly, so they equal
``transforms.numbers.exact_sum`` per row. They are JVM ``AggregateFunction``s
(``jvm/udf``, shared accumulator with Spark) in the ``udf`` jar that
``build_table_env`` puts on ``pipeline.jars``, so no Python runs per row.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

FUNCTIONS = {"exact_sum": "dev.tandem.udf.FlinkExactSum", "exact_mean": "dev.tandem.udf.FlinkExactMean"}


def register_exact_sum(t_env: TableEnvironment) -> None:
    """Add ``exact_sum(double)`` and ``exact_mean(double)`` as temporary system functions of ``t_env``.

    ``t_env`` must have the udf jar on ``pipeline.jars`` (``build_table_env`` does);
    otherwise Flink fails here with a ``ClassNotFoundException``. Registering
    twice replaces the functions.
    """
    for name, java_class in FUNCTIONS.items():
        t_env.drop_temporary_system_function(name)
        t_env.create_java_temporary_system_function(name, java_class)
