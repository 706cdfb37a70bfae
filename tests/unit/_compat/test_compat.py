"""simmim_ray/_compat: which trial path runs, and every private piece of Ray the lean path uses, checked against
the installed Ray (each test fails when that Ray changes the piece; the behaviour tests of the lean path are
test_trial_report.py, test_trial_stop.py and test_train_backend.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from simmim_ray import _compat
from simmim_ray._compat import ray_core, ray_train, ray_tune
from simmim_ray._compat.probe import check
from simmim_ray.errors import UserError

PRIVATE_USES = [*ray_core.CHECKS, *ray_tune.CHECKS, *ray_train.CHECKS]


@pytest.mark.parametrize("use", PRIVATE_USES, ids=lambda c: f"{c[0]}.{c[1]}")
def test_each_private_piece_of_the_lean_path_is_in_this_ray(use):
    assert check(*use) is None


def test_the_probe_notices_a_missing_name_parameter_or_attribute():
    assert check("simmim_ray._compat.probe", "check") is None
    assert check("simmim_ray._compat.probe", "nowhere") == "simmim_ray._compat.probe.nowhere"
    assert check("simmim_ray._compat.probe", "check", ("module", "zz")) == "simmim_ray._compat.probe.check(zz)"
    assert check("simmim_ray.errors", "UserError", (), ("x",)) == "simmim_ray.errors.UserError.x"
    assert check("simmim_ray.no_such_module", "f") == "simmim_ray.no_such_module (no such module)"


def pick(monkeypatch, env: str | None, version: str, missing: list[str] | None = None) -> str:
    if env is None:
        monkeypatch.delenv(_compat.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(_compat.ENV_VAR, env)
    monkeypatch.setattr(_compat, "_ray_version", lambda: version)
    monkeypatch.setattr(_compat, "lean_missing", lambda: list(missing or []))
    return _compat.trial_path(say=False)


def test_auto_runs_lean_only_on_a_tested_ray_that_has_every_piece(monkeypatch):
    tested = _compat.LEAN_TESTED_RAY[-1]
    assert pick(monkeypatch, None, tested) == "lean"
    assert pick(monkeypatch, "auto", tested) == "lean"
    assert pick(monkeypatch, "auto", "9.9.9") == "public"  # not in the table
    assert pick(monkeypatch, "auto", tested, ["ray.x._internal.y"]) == "public"


def test_the_environment_forces_a_path(monkeypatch):
    assert pick(monkeypatch, "public", _compat.LEAN_TESTED_RAY[-1]) == "public"
    assert pick(monkeypatch, "LEAN", "9.9.9") == "lean"  # an untested Ray that has the pieces: the user's call
    with pytest.raises(UserError, match=r"SIMMIM_RAY_TRIAL_PATH=lean: Ray 9\.9\.9 lacks .*ray\.x\.y"):
        pick(monkeypatch, "lean", "9.9.9", ["ray.x.y"])
    with pytest.raises(UserError, match=r"SIMMIM_RAY_TRIAL_PATH='fast': must be one of auto, lean, public"):
        pick(monkeypatch, "fast", "9.9.9")


def test_one_line_says_which_path_runs(monkeypatch, capsys):
    monkeypatch.setattr(_compat, "_said", set())
    monkeypatch.setenv(_compat.ENV_VAR, "public")
    _compat.trial_path()
    _compat.trial_path()
    err = capsys.readouterr().err
    assert err == "simmim-ray: public trial path (SIMMIM_RAY_TRIAL_PATH=public)\n"


def test_the_installed_ray_gets_the_path_its_table_entry_says(monkeypatch):
    import ray

    monkeypatch.delenv(_compat.ENV_VAR, raising=False)
    want = "lean" if ray.__version__ in _compat.LEAN_TESTED_RAY and not _compat.lean_missing() else "public"
    assert _compat.trial_path(say=False) == want


def rays_mismatch_error(cluster_version: str) -> RuntimeError:
    """The error Ray itself raises when this process joins a cluster of `cluster_version`."""
    import platform

    from ray._private.utils import check_version_info

    with pytest.raises(RuntimeError) as info:
        check_version_info({"ray_version": cluster_version, "python_version": platform.python_version()},
                           "node 127.0.0.1")
    return info.value


def test_rays_version_mismatch_error_is_read_as_both_versions():
    import ray

    assert ray_core.version_mismatch(rays_mismatch_error("2.0.1")) == ("2.0.1", ray.__version__)
    assert ray_core.version_mismatch(RuntimeError("Failed to connect to GCS")) is None


def test_joining_a_cluster_of_another_ray_is_refused_in_one_line_naming_both(monkeypatch):
    """The narrow fake: `ray.init` raises the error Ray's own version check makes (the real cluster of another
    Ray version is tests/scenarios/test_version_mismatch.py)."""
    import ray

    from simmim_ray.train import ray_init

    err = rays_mismatch_error("2.0.1")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(err))
    with pytest.raises(UserError) as info:
        ray_init.init_ray("auto")
    msg = str(info.value)
    assert "\n" not in msg and "Ray 2.0.1" in msg and f"Ray {ray.__version__}" in msg


def test_local_cpus_counts_like_ray_and_falls_back_without_it(monkeypatch):
    """resources.local_resources refuses `train --workers N` before Ray starts: its CPU count must be Ray's."""
    import builtins

    import ray._private.utils as ray_utils

    from simmim_ray._compat.ray_core import local_cpus

    assert local_cpus() == float(ray_utils.get_num_cpus(override_docker_cpu_warning=True))
    real_import = builtins.__import__

    def no_private(name, *args, **kwargs):
        if name == "ray._private.utils":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_private)
    assert local_cpus() >= 1.0


def test_asha_bracket_stops_the_worse_half_at_a_rung():
    """benchmarks/studies/proxy_correlation.py replays recorded trials through Ray's private ASHA bracket: its
    rungs and its stop rule must still be what the search's scheduler applies."""
    from simmim_ray._compat.ray_tune import asha_bracket

    bracket, rungs = asha_bracket(2, 8, 2)
    assert rungs == {2, 4, 8}
    good = bracket.on_result(SimpleNamespace(trial_id="a"), 2, 0.9)
    bad = bracket.on_result(SimpleNamespace(trial_id="b"), 2, 0.1)
    assert (good, bad) == ("CONTINUE", "STOP")
