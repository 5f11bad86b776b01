"""The one way Tandem builds a PyFlink environment.

Why each setting is here:

- ``pipeline.jars`` = the pinned Kafka SQL connector (``jvm/jars/flink``, see
  ``runtime.jars``) and Tandem's own ``jvm/jars/udf`` jar (the validator,
  the window operator, the online sink) as ``file://`` URLs: nothing is
  fetched at job start.
- ``table.local-time-zone=UTC`` and ``-Duser.timezone=UTC`` for the JVM:
  ``TIMESTAMP_LTZ`` hours and dates follow the session zone, so a machine in
  another zone would silently shift ``is_night``. The Python process is
  pinned to UTC too (``TZ=UTC``): ``TableResult.collect()`` turns ``TIMESTAMP``
  values into naive ``datetime`` through the *Python* local zone (a machine in
  New York reads 2024-01-01 00:00 back as 2023-12-31 19:00; ``to_pandas()`` is
  not affected).
- ``python.executable`` / ``python.client.executable`` = this interpreter, so
  Python UDF workers run in the same venv with the same pins.
- :data:`LATENCY_OPTIONS`, for freshness: by Flink's defaults a record waits
  up to 1 s in each Python bundle (validation, row functions), up to 100 ms
  in each network buffer, and the event-time windows are released by
  watermarks emitted every 200 ms. At 2,000 events/s from Kafka these made
  p99 freshness 2.6 s; with them (and the JVM online sink), 0.69 s on
  uniform keys (``benchmarks/stream_features.py``, BENCHMARKS.md).
- ``pipeline.object-reuse=true``: by default Flink copies every record
  between chained operators, in case one keeps a reference to its input.
  Tandem's jobs are SQL operators (which copy what they keep), Python UDFs
  (which serialize) and Tandem's JVM window operator and online sink (which
  convert or encode each row before keeping anything). 500k-event stream
  benchmark: A 34 s with it vs 38 s without, median of 2 rounds each.
- :func:`_quiet_beam_teardown`: in the local (loopback) mode Beam's data-plane
  reader thread sometimes dies with a ``CANCELLED: Multiplexer hanging up``
  traceback when a job ends; that one exception is not printed.
- :func:`_hide_worker_environment`: Beam's ``DefaultJobBundleFactory`` logs
  the Python workers' whole environment (every variable of this process, a
  ``${VAR}`` password of tandem.yaml among them) at INFO and WARN when a job
  ends, into Flink's log file; only its errors are logged.
- ``worker_processes`` (the stream job's launchers: ``tandem stream``,
  ``python -m stream_jobs.job``): on a local mini-cluster PyFlink runs the
  row functions' Python worker inside this process (its loopback mode), and
  there the process grew 35-60 MiB a minute at 2,000 events/s; with the
  worker in a process of its own (PyFlink's ``process`` mode) the driver grew
  5.6 MiB/min and the worker 1.5 (BENCHMARKS.md, "Stream load"). A job start
  costs the same either way. ``_python_worker_execution_mode`` in the
  environment, PyFlink's own switch, still wins.

With no cluster configured, PyFlink runs jobs on a local mini-cluster inside
its gateway JVM; ``flink run`` supplies the cluster instead. One gateway JVM
serves the whole Python process, so building more environments is cheap.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from pyflink.common import Configuration
from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, StreamTableEnvironment

from runtime.jars import file_urls

_UTC_JVM_ARG = "-Duser.timezone=UTC"


def _pin_utc() -> None:
    """Pin the Python process (now) and the gateway JVM (when it starts) to UTC."""
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()
    _pin_jvm_timezone()


def _pin_jvm_timezone() -> None:
    """Ask PyFlink's gateway launcher for a UTC JVM (no effect once it runs).

    ``JVM_ARGS`` is added to the gateway's command line; ``FLINK_ENV_JAVA_OPTS``
    would instead *replace* the ``--add-opens`` flags Flink needs on JDK 17.
    """
    current = os.environ.get("JVM_ARGS", "")
    if _UTC_JVM_ARG not in current.split():
        os.environ["JVM_ARGS"] = f"{current} {_UTC_JVM_ARG}".strip()


def _pipeline_jars() -> str:
    """The pinned connector jars and Tandem's udf jar, as Flink's ``;``-separated URLs.

    Jars the launcher already listed are kept, not replaced: ``flink run -py``
    lists PyFlink's ``flink-python`` jar there, without which the cluster cannot
    load the Python operators (``ClassNotFoundException: PythonScalarFunctionOperator``).
    """
    ours = [*file_urls("flink"), *file_urls("udf")]
    return ";".join([*(j for j in _launcher_jars() if j not in ours), *ours])


def _launcher_jars() -> list[str]:
    """``pipeline.jars`` of the context environment (empty on the plain local mini-cluster)."""
    jvm = get_gateway().jvm
    config = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment.getExecutionEnvironment() \
        .getConfiguration()
    jars = config.getOptional(jvm.org.apache.flink.configuration.PipelineOptions.JARS)
    return list(jars.get()) if jars.isPresent() else []


def context_settings() -> dict[str, str]:
    """The context environment's configuration: what ``flink run`` set up (``execution.target``, the cluster's
    ``rest.address`` and ``rest.port``); on the plain local mini-cluster, little or nothing."""
    jvm = get_gateway().jvm
    config = jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment.getExecutionEnvironment() \
        .getConfiguration()
    return {str(k): str(v) for k, v in config.toMap().items()}


#: Shorter waits than Flink's defaults (1 s, 100 ms, 200 ms): see the module docstring.
LATENCY_OPTIONS = {
    "python.fn-execution.bundle.time": "50",  # ms a Python bundle may wait to fill
    "execution.buffer-timeout.interval": "10 ms",
    "pipeline.auto-watermark-interval": "50 ms",
}


def flink_config(parallelism: int = 1) -> Configuration:
    """The Configuration shared by every Tandem Flink job."""
    config = Configuration()
    for key, value in LATENCY_OPTIONS.items():
        config.set_string(key, value)
    config.set_string("pipeline.jars", _pipeline_jars())
    config.set_string("parallelism.default", str(parallelism))
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("table.local-time-zone", "UTC")
    config.set_string("pipeline.object-reuse", "true")
    return config


def _quiet_beam_teardown() -> None:
    """Drop only Beam's "Multiplexer hanging up" cancellation of its reader thread; everything else prints."""
    previous = threading.excepthook
    if getattr(previous, "tandem_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        thread = getattr(args.thread, "name", "")
        code = getattr(args.exc_value, "code", None)
        details = getattr(args.exc_value, "details", None)
        if (thread == "read_grpc_client_inputs" and callable(code) and callable(details)
                and getattr(code(), "name", "") == "CANCELLED" and "Multiplexer hanging up" in str(details())):
            return
        previous(args)

    hook.tandem_quiet = True
    threading.excepthook = hook


_ENVIRONMENT_LOGGER = "org.apache.beam.runners.fnexecution.control.DefaultJobBundleFactory"


def _hide_worker_environment() -> None:
    """Log only errors of the Beam class that prints the Python workers' environment (secrets in it)."""
    jvm = get_gateway().jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        _ENVIRONMENT_LOGGER, jvm.org.apache.logging.log4j.Level.ERROR)


