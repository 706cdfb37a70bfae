"""StopWithTune: a stop signal aborts a running Train run, so a reused Tune actor is free for the next trial."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import ray.cloudpickle

from lean_trainer import lean_trainer

# the Train workers cannot import this test module: ship its loop functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _forever(config: dict) -> None:
    """A Train loop that never ends by itself (an ASHA-stopped trial is still training)."""
    import time

    import ray.train

    ray.train.report({"epoch": 1})
    open(config["started"], "w").close()
    while True:
        time.sleep(0.05)


def _quick(config: dict) -> None:
    import ray.train

    ray.train.report({"epoch": 1})


def _wait(path: str, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not os.path.exists(path):
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_stop_signal_aborts_a_running_train_run_and_frees_its_cpus(ray_session, tmp_path):
    from simmim_ray.search.trial.stop import StopWithTune

    started = str(tmp_path / "started")
    stop = threading.Event()
    stopper = StopWithTune(stop_event=stop)
    trainer = lean_trainer(tmp_path, _forever, "forever", [stopper.callback], {"started": started})
    threading.Thread(target=lambda: (_wait(started), stop.set()), daemon=True).start()
    errors: list[BaseException] = []

    def fit() -> None:
        try:
            with stopper:
                trainer.fit()  # never returns by itself; the abort's error is swallowed
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    runner = threading.Thread(target=fit, daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the stop signal did not end fit()"
    assert not errors and stopper.stopped
    # the aborted run gave its placement group back: the next trial's workers can be placed
    t1 = time.time()
    while ray_session.available_resources().get("CPU", 0) < 2:
        assert time.time() - t1 < 30, ray_session.available_resources()
        time.sleep(0.1)
    # and the next run on the same 2 CPUs goes through; without a stop signal it finishes and is not stopped
    stopper = StopWithTune(stop_event=threading.Event())
    with stopper:
        result = lean_trainer(tmp_path, _quick, "after", [stopper.callback]).fit()
    assert not stopper.stopped and result.error is None


@pytest.mark.slow
def test_without_a_stop_signal_errors_still_raise(ray_session, tmp_path):
    from simmim_ray.search.trial.stop import StopWithTune

    def _fails(config: dict) -> None:
        raise ValueError("boom")

    stopper = StopWithTune(stop_event=threading.Event())
    with pytest.raises(Exception, match="boom"):
        with stopper:
            lean_trainer(tmp_path, _fails, "fails", [stopper.callback]).fit()
