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
