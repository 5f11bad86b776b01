"""A Tandem project: a folder with a ``tandem.yaml`` and the user's own catalogs.

Every verb works on a project, found from ``--project DIR`` or else the
nearest ``tandem.yaml`` at or above the current directory. ``tandem.yaml``::

    project: shop                 # a name: Feast's project and the Redis key suffix
    catalogs:                     # MODULE_OR_FILE[:ATTR], one event source each
      - features.transactions
    lake: lake                    # lake root                    ($TANDEM_LAKE overrides)
    online_store: localhost:6379  # Redis host:port[,db=N,ssl=true,password=${VAR}]  ($TANDEM_REDIS overrides)
    kafka: localhost:9092         # brokers                       ($TANDEM_KAFKA overrides)
    kafka_properties:             # Kafka client properties of every Tandem client (credentials, TLS)
      security.protocol: SASL_SSL
      sasl.mechanism: SCRAM-SHA-512
      sasl.jaas.config: org.apache.kafka.common.security.scram.ScramLoginModule required
        username="tandem" password="${KAFKA_PASSWORD}";
      ssl.truststore.location: /etc/kafka/truststore.jks
    defaults:
      allowed_lateness: 5s        # the stream's allowed lateness
      max_future: 1h              # an event time further ahead of the clock is invalid
      state_backend: hashmap      # the stream's state: hashmap (JVM heap) or rocksdb (local disk)
    pipelines: ...                # owners and SLAs; alerts: ... channels; metrics: ... output;
                                  # orchestration: ... schedules (``runtime.operations`` says how)
    serving: ...                  # tandem serve: token, max_entities, timeout, breaker, degraded_refresh
                                  # (``runtime.serving_settings``)

``${VAR}`` in ``online_store``, ``kafka`` and ``kafka_properties`` is read from the environment
when the project loads (an unset one is an error), so a password lives in the
environment, not in the file; ``tandem env`` prints the text as written, for
the shell to expand. Paths are relative to ``tandem.yaml``. Only ``project`` and ``catalogs`` are
required. An unknown key, a wrong type or a catalog that does not load is one
:class:`~runtime.errors.UserError` naming the file and the fix.

Catalogs are imported with the project folder first on ``sys.path`` (so
``features.transactions`` is the project's own ``features/`` package), and
their modules are pickled by value (``cloudpickle.register_pickle_by_value``):
the engines' Python workers run the user's row functions without the project
folder on their path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import UserError, one_line
from runtime.operations import Operations, parse_operations
from runtime.serving_settings import ServingSettings, parse_serving
from transforms import Catalog, parse_duration

CONFIG = "tandem.yaml"
ENV_PROJECT = "TANDEM_PROJECT"  # a project folder, for processes started elsewhere (feast, spark-submit)
ENV_OVERRIDES = {"lake": "TANDEM_LAKE", "online_store": "TANDEM_REDIS", "kafka": "TANDEM_KAFKA"}
_KEYS = {"project", "catalogs", "lake", "online_store", "kafka", "kafka_properties", "defaults", "pipelines",
         "alerts", "metrics", "orchestration", "serving"}
# Kafka properties Tandem sets itself, per client: a project cannot override them
_KAFKA_OWN = {"bootstrap.servers", "group.id", "isolation.level", "transactional.id", "key.deserializer",
              "value.deserializer", "key.serializer", "value.serializer", "enable.auto.commit", "auto.offset.reset"}
_DEFAULT_KEYS = {"allowed_lateness", "max_future", "state_backend"}
STATE_BACKENDS = ("hashmap", "rocksdb")  # Flink's state.backend.type values Tandem runs on


@dataclass(frozen=True)
class Project:
    root: Path  # the folder holding tandem.yaml
    name: str
    catalog_specs: tuple[str, ...]
    lake_root: Path
    online_store: str | None  # may hold a password: shown only through runtime.secrets.redact_address
    kafka: str | None
    # Kafka client properties (credentials, TLS) for every Kafka client of the stream job; secrets expanded
    kafka_properties: dict[str, str] = field(default_factory=dict, repr=False)
    allowed_lateness_ms: int = 5_000
    max_future_ms: int = 3_600_000
    state_backend: str = "hashmap"  # where the stream job keeps its state (STATE_BACKENDS)
    operations: Operations | None = None  # owners, SLAs, alert channels, metrics output (runtime.operations)
    serving: ServingSettings = ServingSettings()  # tandem serve (runtime.serving_settings)
    online_store_as_written: str | None = None  # ${VARS} unexpanded (tandem env prints this, not the secret)
    _catalogs: dict[str, Catalog] = field(default_factory=dict, repr=False, compare=False)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    def catalogs(self) -> dict[str, Catalog]:
        """The project's catalogs by source name (the schema's name), loaded once, checked together."""
        if not self._catalogs:
            loaded: dict[str, Catalog] = {}
            groups: dict[str, str] = {}
            for spec in self.catalog_specs:
                catalog = load_catalog(spec, self.root, where=f"{self.config_path}: catalogs")
                source = catalog.schema.name
                if source in loaded:
                    raise UserError(f"{self.config_path}: two catalogs read the event source {source!r}; "
                                    "give each schema its own name")
                for group in catalog.groups:
                    if group.entity in groups:
                        raise UserError(f"{self.config_path}: feature group {group.entity!r} is in catalogs "
                                        f"{groups[group.entity]!r} and {source!r}; group names are unique per project")
                    groups[group.entity] = source
                loaded[source] = catalog
            self._catalogs.update(loaded)
        return dict(self._catalogs)

    def catalog(self, choice: str | None = None) -> Catalog:
        """The one catalog a verb runs: ``choice`` (a source name of the project, or MODULE_OR_FILE[:ATTR]),
        else the project's only catalog."""
        catalogs = self.catalogs()
        if choice is None:
            if len(catalogs) == 1:
                return next(iter(catalogs.values()))
            raise UserError(f"{self.config_path} has {len(catalogs)} catalogs ({', '.join(catalogs)}): "
                            "choose one with --catalog NAME")
        if choice in catalogs:
            return catalogs[choice]
        if _looks_like_spec(choice):
            return load_catalog(choice, Path.cwd(), where="--catalog")
        raise UserError(f"--catalog {choice}: names no catalog of {self.config_path} (its catalogs: "
                        f"{', '.join(catalogs) or 'none'}) and no importable module or .py file")


