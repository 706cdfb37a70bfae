"""A search's settings: everything `simmim-ray search` decided from its flags and space, stored in
<experiment>/settings.json so that `--resume` continues the same search."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchSettings:
    space_path: str
    name: str
    storage: str  # absolute local path or URI of the experiment root
    trials: int
    target_accuracy: float
    size_metric: str = "params"
    scheduler: str = "asha"
    sampler: str = "tpe"
    asha_metric: str = "proxy_knn"
    grace_period: int = 2
    reduction_factor: int = 3
    max_concurrent: int = 0  # 0: follow the cluster's resources
    workers_per_trial: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    gpu: bool = False
    max_failures: int = 1
    seed: int = 0
    study_storage: str = ""  # optuna storage URL; default sqlite:///<exp>/study.db
    points: str = ""
    warm_start: int = 3  # size-ladder points tried first (capped at half the trials); 0: off
    config_path: str = ""
    overrides: tuple = ()
    address: str = ""


def experiment_dir(s: SearchSettings) -> str:
    from simmim_ray.storage import join

    return join(s.storage, s.name)
