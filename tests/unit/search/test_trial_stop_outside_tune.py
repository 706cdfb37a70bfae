"""Outside Tune there is no stop event and nothing watches; a trainer without datasets starts no dataset manager (the
stop on a real Ray: tests/scenarios/test_trial_stop.py)."""
from __future__ import annotations

import sys

import ray.cloudpickle

from lean_trainer import lean_trainer


# the Train workers cannot import this test module: ship its loop functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _quick(config: dict) -> None:
    import ray.train

    ray.train.report({"epoch": 1})


def test_outside_tune_there_is_no_stop_event_and_nothing_watches():
    from simmim_ray.search.trial.stop import StopWithTune

    stopper = StopWithTune()
    assert stopper.stop_event is None
    with stopper:
        pass
    assert not stopper.stopped


def test_trainer_starts_no_dataset_manager_without_datasets(tmp_path):
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

    from simmim_ray._compat.ray_trainer import default_callback_types

    def kinds(**kw) -> set:
        trainer = lean_trainer(tmp_path, _quick, "t", [])
        trainer.datasets = kw.get("datasets", {})
        return default_callback_types(trainer)

    assert DatasetsCallback not in kinds()
    assert DatasetsCallback in kinds(datasets={"train": object()})  # a Ray Dataset in a real run
