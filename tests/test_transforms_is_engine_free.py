"""transforms/ is the one library every engine imports; it must never import an engine."""

import ast
import subprocess
import sys
from pathlib import Path

import transforms

FORBIDDEN = ("pyspark", "pyflink", "feast", "redis", "delta", "kafka", "py4j", "batch_jobs", "stream_jobs", "tandem")
# mpmath: pure Python arbitrary precision, for transforms.portable's correctly rounded math.
ALLOWED_THIRD_PARTY = ("numpy", "pandas", "pyarrow", "mpmath")
PACKAGE = Path(transforms.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_under_transforms_imports_an_engine():
    offenders = {
        f"{p.relative_to(PACKAGE.parent)} imports {name}"
        for p in PACKAGE.rglob("*.py")
        for name in imported_modules(p)
        if name in FORBIDDEN
    }
    assert not offenders


def test_transforms_only_uses_stdlib_numpy_pandas_pyarrow_mpmath():
    stdlib = sys.stdlib_module_names
    for p in PACKAGE.rglob("*.py"):
        for name in imported_modules(p):
            assert name in stdlib or name in ALLOWED_THIRD_PARTY or name == "transforms", f"{p.name} imports {name}"


def test_importing_transforms_loads_no_engine():
    code = "import sys, transforms; print(','.join(m for m in sys.modules if m.split('.')[0] in %r))" % (FORBIDDEN,)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_the_check_would_catch_an_engine_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom pyspark.sql import functions as F\n")
    assert "pyspark" in imported_modules(bad)
