"""The unit layer: no test here starts Ray or runs the command line in a process of its own (those are
tests/scenarios/). Enforced, so a test that starts Ray by accident fails here instead of slowing the layer down."""
from __future__ import annotations

import functools
import subprocess

import pytest

CLI_MODULE = ("-m", "simmim_ray")


@pytest.fixture(autouse=True)
def no_ray_no_cli_process(monkeypatch):
    """ray.init fails; so does a subprocess of `python -m simmim_ray` (a test may still fake ray.init itself)."""
    import ray

    @functools.wraps(ray.init)  # keeps the signature: the _compat probes read it
    def refuse_ray(*args, **kwargs):
        raise AssertionError("a unit test started Ray (ray.init): move it to tests/scenarios/, or fake the call")

    monkeypatch.setattr(ray, "init", refuse_ray)
    popen_init = subprocess.Popen.__init__

    def checked(self, args, *a, **k):
        argv = [str(x) for x in args] if isinstance(args, (list, tuple)) else str(args).split()
        if any(argv[i:i + 2] == list(CLI_MODULE) for i in range(len(argv))):
            raise AssertionError(f"a unit test ran the command line in a process ({' '.join(argv[:4])} ...): "
                                 f"move it to tests/scenarios/")
        popen_init(self, args, *a, **k)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked)