def build_stream_env(parallelism: int = 1, streaming: bool = True) -> StreamExecutionEnvironment:
    """A StreamExecutionEnvironment (local mini-cluster unless ``flink run`` gives one)."""
    _pin_utc()
    _quiet_beam_teardown()
    _hide_worker_environment()
    env = StreamExecutionEnvironment.get_execution_environment(flink_config(parallelism))
    env.set_parallelism(parallelism)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING if streaming else RuntimeExecutionMode.BATCH)
    return env


def build_table_env(parallelism: int = 1, streaming: bool = True,
                    worker_processes: bool = False) -> StreamTableEnvironment:
    """A StreamTableEnvironment over ``build_stream_env``, in streaming or batch mode; ``worker_processes``: Python
    UDF workers in processes of their own, not in this one (for long-running jobs: see the module docstring)."""
    if worker_processes:
        os.environ.setdefault("_python_worker_execution_mode", "process")  # read when the environment opens
    env = build_stream_env(parallelism, streaming)
    settings = (EnvironmentSettings.new_instance()
                .with_configuration(flink_config(parallelism)))
    settings = (settings.in_streaming_mode() if streaming else settings.in_batch_mode()).build()
    t_env = StreamTableEnvironment.create(env, environment_settings=settings)
    # Set again on the table config: it is what SQL planning reads (and setting
    # pipeline.jars there also puts the jars on PyFlink's context class loader,
    # which create_java_temporary_system_function loads UDF classes from).
    t_env.get_config().set("table.local-time-zone", "UTC")
    t_env.get_config().set("pipeline.jars", _pipeline_jars())
    return t_env
