"""Small builders for hand-written test events (no logic under test lives here)."""

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a midnight: hour 0 (night)
NOON = T0 + 12 * 3_600_000
MIN = 60_000
HOUR = 3_600_000


def tx(tid, user="u1", t=NOON, amount=1.0, merchant="m1", currency="USD", **extra):
    rec = {"transaction_id": tid, "user_id": user, "merchant_id": merchant, "amount": amount,
           "currency": currency, "event_time": t}
    rec.update(extra)
    return rec


def by_id(rows):
    return {r["transaction_id"]: r for r in rows}


#: The Feast project (and Redis key suffix) the tests' stores and writers share.
TEST_PROJECT = "tandem_tests"


def stream_spec(source, out_dir, *args, **kw):
    """A stream job spec for the example catalog, unless the test names another."""
    from examples.transactions.features.transactions import CATALOG
    from stream_jobs.job import StreamJobSpec

    return StreamJobSpec(source, out_dir, *args, **{"catalog": CATALOG, "project": TEST_PROJECT, **kw})


def online_writer(address, **kw):
    """An online writer for the example catalog in the tests' Feast project, unless the test says otherwise."""
    from examples.transactions.features.transactions import CATALOG
    from stream_jobs.online_sink import OnlineWriter

    return OnlineWriter(address, **{"catalog": CATALOG, "project": TEST_PROJECT, **kw})


def example_project(folder, lake=None, name=TEST_PROJECT):
    """A project in ``folder`` whose catalog is the example's (imported from Tandem's examples package)."""
    from pathlib import Path

    from runtime.project import load_project

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lake_line = f"lake: {lake}\n" if lake is not None else ""
    (folder / "tandem.yaml").write_text(f"project: {name}\ncatalogs: [examples.transactions.features.transactions]\n"
                                        + lake_line)
    return load_project(folder / "tandem.yaml")


def jobs_project_dir():
    """A project folder (made once per test process) whose catalog is the example's, in the tests' Feast project:
    for the jobs the tests start as subprocesses (``--project``)."""
    import os
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.gettempdir()) / f"tandem-tests-project-{os.getpid()}"
    if not (folder / "tandem.yaml").exists():
        example_project(folder)
    return folder
