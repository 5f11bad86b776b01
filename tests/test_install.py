"""Tandem installed from its wheel, outside any checkout: nothing resolves to a folder inside the package.

The wheel is built from this checkout and installed without dependencies
into a fresh virtualenv that borrows the locked environment's packages (a
``.pth`` line after its own site-packages, so the wheel's modules win). Then,
from a folder that is not a checkout, with a fresh home: the jar tree is the
user's data folder, a job without jars says ``tandem setup`` in one line, and
``tandem setup`` fetches the pinned jars (checksummed) and builds Tandem's own
from the sources the wheel ships, after which the jar tree is complete.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from runtime.jars import KINDS, REPO_ROOT
from tests.shell import shell_env

UV = REPO_ROOT / ".tools" / "bin" / "uv"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([str(UV), "build", "--wheel", "-q", "-o", str(root / "dist"), str(REPO_ROOT)], check=True)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = next((root / "dist").glob("tandem-*.whl"))
    subprocess.run([str(UV), "pip", "install", "-q", "--no-deps", "--python", str(python), str(wheel)], check=True)
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "zz_locked_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home = root / "home"
    home.mkdir()
    # A fresh home, but Maven's local repository kept: setup resolves from it (./dev setup filled it).
    maven = f"-Dmaven.repo.local={Path.home() / '.m2' / 'repository'}"
    env = {k: v for k, v in shell_env(HOME=str(home), MAVEN_OPTS=maven).items()
           if k not in ("TANDEM_JARS_DIR", "XDG_DATA_HOME", "PYTHONPATH", "TANDEM_PROJECT")}
    return venv, env, home, root / "elsewhere"


def run(installed, *args, check=True):
    venv, env, _, cwd = installed
    cwd.mkdir(exist_ok=True)
    done = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_the_installed_package_is_used_and_its_jars_live_in_the_users_data_folder(installed):
    _, _, home, _ = installed
    probe = run(installed, "python", "-c", "import runtime.jars as j, runtime.jar_setup as s; "
                "print(j.__file__); print(j.in_checkout()); print(j.jars_dir()); print(s.jvm_sources())").stdout.split()
    module, in_checkout, jars, sources = probe
    assert "site-packages" in module and not module.startswith(str(REPO_ROOT))
    assert in_checkout == "False"
    assert Path(jars) == home / ".local" / "share" / "tandem" / "jars"
    assert Path(sources).parent.name == "runtime" and (Path(sources) / "udf" / "src").is_dir()


def test_without_jars_a_job_says_tandem_setup_then_setup_completes_the_tree(installed):
    _, _, home, _ = installed
    missing = run(installed, "python", "-c", "from runtime.jars import jars; jars('flink')", check=False)
    assert missing.returncode != 0 and "run tandem setup" in missing.stderr

    setup = run(installed, "tandem", "setup")
    jars = home / ".local" / "share" / "tandem" / "jars"
    assert f"jars ready in {jars}" in " ".join(setup.stdout.split())
    for kind in KINDS:
        assert list((jars / kind).glob("*.jar")), kind
    assert (jars / "udf" / "tandem-udf.jar").is_file()
    assert "fetching" not in run(installed, "tandem", "setup").stdout  # done once, checked after