def find_project(explicit: str | Path | None = None, start: Path | None = None) -> Project:
    """The project of ``--project DIR``, else ``$TANDEM_PROJECT``, else the nearest tandem.yaml upwards."""
    if explicit is None and os.environ.get(ENV_PROJECT):
        explicit = os.environ[ENV_PROJECT]
    if explicit is not None:
        folder = Path(explicit).expanduser()
        if folder.is_file() and folder.name == CONFIG:
            folder = folder.parent
        if not (folder / CONFIG).is_file():
            raise UserError(f"{folder}: no {CONFIG} here; create a project with `tandem init {folder}`")
        return load_project(folder / CONFIG)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG).is_file():
            return load_project(folder / CONFIG)
    raise UserError(f"no {CONFIG} in {here} or above: run `tandem init DIR` to create a project, "
                    "or pass --project DIR")


def load_project(path: Path) -> Project:
    """Read and check ``tandem.yaml`` (every problem is one line naming the file)."""
    import yaml

    path = path.resolve()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of settings (project, catalogs, ...)")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_KEYS))}")
    name = doc.get("project")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise UserError(f"{path}: 'project' must be a name of letters, digits and _ (got {name!r})")
    specs = doc.get("catalogs")
    if not isinstance(specs, list) or not specs or not all(isinstance(s, str) and s for s in specs):
        raise UserError(f"{path}: 'catalogs' must list one or more MODULE_OR_FILE[:ATTR], "
                        "e.g. features.transactions")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - _DEFAULT_KEYS:
        bad = sorted(set(defaults) - _DEFAULT_KEYS) if isinstance(defaults, dict) else defaults
        raise UserError(f"{path}: defaults: unknown {bad!r}; the keys are {', '.join(sorted(_DEFAULT_KEYS))}")
    root = path.parent
    settings = {key: _setting(path, doc, key) for key in ENV_OVERRIDES}
    written = None if os.environ.get(ENV_OVERRIDES["online_store"]) else doc.get("online_store")
    lake = Path(settings["lake"] or "lake").expanduser()
    lake_root = (lake if lake.is_absolute() else root / lake).resolve()
    return Project(
        root=root, name=name, catalog_specs=tuple(specs), lake_root=lake_root,
        operations=parse_operations(path, doc, lake_root),
        serving=parse_serving(path, doc),
        online_store=settings["online_store"], kafka=settings["kafka"], online_store_as_written=written,
        kafka_properties=_kafka_properties(path, doc.get("kafka_properties")),
        allowed_lateness_ms=_duration(path, defaults, "allowed_lateness", "5s"),
        max_future_ms=_duration(path, defaults, "max_future", "1h"),
        state_backend=checked_state_backend(defaults.get("state_backend", "hashmap"),
                                            f"{path}: defaults: state_backend"),
    )


def checked_state_backend(value: Any, where: str) -> str:
    """``value`` if it is one of :data:`STATE_BACKENDS`, else a UserError naming ``where`` it was given."""
    if value not in STATE_BACKENDS:
        raise UserError(f"{where} must be one of {', '.join(STATE_BACKENDS)} (got {value!r})")
    return value


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EXPANDED = ("online_store", "kafka")  # where a secret may be: a password in the address


def _setting(path: Path, doc: dict, key: str) -> str | None:
    value = os.environ.get(ENV_OVERRIDES[key])
    if value:
        return value
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise UserError(f"{path}: {key!r} must be a string (got {type(value).__name__})")
    if value is not None and key in _EXPANDED:
        value = _expand(path, key, value)
    return value


