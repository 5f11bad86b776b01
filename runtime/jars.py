"""Where Tandem's pinned JVM jars live — the only module that knows.

Jobs never download jars at start (no ``spark.jars.packages``, no Ivy): every
jar is pinned in ``jvm/pom.xml``, checksummed in ``jvm/jars.sha256`` and copied
by ``tandem setup`` (``runtime.jar_setup``; ``./dev setup`` runs it) into the
jar tree's ``spark``, ``flink`` and ``kafka`` folders; ``udf`` holds Tandem's
own jar, built from ``jvm/udf``. Engines and test services ask this module for
the files, so a moved or missing jar fails here with one clear message
instead of deep inside a JVM stack trace.

Where the jar tree is: ``$TANDEM_JARS_DIR`` when set (a cluster image, say);
else a source checkout's ``jvm/jars``; else, for an installed Tandem, the
user's data folder (``$XDG_DATA_HOME/tandem/jars``, by default
``~/.local/share/tandem/jars``), never a folder inside the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("spark", "flink", "kafka", "udf")

REPO_ROOT = Path(__file__).resolve().parent.parent


def in_checkout() -> bool:
    """Running from a source checkout (``jvm/pom.xml`` beside the packages), not from an installed wheel."""
    return (REPO_ROOT / "jvm" / "pom.xml").is_file()


def jars_dir() -> Path:
    """Root of the jar tree (see the module docstring for the order)."""
    override = os.environ.get("TANDEM_JARS_DIR")
    if override:
        return Path(override).expanduser().resolve()
    if in_checkout():
        return REPO_ROOT / "jvm" / "jars"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser().resolve() / "tandem" / "jars"


def setup_command() -> str:
    """What fills the jar tree: ``./dev setup`` in a checkout (it runs ``tandem setup`` too), else ``tandem setup``."""
    return "./dev setup" if in_checkout() else "tandem setup"


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
        raise RuntimeError(f"pinned {kind} jars missing: {folder} has no .jar files: run {setup_command()}")
    return found


def classpath(kind: str) -> str:
    """The jars of one kind joined with the platform path separator (for ``java -cp``)."""
    return os.pathsep.join(str(p) for p in jars(kind))


def file_urls(kind: str) -> list[str]:
    """The jars of one kind as ``file://`` URLs (what Flink's ``pipeline.jars`` wants)."""
    return [p.as_uri() for p in jars(kind)]
