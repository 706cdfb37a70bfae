"""Property-based tests (Hypothesis) of the CLI's number flags: `main([...])` either reaches the point where Ray
would start, with values that are valid, or exits 2 with one line; never a traceback. Ray never starts here:
`init_ray` is replaced by a stop."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simmim_ray.cli import main

TEXT_NUMBERS = st.one_of(
    st.integers().map(str), st.integers(-3, 70).map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e309", "1e-400", "0x10", "1_000", " 7 ", "", "\u0663", "1.5",
                     "-0", "+3", "9" * 5000, "2**32", "4294967296", "4294967295", "0.0001", "1e-3", "a\nb"]),
    st.text(max_size=8))

TRAIN_FLAGS = ["--workers", "--cpus-per-worker"]
SEARCH_FLAGS = ["--trials", "--target-accuracy", "--grace-period", "--max-concurrent", "--workers-per-trial",
                "--cpus-per-worker", "--gpus-per-worker", "--max-failures", "--warm-start", "--seed"]


class ReachedRay(Exception):
    pass


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliprop")
    (root / "space.yaml").write_text("target_accuracy: 0.5\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    return root


@pytest.fixture(autouse=True)
def stop_before_ray(monkeypatch):
    import simmim_ray.cli.train as train_cmd
    import simmim_ray.train.ray_init as ray_init

    def stop(*a, **k):
        raise ReachedRay

    monkeypatch.setattr(train_cmd, "init_ray", stop)
    monkeypatch.setattr(ray_init, "init_ray", stop)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def run(argv: list[str], capfd) -> tuple[str, str]:
    try:
        rc = main(argv)
    except ReachedRay:
        rc = "ray"
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capfd.readouterr().err


def assert_outcome(rc, err: str) -> None:
    assert "Traceback" not in err
    event(f"exit {rc}")
    if rc == "ray":
        return
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("simmim-ray: error: ") and len(lines[0]) < 600, err


PROPS = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPS
@given(st.lists(st.tuples(st.sampled_from(TRAIN_FLAGS), TEXT_NUMBERS), min_size=1, max_size=2))
def test_train_number_flags(workdir, capfd, flags):
    argv = ["train", "--output", str(workdir / "out"), "--set", "train.epochs=1"]
    argv += [f"{f}={v}" for f, v in flags]
    rc, err = run(argv, capfd)
    assert_outcome(rc, err)
    if rc == "ray":
        values = dict(flags)
        if "--cpus-per-worker" in values:
            assert 0 < float(values["--cpus-per-worker"]) < math.inf


@PROPS
@given(st.lists(st.tuples(st.sampled_from(SEARCH_FLAGS), TEXT_NUMBERS), min_size=1, max_size=3))
def test_search_number_flags(workdir, capfd, flags):
    argv = ["search", str(workdir / "space.yaml"), "--storage-path", str(workdir / "exps")]
    argv += [f"{f}={v}" for f, v in flags]
    rc, err = run(argv, capfd)
    assert_outcome(rc, err)
    if rc == "ray":
        values = dict(flags)
        if "--seed" in values:
            assert 0 <= int(values["--seed"]) < 2**32
        if "--target-accuracy" in values:
            assert 0 < float(values["--target-accuracy"]) <= 1
        for f in ("--cpus-per-worker", "--gpus-per-worker"):
            if f in values:
                assert math.isfinite(float(values[f]))


# `search` flags checked as a whole (simmim_ray/cli/flag_rules.py): valid and invalid values, and combinations
SEARCH_VALUES = {
    "--name": st.sampled_from(["", " ", "exp_1", "../x"]),
    "--address": st.sampled_from(["", "local", "auto", "127.0.0.1:1", "http://127.0.0.1:1", "headnode"]),
    "--study-db": st.sampled_from(["", "notadb://x"]),
    "--set": st.sampled_from(["", "mask.ratio=0.5", "train.epochs=1", "novalue"]),
    "--confirm": st.sampled_from(["0", "1", "3"]),
    "--confirm-seeds": st.sampled_from(["1", "2", "100", "101", "1000000"]),
    "--feasibility": st.sampled_from(["mean", "lower-bound"]),
    "--confirm-reseed": st.sampled_from(["finetune", "pretrain"]),
    "--gpus-per-worker": st.sampled_from(["0.5", "1"]),
    "--gpu": st.none(),
    "--scheduler": st.sampled_from(["fifo", "asha"]),
    "--grace-period": st.sampled_from(["1", "3"]),
    "--asha-metric": st.sampled_from(["loss", "proxy_knn"]),
    "--max-failures": st.sampled_from(["0", "100", "101"]),
    "--trust-experiment": st.none(),
}
ENV_VALUES = {  # mostly unset, so that many examples pass and what passes is checked
    "SIMMIM_RAY_TRIAL_PATH": st.sampled_from([None] * 6 + ["auto", "public", "fast", ""]),
    "TUNE_GLOBAL_CHECKPOINT_S": st.sampled_from([None] * 6 + ["2", "auto", "often", "0"]),
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": st.sampled_from([None] * 6 + ["0.2", "-1", "x"]),
}
SEARCH_FLAG_SETS = st.lists(st.sampled_from(sorted(SEARCH_VALUES)), unique=True, max_size=4).flatmap(
    lambda names: st.tuples(*[st.tuples(st.just(n), SEARCH_VALUES[n]) for n in names]))
ENVS = st.fixed_dictionaries(ENV_VALUES)


def with_env(env: dict):
    import contextlib
    import os

    @contextlib.contextmanager
    def scope():
        old = {k: os.environ.get(k) for k in env}
        for k, v in env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        try:
            yield
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return scope()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(SEARCH_FLAG_SETS, ENVS)
def test_search_flags_as_a_whole(workdir, capfd, monkeypatch, flags, env):
    """Any combination either passes validation and means something, or exits 2 with one line; Ray never starts."""
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ray.init called")))
    argv = ["search", str(workdir / "space.yaml"), "--storage-path", str(workdir / "exps")]
    for name, value in flags:
        argv += [name] if value is None else [f"{name}={value}"]
    with with_env(env):
        rc, err = run(argv, capfd)
    assert_outcome(rc, err)
    if rc != "ray":
        return
    given = dict(flags)
    # what passed means something: nothing empty, no bound no one means, nothing without effect or contradictory
    assert all(v is None or v.strip() for v in given.values())
    confirm = int(given.get("--confirm", "3"))
    seeds = int(given.get("--confirm-seeds", "3"))
    assert seeds <= 100 and int(given.get("--max-failures", "0")) <= 100
    assert confirm or not {"--confirm-seeds", "--confirm-reseed", "--feasibility"} & set(given)
    assert given.get("--feasibility") != "lower-bound" or seeds >= 2
    assert "--gpus-per-worker" not in given or "--gpu" in given
    assert given.get("--scheduler") != "fifo" or not {"--grace-period", "--asha-metric"} & set(given)
    assert "--trust-experiment" not in given  # no --resume here
    assert given.get("--set") != "mask.ratio=0.5"  # the space searches it
    assert env["SIMMIM_RAY_TRIAL_PATH"] in (None, "auto", "public")
    assert env["TUNE_GLOBAL_CHECKPOINT_S"] in (None, "2", "auto")
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] in (None, "0.2")
    assert not (workdir / "exps" / "space").exists() and not (workdir / "exps" / "exp_1").exists()
