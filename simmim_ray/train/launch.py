"""Driver side of one training job: builds the Ray `TorchTrainer` around `worker_loop`, which runs a training run
(train/trial_loop.py) or a seed job (train/seed_loop.py) on every worker.

Used by `simmim-ray train` (directly) and by each Tune trial of `simmim-ray search`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ray
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from simmim_ray._compat import trial_path
from simmim_ray._compat.ray_train import LazyTorchConfig
from simmim_ray._compat.ray_trainer import LeanTorchTrainer
from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.train.data_cpus import plan_data_cpus
from simmim_ray.train.loop_config import LoopConfig, Remeasure, SeedJob

if TYPE_CHECKING:  # imported where used: the scan and Ray Data only for a streamed source
    from ray.util.queue import Queue

    from simmim_ray.data.scan import StreamPlan
    from simmim_ray.train.datasets import StreamSetup

# Ray's defaults poll the worker group every 2 s and retry failed worker groups forever; a search is many short
# trials, so poll faster and bound every wait.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
    # one process fewer per trial: the watcher only logs spot-instance preemption notices
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # `accuracy` only exists in a trial's final report (after the fine-tune); earlier epochs report the proxy.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # a reused trial actor waits this long for the previous trial's function to return (simmim_ray.search.trial.stop)
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
}


def apply_ray_env_defaults() -> None:
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def worker_loop(train_loop_config: dict) -> None:
    """Every Train worker's entry point (Ray's `train_loop_per_worker`; `train_loop_config` is a dict holding our
    `LoopConfig`): a seed job's loop or a training run's. The loops (torchvision, the engine) are imported here, in
    the workers, so the trial process that only builds the trainer never pays for them."""
    loop = train_loop_config[LOOP_KEY]
    if loop.seed_job is not None:  # a confirmation or the scratch baseline, not a training run
        from simmim_ray.train.seed_loop import seed_loop  # the workers' import (see above)

        seed_loop(loop)
    else:
        from simmim_ray.train.trial_loop import trial_loop  # the workers' import (see above)

        trial_loop(loop)


LOOP_KEY = "loop"


def trainer_parts(lean: bool) -> tuple[type[TorchTrainer], TorchConfig]:
    """(trainer class, torch config) of a trial path (simmim_ray/_compat): Ray's own on the public path; on the lean
    path a trainer without a dataset manager actor for runs without Ray Datasets, and a torch config whose Train
    controller never imports torch (its workers do)."""
    if not lean:
        return TorchTrainer, TorchConfig()
    return LeanTorchTrainer, LazyTorchConfig()


@dataclass
class Resources:
    workers: int = 2
    gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    threads: int = 1  # torch intra-op threads per worker
    placement_strategy: str = "PACK"  # Ray placement group strategy; SPREAD/STRICT_SPREAD put workers on many nodes
    cpu_share: float = 0.0  # CPUs this job may use (a search trial's share of the cluster); 0: the whole cluster


def make_trainer(cfg: Config, res: Resources, storage_path: str, name: str, tb_dir: str | None,
                 max_failures: int = 1, callbacks: list | None = None, shared: SharedSplits | None = None,
                 eval_splits: tuple[str, ...] = ("val",), seed_job: SeedJob | None = None,
                 lean: bool | None = None, remeasure: Remeasure | None = None,
                 progress: Queue | None = None) -> TorchTrainer:
    """The `TorchTrainer` of one training job: a training run (`simmim-ray train`, a search trial) or a seed job.

    Args:
        cfg: the run's resolved config.
        res: workers, CPUs / GPUs per worker, torch threads, placement, and the job's share of the cluster.
        storage_path: where Train keeps the run (local path or URI); the run is `<storage_path>/<name>`.
        name: the Train run name; a run of the same name is resumed from its latest checkpoint.
        tb_dir: rank 0's TensorBoard directory; None: no TensorBoard.
        max_failures: worker-group restarts Train makes before the job fails.
        callbacks: Train run callbacks (a search trial's wiring to Tune).
        shared: the data already loaded by the caller (`share_splits`); used when it matches `cfg`'s data.
        eval_splits: what the final evaluation measures ("test" only outside a search).
        seed_job: run this seed job (train/seed_loop.py) instead of a training run.
        lean: the trial path (None: this Ray's, simmim_ray._compat.trial_path).
        remeasure: a search trial's borderline final accuracy is measured again with more fine-tune seeds.
        progress: a queue rank 0 puts each epoch's metrics on (`simmim-ray train`'s lines, train/epoch_lines.py).
    """
    if lean is None:
        lean = trial_path() == "lean"
    trainer_cls, torch_config = trainer_parts(lean)
    ref, stream, datasets, dataset_config = None, None, None, None
    match = shared is not None and shared.key == data_key(cfg)
    worker_cpus = res.cpus_per_worker
    if is_streamed(cfg):
        # the data modules (torchvision) only for streamed data: not in every trial process
        from simmim_ray.train.datasets import data_config, train_datasets

        stream = stream_setup(cfg, res, shared.plan if match and shared.plan is not None else None)
        worker_cpus = stream.worker_cpus
        stream = stream.setup
        datasets, dataset_config = train_datasets(stream, cfg), data_config(stream)
    elif match and (shared.has_masks or cfg.loss.fgbg_weight == 0):
        ref = shared.ref
    loop = LoopConfig(config=cfg.to_dict(), tb_dir=tb_dir, threads=res.threads, eval_splits=tuple(eval_splits),
                      splits_ref=ref, stream=stream, seed_job=seed_job, remeasure=remeasure,
                      progress=progress)
    worker_res = {"CPU": worker_cpus}
    if res.gpu:
        worker_res["GPU"] = res.gpus_per_worker
    return trainer_cls(
        worker_loop,
        train_loop_config={LOOP_KEY: loop},
        scaling_config=ray.train.ScalingConfig(num_workers=res.workers, use_gpu=res.gpu,
                                               resources_per_worker=worker_res,
                                               placement_strategy=res.placement_strategy),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=1),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets=datasets,
        dataset_config=dataset_config,
        torch_config=torch_config,
    )


@dataclass(frozen=True)
class SharedSplits:
    key: str
    ref: ray.ObjectRef | None  # in-memory splits in the object store
    has_masks: bool  # else a trial with a fg/bg loss builds its own splits, which reports the error
    plan: StreamPlan | None = None  # a streamed source's scan: small, travels by value


def data_key(cfg: Config) -> str:
    """Everything `build_splits` (or the scan) reads: two configs with the same key get identical splits."""
    return json.dumps([cfg.data.__dict__, cfg.eval.labeled_fraction, cfg.seed], sort_keys=True)


def is_streamed(cfg: Config) -> bool:
    return cfg.data.source in ("parquet", "imagefolder")


def share_splits(cfg: Config) -> SharedSplits | None:
    """Loads `cfg`'s data once for every trial of a search: in-memory splits go into the object store (the
    workers skip reading and decoding them, and importing scikit-learn for digits); a streamed source is scanned
    once (its label column), and each trial streams its own rows. None when this process cannot load it."""
    try:
        if is_streamed(cfg):
            from simmim_ray.data.scan import scan_cached  # data modules (torchvision): not in every trial process

            plan = scan_cached(cfg)
            return SharedSplits(data_key(cfg), None, plan.has_masks, plan)
        from simmim_ray.data.splits import build_splits

        splits = build_splits(cfg.with_overrides({"loss.fgbg_weight": 0.0}))
    except (UserError, OSError):  # the trials raise it again, with their own config
        return None
    return SharedSplits(data_key(cfg), ray.put(splits), bool(splits.has_masks))


@dataclass(frozen=True)
class _Stream:
    setup: StreamSetup
    worker_cpus: float


def stream_setup(cfg: Config, res: Resources, plan=None) -> _Stream:
    """Scans a streamed source (unless `plan` is given), checks it fits the workers, and leaves Ray Data CPUs
    (data_cpus.py); UserError, before any worker starts, when it cannot."""
    from simmim_ray.data.check import fgbg_rule  # data modules (torchvision): not in every trial process
    from simmim_ray.data.scan import scan_cached
    from simmim_ray.train.datasets import StreamSetup

    plan = plan if plan is not None else scan_cached(cfg)
    fgbg_rule(cfg, plan.has_masks)
    needed = ("pretrain",) if cfg.eval.protocol == "knn" else ("pretrain", "labeled")
    for split in needed:
        if plan.sizes[split] < res.workers:  # a rank with no row would run no step while the others wait
            raise UserError(f"--workers: the {split} split of {cfg.data.path!r} holds {plan.sizes[split]} row(s), "
                            f"fewer than the {res.workers} workers; every worker needs rows of it")
    label = cfg.data.preprocess_nodes
    if label:
        key, _, value = label.partition("=")
        if not any(n.get("Alive") and n.get("Labels", {}).get(key) == value for n in ray.nodes()):
            # the read tasks would wait for such a node forever
            raise UserError(f"data.preprocess_nodes: no node of the Ray cluster has the label {label} (start one "
                            f"with `ray start --labels {label}`, keep min_workers >= 1 for an autoscaled type, "
                            f"or leave the key empty)")
    cpus = res.cpu_share or float(ray.cluster_resources().get("CPU", 0))
    c = plan_data_cpus(cpus, res.workers, res.cpus_per_worker)
    if c.lowered:
        print(c.note(res.workers, res.cpus_per_worker), flush=True)
    return _Stream(StreamSetup(plan, c.data, c.task, cfg.data.preprocess_nodes), c.worker)
