"""Fetching the pinned JVM jars and building Tandem's own: what ``tandem setup`` (and ``./dev setup``) run.

The jars are pinned in ``jvm/pom.xml`` and checksummed in ``jvm/jars.sha256``;
Maven copies them into the jar tree (``runtime.jars.jars_dir``), then this
module checks every checksum, so a changed pin or a tampered download fails
here, once, and never at a job's start. Tandem's own jar (``jvm/udf``) is
built from its sources whenever their hash differs from the one recorded at
the last build. Both steps are skipped when already done, so setup is cheap
to run again.

The ``jvm/`` sources ship inside the wheel (``runtime/jvm``), so an installed
Tandem sets itself up like a checkout does.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from runtime.errors import UserError
from runtime.jars import REPO_ROOT, jars_dir

FETCHED = ("spark", "flink", "kafka")
UDF_JAR = "tandem-udf.jar"


def jvm_sources() -> Path:
    """The ``jvm/`` folder: the wheel's copy (``runtime/jvm``) or the checkout's."""
    packaged = Path(__file__).resolve().parent / "jvm"
    return packaged if (packaged / "pom.xml").is_file() else REPO_ROOT / "jvm"


def setup_jars(root: Path | None = None, jvm_tests: bool = False, say: Callable[[str], None] = print) -> Path:
    """Make the jar tree at ``root`` (default ``jars_dir()``) complete; return it.

    ``jvm_tests``: run ``jvm/udf``'s JUnit tests when its jar is built (the
    test suite does; a user's setup need not).
    """
    root = (root or jars_dir()).resolve()
    sources = jvm_sources()
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is required to set up Tandem's jars: install OpenJDK 17 and Maven")
    if not (_checksums_ok(root, sources) and (root / ".complete").is_file()):
        say(f"fetching the pinned JVM jars (jvm/pom.xml) into {root}")
        for kind in FETCHED:
            shutil.rmtree(root / kind, ignore_errors=True)
        (root / ".complete").unlink(missing_ok=True)
        _maven(["-f", str(sources / "pom.xml"), "package", f"-Djars.dir={root}"])
        if not _checksums_ok(root, sources):
            raise UserError(f"the jars in {root} differ from jvm/jars.sha256 (a changed pin? run ./dev lock-jars)")
        (root / ".complete").touch()
    _build_udf(root, sources, jvm_tests, say)
    return root


def _checksums_ok(root: Path, sources: Path) -> bool:
    """Every pinned jar is present under ``root`` with its recorded SHA-256."""
    for line in (sources / "jars.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        jar = root / Path(name).relative_to("jvm/jars")
        if not jar.is_file() or hashlib.sha256(jar.read_bytes()).hexdigest() != digest:
            return False
    return True


def _sources_hash(udf: Path) -> str:
    files = sorted([udf / "pom.xml", *(p for p in (udf / "src").rglob("*") if p.is_file())])
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(udf).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _build_udf(root: Path, sources: Path, jvm_tests: bool, say: Callable[[str], None]) -> None:
    """Build ``jvm/udf`` into ``root/udf`` unless the jar there was built from these very sources."""
    jar, stamp = root / "udf" / UDF_JAR, root / "udf" / ".sources.sha256"
    want = _sources_hash(sources / "udf")
    if jar.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        return
    say(f"building Tandem's udf jar (jvm/udf{', tests included' if jvm_tests else ''}) into {jar}")
    stamp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tandem-udf-") as tmp:
        build = Path(tmp) / "udf"  # the pom writes its jar to ../jars/udf: keep the source tree clean
        shutil.copytree(sources / "udf", build, ignore=shutil.ignore_patterns("target"))
        _maven(["-f", str(build / "pom.xml"), "package", *([] if jvm_tests else ["-DskipTests"])])
        jar.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "jars" / "udf" / UDF_JAR, jar)
    stamp.write_text(want + "\n")


def _maven(args: list[str]) -> None:
    done = subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise UserError(f"mvn {' '.join(args)} failed:\n{tail}")
