"""Running a benchmark as CI does (`python -m benchmarks.NAME --quick`, a subprocess from the repository root) and
reading its RESULTS.md sections."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # tests/helpers/ -> the repository


def run_bench(module: str, results: Path, timeout: int) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--quick", "--results", str(results)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def section(text: str, name: str) -> str:
    m = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"no section {name!r} in:\n{text}"
    return m.group(1)
