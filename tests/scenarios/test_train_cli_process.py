"""`python -m simmim_ray train` in a process of its own: the exit code and a single line for bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv,needle", [
    (["train", "--set", "model.foo=1"], "unknown config key `model.foo`"),
    (["train", "--workers", "0"], "`--workers >= 1` must hold"),
])
def test_subprocess_exit_code_and_single_line(tmp_path, argv, needle):
    env = {**os.environ, "RAY_ADDRESS": "local"}  # never attach to someone else's cluster
    p = subprocess.run([sys.executable, "-m", "simmim_ray", *argv, "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o" / "train").exists()  # nothing was trained
