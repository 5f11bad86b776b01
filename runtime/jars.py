"""Where Tandem's pinned JVM jars live — the only module that knows.

Jobs never download jars at start (no ``spark.jars.packages``, no Ivy): every
jar is pinned in ``jvm/pom.xml``, checksummed in ``jvm/jars.sha256`` and copied
by ``./dev setup`` into ``jvm/jars/{spark,flink,kafka}``. ``jvm/jars/udf`` holds
Tandem's own jar (``exact_sum`` for both engines), built by ``./dev setup``
from ``jvm/udf`` (so not checksummed: it is built, not fetched). Engines and test
services ask this module for the files, so a moved or missing jar fails here
with one clear message instead of deep inside a JVM stack trace.

Set ``TANDEM_JARS_DIR`` to use a jar tree elsewhere (same ``spark``/``flink``/
``kafka``/``udf`` subfolders), e.g. on a cluster image where the repo is not checked out.
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("spark", "flink", "kafka", "udf")

REPO_ROOT = Path(__file__).resolve().parent.parent


def jars_dir() -> Path:
    """Root of the jar tree: ``$TANDEM_JARS_DIR`` or ``<repo>/jvm/jars``."""
    override = os.environ.get("TANDEM_JARS_DIR")
    return Path(override).expanduser().resolve() if override else REPO_ROOT / "jvm" / "jars"


def jars(kind: str) -> list[Path]:
    """The jars of one kind (``spark``, ``flink``, ``kafka`` or ``udf``), sorted.

    Raises ``RuntimeError`` when the folder is missing or empty, because a
    half-configured engine would otherwise start and fail much later with a
    ``ClassNotFoundException``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown jar kind {kind!r}; expected one of {KINDS}")
    folder = jars_dir() / kind
    found = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    if not found:
        raise RuntimeError(f"pinned {kind} jars missing: {folder} has no .jar files: run ./dev setup")
    return found


def classpath(kind: str) -> str:
    """The jars of one kind joined with the platform path separator (for ``java -cp``)."""
    return os.pathsep.join(str(p) for p in jars(kind))


def file_urls(kind: str) -> list[str]:
    """The jars of one kind as ``file://`` URLs (what Flink's ``pipeline.jars`` wants)."""
    return [p.as_uri() for p in jars(kind)]
