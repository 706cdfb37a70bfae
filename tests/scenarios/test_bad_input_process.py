"""The --debug flag through a real `python -m simmim_ray` process: the traceback only with it (the table of bad
input runs in-process: tests/unit/cli/test_bad_input.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("debug", [False, True])
def test_debug_flag_shows_traceback(tmp_path, debug):
    """A real process: exit 2 and one line normally; with --debug the full traceback of the UserError."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    argv = [sys.executable, "-m", "simmim_ray", *(["--debug"] if debug else []), "train", "--set", "mask.ratio=1.5",
            "--output", str(tmp_path / "o")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    if debug:
        assert p.returncode != 0 and p.returncode != 2
        assert "Traceback (most recent call last)" in p.stderr
        assert "simmim_ray.errors.UserError: `0 < mask.ratio < 1` must hold, but got 1.5" in p.stderr
    else:
        assert p.returncode == 2
        assert p.stderr.strip() == "simmim-ray: error: `0 < mask.ratio < 1` must hold, but got 1.5"
    assert not (tmp_path / "o" / "train").exists()  # nothing trained either way
