"""The one way Tandem builds a SparkSession.

Why each setting is here:

- ``spark.jars`` points at the pinned Delta jars from ``jvm/jars/spark``
  (see ``runtime.jars``); nothing is resolved through Ivy or downloaded at start,
  unlike ``delta.configure_spark_with_delta_pip``. It also carries Tandem's own
  ``jvm/jars/udf`` jar, whose ``exact_sum``/``exact_mean`` SQL functions
  ``batch_jobs.exact_sum.register_exact_sum`` adds to a session.
- ``spark.sql.session.timeZone=UTC`` and ``-Duser.timezone=UTC`` on driver and
  executors: hour-of-day (``is_night``) and date partitions follow the session
  zone, so a machine in another zone would silently shift them.
  The Python process is pinned to UTC too (``TZ=UTC``): PySpark turns naive
  ``datetime`` values into and out of timestamps with the *Python* process's
  local zone (``collect()``, ``createDataFrame``), whatever the session says.
- Arrow on, with no silent fallback: pandas UDFs and ``toPandas`` must use Arrow
  (pyarrow 16.1 with pyspark 4.1), and a failure should be loud.
- ``PYSPARK_PYTHON`` = this interpreter (unless set): Python workers get this
  venv's pyarrow/pandas instead of the first ``python3`` on PATH.
- ``spark.driver.memory`` = ``$TANDEM_SPARK_DRIVER_MEMORY`` or 4g: in local
  mode the driver is the only executor, and ingestion hands the validated
  records to Spark from the driver, so Spark's 1g default dies with
  ``OutOfMemoryError`` at 2 M records (BENCHMARKS.md); 4g held them with a
  3.6 GiB peak, so larger single ingests need more. A cluster sets its own.
- Small shuffle partitions, no UI: local runs on 2-core machines.
- Errors only in the log (``log4j2.properties`` beside this file): Spark's
  warnings ask nothing of a user; ``TANDEM_SPARK_LOG_LEVEL=WARN`` shows them.
- Warehouse and Derby dirs in a temp dir, so jobs never litter the cwd.

Under ``spark-submit`` the driver JVM is already running when Python asks for
a session: ``spark.jars`` and JVM options given from Python come too late
(``build_spark`` then fails fast, naming the fix). Pass them at submit time
with ``submit_args()``, or write them once as a properties file::

    python -m batch_jobs.spark_session > tandem-spark.conf
    spark-submit --properties-file tandem-spark.conf batch_jobs/some_job.py

(``.venv/bin/spark-submit`` finds Spark through ``python3`` on PATH: put
``.venv/bin`` on PATH first, or it fails with ``'NoneType' object has no
attribute 'origin'``.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from runtime.jars import jars

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DEFAULT_DRIVER_MEMORY = "4g"
LOG4J2 = Path(__file__).resolve().with_name("log4j2.properties")  # errors only: see the file

# Settings that may change on an existing session (spark-submit, notebooks).
SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    # Delta rebuilds each table snapshot with 50 tasks by default: ~3 s of
    # scheduling per read of even a tiny table on 2 cores.
    "spark.databricks.delta.snapshotPartitions": "4",
    # A feature catalog makes wide plans; the default (25) logs a "Truncated the string
    # representation of a plan" warning into the user's terminal on every job.
    "spark.sql.debug.maxToStringFields": "500",
}


def _static_conf(scratch: str) -> dict[str, str]:
    """Settings fixed when the JVM/SparkContext starts."""
    java_opts = f"-Duser.timezone=UTC -Dderby.system.home={scratch} -Dlog4j2.configurationFile={LOG4J2}"
    return {
        "spark.jars": ",".join(str(p) for p in [*jars("spark"), *jars("udf")]),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.warehouse.dir": os.path.join(scratch, "warehouse"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.default.parallelism": "4",
        "spark.driver.memory": os.environ.get("TANDEM_SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY),
    }


def submit_conf() -> dict[str, str]:
    """Every Tandem setting, for a ``spark-submit`` that starts the JVM itself."""
    return {**_static_conf(os.path.join(tempfile.gettempdir(), "tandem-spark")), **SQL_CONF}


def submit_args() -> list[str]:
    """``spark-submit`` arguments (a list for ``subprocess``) carrying ``submit_conf()``."""
    return [arg for key, value in submit_conf().items() for arg in ("--conf", f"{key}={value}")]


def build_spark(app_name: str = "tandem", master: str | None = None,
                conf: dict[str, str] | None = None) -> SparkSession:
    """Return the SparkSession (creating it if needed) with Delta, UTC and Arrow.

    ``master`` defaults to ``local[*]`` unless a SparkContext already exists or
    ``spark.master`` was given by ``spark-submit``. ``conf`` adds or overrides
    settings.
    """
    # Python workers must run in this venv (pyarrow, pandas pins). PySpark reads
    # the worker interpreter from this variable, not from spark.pyspark.python,
    # and otherwise runs whatever "python3" is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    _pin_process_utc()
    builder = SparkSession.builder.appName(app_name)
    if master or not _launched_by_spark_submit():
        builder = builder.master(master or "local[*]")
    static = {}
    if SparkSession.getActiveSession() is None:
        # Too late for a JVM that spark-submit started: see submit_args().
        scratch = tempfile.mkdtemp(prefix="tandem-spark-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        static = _static_conf(scratch)
        for key, value in static.items():
            builder = builder.config(key, value)
    for key, value in {**SQL_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    if static and not _launched_by_spark_submit():
        _launch_quiet_gateway({**static, **SQL_CONF, **(conf or {}), "spark.app.name": app_name,
                               "spark.master": master or "local[*]"})
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("TANDEM_SPARK_LOG_LEVEL", "ERROR").upper())
    _check_delta(spark)
    return spark


#: The JVM's own notice for the vector module Spark's launcher always adds: not the user's concern.
_JVM_NOISE = ("WARNING: Using incubator modules",)


def _launch_quiet_gateway(conf: dict[str, str]) -> None:
    """Start the driver JVM as pyspark would (same conf), its stderr passed through but for
    :data:`_JVM_NOISE`; Spark's own lines go by ``log4j2.properties``."""
    import subprocess
    import threading

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    with SparkContext._lock:
        if SparkContext._gateway is not None:
            return
        gateway = launch_gateway(SparkConf(loadDefaults=False).setAll(list(conf.items())),
                                 popen_kwargs={"stderr": subprocess.PIPE})
        SparkContext._gateway, SparkContext._jvm = gateway, gateway.jvm

    def forward(stream) -> None:
        for line in iter(stream.readline, b""):
            if not line.decode(errors="replace").startswith(_JVM_NOISE):
                sys.stderr.write(line.decode(errors="replace"))
                sys.stderr.flush()

    threading.Thread(target=forward, args=(gateway.proc.stderr,), daemon=True, name="spark-stderr").start()


def _pin_process_utc() -> None:
    """Make this Python process's local zone UTC (naive datetimes mean UTC)."""
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()


def _launched_by_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (JVM already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _check_delta(spark: SparkSession) -> None:
    """Fail early, with the fix, when Delta is not on the driver's classpath.

    Under spark-submit, ``spark.jars`` set from Python comes too late for the
    driver: Spark only logs a warning for the extension and fails at the first
    Delta read/write with ``[DATA_SOURCE_NOT_FOUND] ... delta``.
    """
    if not spark.sparkContext._jvm.org.apache.spark.util.Utils.classIsLoadable(DELTA_EXTENSION):
        raise RuntimeError(
            f"{DELTA_EXTENSION} is not on the Spark driver's classpath: under spark-submit pass the "
            "pinned jars, e.g. `python -m batch_jobs.spark_session > tandem-spark.conf` then "
            "`spark-submit --properties-file tandem-spark.conf JOB.py`")


if __name__ == "__main__":  # print a spark-submit --properties-file
    for key, value in submit_conf().items():
        print(f"{key} {value}")
