"""The lean path's `TorchTrainer` (kept out of ray_train.py, which the Train controller loads: importing
`ray.train.torch` there would import torch in the controller)."""
from __future__ import annotations

from ray.train.torch import TorchTrainer


class LeanTorchTrainer(TorchTrainer):
    """`TorchTrainer` that starts no dataset manager actor for a run without Ray Datasets: one process fewer per
    trial, whose start-up a small machine takes from the workers' start (benchmarks/trial_overhead.py)."""

    def _create_default_callbacks(self):
        # private: train/launch.py imports this module on any Ray
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]


def default_callback_types(trainer) -> set[type]:
    """The kinds of Train callbacks `trainer.fit()` would run (for tests)."""
    return {type(c) for c in trainer._create_default_callbacks()}
