"""``tandem init DIR``: a new project, copied from the example project shipped with Tandem.

Like ``feast init``: the folder gets ``tandem.yaml``, a ``features/`` package
holding the example transactions catalog as a starting point, a short README,
the generated Feast repository (``feast_repo/``) and ``landing/<source>/``, where
``tandem orchestrate`` looks for new event files. Nothing is overwritten:
the folder must be new or empty.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from runtime.errors import UserError

_SKIP = ("__pycache__", "lake", "out", "data", "feast_repo")


def example_dir() -> Path:
    """The example project's folder (``examples/transactions``, shipped in the package)."""
    import examples.transactions

    return Path(examples.transactions.__file__).resolve().parent


def init(folder: Path, name: str | None = None) -> Path:
    """Create a project in ``folder``; return its ``tandem.yaml``."""
    from feature_repo.repo import write_repo
    from runtime.project import load_project

    folder = folder.expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder}: exists and is not an empty folder; choose a new one")
    name = name or re.sub(r"\W", "_", folder.resolve().name).strip("_") or "features"
    if not name.replace("_", "").isalnum():
        raise UserError(f"--name {name!r}: use letters, digits and _")
    source = example_dir()
    shutil.copytree(source, folder, dirs_exist_ok=True,
                    ignore=lambda _d, names: [n for n in names if n in _SKIP or n.endswith(".pyc")])
    (folder / "__init__.py").unlink()  # it makes the example importable inside Tandem; a project needs none
    config = folder / "tandem.yaml"
    config.write_text(re.sub(r"^project: .*$", f"project: {name}", config.read_text(encoding="utf-8"), count=1,
                             flags=re.M), encoding="utf-8")
    project = load_project(config)
    for source in project.catalogs():  # the copy must load: fail here, not at the first verb
        (folder / "landing" / source).mkdir(parents=True, exist_ok=True)  # where tandem orchestrate looks
    write_repo(project)
    return config
