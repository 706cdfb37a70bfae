"""Driver side of one training job: builds the Ray `TorchTrainer` around `worker.train_loop`.

Used by `simmim-ray train` (directly) and by each Tune trial of `simmim-ray search`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import ray
import ray.train
from ray.train.torch import TorchTrainer

from simmim_ray.config import Config
from simmim_ray.train.loop_config import LoopConfig, SeedRuns

# Ray's defaults poll the worker group every 2 s and retry failed worker groups forever; a search is many short
# trials, so poll faster and bound every wait.
RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
    # one process fewer per trial: the watcher only logs spot-instance preemption notices
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # `accuracy` only exists in a trial's final report (after the fine-tune); earlier epochs report the proxy.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # a reused trial actor waits this long for the previous trial's function to return (simmim_ray.search.trial_stop)
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
}


def apply_ray_env_defaults() -> None:
    for k, v in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)


def train_loop(train_loop_config: dict) -> None:
    """Every Train worker's entry point (Ray passes `train_loop_config`, a dict holding our `LoopConfig`). The
    worker module (torchvision, the engine) is imported here, in the workers, so the trial process that only
    builds the trainer never pays for it."""
    from simmim_ray.train.worker import train_loop as loop

    loop(train_loop_config[LOOP_KEY])


LOOP_KEY = "loop"


def trainer_parts(lean: bool) -> tuple[type, object]:
    """(trainer class, torch config) of a trial path (simmim_ray/_compat): Ray's own on the public path; on the lean
    path a trainer without a dataset manager actor for runs without Ray Datasets, and a torch config whose Train
    controller never imports torch (its workers do)."""
    if not lean:
        from ray.train.torch import TorchConfig

        return TorchTrainer, TorchConfig()
    from simmim_ray._compat.ray_train import LazyTorchConfig
    from simmim_ray._compat.ray_trainer import LeanTorchTrainer

    return LeanTorchTrainer, LazyTorchConfig()


@dataclass
class Resources:
    workers: int = 2
    gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    threads: int = 1  # torch intra-op threads per worker
    placement_strategy: str = "PACK"  # Ray placement group strategy; SPREAD/STRICT_SPREAD put workers on many nodes


def make_trainer(cfg: Config, res: Resources, storage_path: str, name: str, tb_dir: str | None,
                 max_failures: int = 1, callbacks: list | None = None, shared: "SharedSplits | None" = None,
                 eval_splits: tuple[str, ...] = ("val",), seed_runs: SeedRuns | None = None,
                 lean: bool | None = None) -> TorchTrainer:
    """`shared`: splits already in the object store (`share_splits`); used when they match `cfg`'s data.
    `eval_splits`: what the final evaluation measures. `seed_runs`: a confirmation or baseline job
    (train/seed_runs.py) instead of a trial. `lean`: the trial path (None: this Ray's,
    simmim_ray._compat.trial_path)."""
    if lean is None:
        from simmim_ray._compat import trial_path

        lean = trial_path() == "lean"
    trainer_cls, torch_config = trainer_parts(lean)
    datasets, rows = {}, 0
    ref = None
    if shared is not None and shared.key == data_key(cfg) and (shared.has_masks or cfg.loss.fgbg_weight == 0):
        ref = shared.ref
    if cfg.data.source == "parquet" and (seed_runs is None or seed_runs.mode == "pretrain"):
        datasets, rows = parquet_datasets(cfg)  # only pre-training streams
    loop = LoopConfig(config=cfg.to_dict(), tb_dir=tb_dir, threads=res.threads, eval_splits=tuple(eval_splits),
                      splits_ref=ref, stream_rows=rows, seed_runs=seed_runs)
    worker_res = {"CPU": res.cpus_per_worker}
    if res.gpu:
        worker_res["GPU"] = res.gpus_per_worker
    return trainer_cls(
        train_loop,
        train_loop_config={LOOP_KEY: loop},
        scaling_config=ray.train.ScalingConfig(num_workers=res.workers, use_gpu=res.gpu,
                                               resources_per_worker=worker_res,
                                               placement_strategy=res.placement_strategy),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=1),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets=datasets or None,
        torch_config=torch_config,
    )


@dataclass(frozen=True)
class SharedSplits:
    key: str
    ref: "ray.ObjectRef"
    has_masks: bool  # else a trial with a fg/bg loss builds its own splits, which reports the error


def data_key(cfg: Config) -> str:
    """Everything `build_splits` reads: two configs with the same key get identical splits."""
    return json.dumps([cfg.data.__dict__, cfg.eval.labeled_fraction, cfg.seed], sort_keys=True)


def share_splits(cfg: Config) -> SharedSplits | None:
    """Loads `cfg`'s data once and puts it in the object store, so a search's workers skip reading and decoding
    it (and importing scikit-learn for digits) in every trial; None when this process cannot load it."""
    from simmim_ray.data.splits import build_splits
    from simmim_ray.errors import UserError

    try:
        splits = build_splits(cfg.with_overrides({"loss.fgbg_weight": 0.0}))
    except (UserError, OSError):  # the workers raise it again, with the trial's own config
        return None
    return SharedSplits(data_key(cfg), ray.put(splits), bool(splits.has_masks))


def parquet_datasets(cfg: Config):
    """Ray Data stream of the training rows (validation and test rows filtered out row-locally)."""
    import ray.data

    from simmim_ray.data.sources import image_bytes, split_of

    d = cfg.data
    ds = ray.data.read_parquet(d.path)
    tf, vf, col = d.test_fraction, d.val_fraction, d.image_column
    has_split = "split" in ds.schema().names
    ds = ds.filter(lambda row: split_of(image_bytes(row[col]), row["split"] if has_split else None, tf, vf)
                   == "train")
    rows = ds.count()
    return {"train": ds}, rows
