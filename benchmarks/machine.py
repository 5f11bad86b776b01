"""What every benchmark report heads its figures with: when, which code, which machine (figures from a
dirty tree or another CPU are not comparable, so the report says so)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def describe() -> dict:
    """UTC time, the commit (and whether tracked files differ from it), the CPU and Python."""
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    return {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "code": git.stdout.strip() + (" + uncommitted changes" if dirty else ""),
            "cpu": f"{os.cpu_count()} x {cpu}", "python": platform.python_version()}