def _expand(path: Path, key: str, value: str) -> str:
    """``value`` with each ``${VAR}`` read from the environment; an unset one is an error naming it."""
    def read(m: re.Match) -> str:
        if m.group(1) not in os.environ:
            raise UserError(f"{path}: {key} refers to ${{{m.group(1)}}}, which is not set: export it")
        return os.environ[m.group(1)]
    return _REFERENCE.sub(read, value)


def _kafka_properties(path: Path, value: Any) -> dict[str, str]:
    """``kafka_properties``: Kafka client property -> text (a number or a boolean as Kafka spells it)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{path}: kafka_properties must map Kafka client properties to values, "
                        f"e.g. security.protocol: SASL_SSL (got {type(value).__name__})")
    out = {}
    for key, v in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9]+([.\-][a-z0-9]+)*", key):
            raise UserError(f"{path}: kafka_properties: {key!r} is not a Kafka property name (e.g. sasl.mechanism)")
        if key in _KAFKA_OWN:
            raise UserError(f"{path}: kafka_properties: {key} is set by Tandem for each client; remove it "
                            "(brokers go in --source kafka:BROKERS/TOPIC)")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise UserError(f"{path}: kafka_properties: {key} must be a string or a number "
                            f"(got {type(v).__name__})")
        out[key] = _expand(path, f"kafka_properties.{key}", str(v))
    return out


def _duration(path: Path, defaults: dict, key: str, default: str) -> int:
    try:
        return parse_duration(str(defaults.get(key, default)))
    except ValueError as e:
        raise UserError(f"{path}: defaults.{key}: {e}") from None


# --- catalogs -----------------------------------------------------------------------------------


def _looks_like_spec(spec: str) -> bool:
    target = spec.partition(":")[0]
    if target.endswith(".py") or "/" in target:
        return True
    try:
        return importlib.util.find_spec(target.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def load_catalog(spec: str, base: Path, where: str = "--catalog") -> Catalog:
    """The catalog named by ``MODULE_OR_FILE[:ATTR]``; a file path is relative to ``base``, and a dotted
    module is imported with ``base`` first on ``sys.path``.

    Without ``:ATTR`` the module must hold one Catalog (a ``CATALOG``
    attribute wins). Every failure is a :class:`UserError` naming ``spec``.
    """
    target, _, attribute = spec.partition(":")
    try:
        module = _import(target, base, where)
    except UserError:
        raise
    except Exception as e:  # a user's module can raise anything while importing: one line, not a traceback
        raise UserError(f"{where}: {spec}: importing it failed: {type(e).__name__}: {one_line(e)}") from None
    if attribute:
        catalog = getattr(module, attribute, None)
        if not isinstance(catalog, Catalog):
            raise UserError(f"{where}: {spec}: {attribute!r} is not a Catalog in {target} "
                            f"(it is {type(catalog).__name__})")
    elif isinstance(getattr(module, "CATALOG", None), Catalog):
        catalog = module.CATALOG
    else:
        found = {name: value for name, value in vars(module).items() if isinstance(value, Catalog)}
        if len(found) != 1:
            raise UserError(f"{where}: {spec}: expected one Catalog in {target} (found: "
                            f"{', '.join(sorted(found)) or 'none'}); name it as {target}:ATTRIBUTE")
        catalog = next(iter(found.values()))
    return catalog


def _import(target: str, base: Path, where: str):
    if target.endswith(".py") or "/" in target:
        path = Path(target) if Path(target).is_absolute() else base / target
        if not path.is_file():
            raise UserError(f"{where}: {target}: no such file (relative to {base})")
        name = f"tandem_catalog_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _pickle_by_value(module)
        return module
    top = target.split(".")[0]
    _forget_other_copies(top, base)
    sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and (target == e.name or target.startswith(e.name + ".")):
            raise UserError(f"{where}: {target}: no module named {e.name!r} in {base} or the environment "
                            "(a dotted module, or a path to a .py file)") from None
        raise
    finally:
        sys.path.remove(str(base))
    if _under(getattr(sys.modules[top], "__file__", None), base / top):
        _pickle_by_value(sys.modules[top])  # the project's own package: workers cannot import it
    return module


def _under(file: str | None, base: Path) -> bool:
    return file is not None and Path(file).resolve().is_relative_to(base.resolve())


def _forget_other_copies(top: str, base: Path) -> None:
    """Two projects may both call their package ``features``: drop another project's copy first."""
    loaded = sys.modules.get(top)
    file = getattr(loaded, "__file__", None)
    ours = _under(file, base / top) or (file is not None and Path(file).resolve() == (base / f"{top}.py").resolve())
    if loaded is None or file is None or ours or not (base / top).exists():
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _pickle_by_value(module: Any) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:  # Spark ships its own copy of cloudpickle
        from pyspark import cloudpickle as spark_cloudpickle

        spark_cloudpickle.register_pickle_by_value(module)
    except ImportError:  # pragma: no cover - pyspark is a dependency
        pass
