"""The fixtures the validation tests share (test_input_checks.py, test_search_checks.py): the command line runs in
this process up to where it would start Ray, and what it would have sent to the workers is recorded."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from simmim_ray.cli import main


class Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """Replaces Ray's start and the trainer/driver: records what would have been sent to the workers."""
    import simmim_ray.cli.train as train_cmd
    import simmim_ray.search.driver as driver
    import simmim_ray.train.launch as launch
    import simmim_ray.train.ray_init as ray_init

    seen = {}

    def make_trainer(cfg, res, storage_path, name, tb_dir, **kw):
        seen.update(cfg=cfg, storage_path=storage_path, tb_dir=tb_dir)
        raise Stop

    def run_search(s, space, base, exp, resume):
        seen.update(cfg=base, settings=s)
        raise Stop

    monkeypatch.setattr(train_cmd, "init_ray", lambda *a, **k: None)
    # the epoch lines' queue is a Ray actor: the run stops before any epoch anyway
    monkeypatch.setattr(train_cmd, "EpochFeed", lambda epochs: contextlib.nullcontext(SimpleNamespace(queue=None)))
    monkeypatch.setattr(ray_init, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(launch, "make_trainer", make_trainer)
    monkeypatch.setattr(driver, "run_search", run_search)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


@pytest.fixture
def cli(capsys):
    """`simmim-ray ARGV` -> (exit code, or "started" where Ray would have started; stderr)."""
    def run(argv):
        try:
            rc = main(argv)
        except Stop:
            rc = "started"
        except SystemExit as e:
            rc = e.code
        return rc, capsys.readouterr().err

    return run
