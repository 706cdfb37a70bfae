"""`simmim-ray search`: Ray Tune runs trials, Optuna proposes configs, the answer is the smallest feasible model.

The experiment directory and its records: search/experiment.py.
"""
from __future__ import annotations

import logging
import os

from simmim_ray.config import Config
from simmim_ray.errors import NoFeasibleTrial, UserError
from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search.experiment import Experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.space import SearchSpace

# Tune hands a finished or stopped trial's actor to the next trial: saves a process start and the trial module's
# imports (torch) per trial; safe because the trial function ends its Train run when Tune stops it (trial_stop.py)
REUSE_ACTORS = True


def default_concurrency(s: SearchSettings, cluster: dict) -> int:
    """Trials that fit at once, so no trial driver waits for workers that can never be placed."""
    per_trial_cpu = s.workers_per_trial * s.cpus_per_worker
    fit = int(cluster.get("CPU", 1) // per_trial_cpu) if per_trial_cpu > 0 else 1
    if s.gpu:
        per_trial_gpu = s.workers_per_trial * s.gpus_per_worker
        fit = min(fit, int(cluster.get("GPU", 0) // per_trial_gpu)) if per_trial_gpu > 0 else fit
    return max(1, fit)


def check_fits(s: SearchSettings, cluster: dict) -> None:
    need_cpu = s.workers_per_trial * s.cpus_per_worker
    if need_cpu > cluster.get("CPU", 0) + 1e-9:
        raise UserError(f"--workers-per-trial x --cpus-per-worker = {need_cpu:g} CPUs, but the Ray cluster has "
                        f"{cluster.get('CPU', 0):g}; one trial could never start")
    if s.gpu:
        need_gpu = s.workers_per_trial * s.gpus_per_worker
        if need_gpu > cluster.get("GPU", 0) + 1e-9:
            raise UserError(f"--workers-per-trial x --gpus-per-worker = {need_gpu:g} GPUs, but the Ray cluster "
                            f"has {cluster.get('GPU', 0):g}")


def run_search(s: SearchSettings, space: SearchSpace, base: Config, exp: Experiment, resume: bool) -> int:
    """Runs (or, with `resume`, continues) the search in experiment `exp`; -> exit code."""
    import ray
    from ray import tune

    from simmim_ray.train.launch import Resources
    from simmim_ray.search.recorder import Recorder
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.study_store import close_study, optuna_storage, upload_study
    from simmim_ray.search.space import to_optuna
    from simmim_ray.search.trial import make_trial_fn, trial_name
    from simmim_ray import storage as sio

    cluster = ray.cluster_resources()
    if not s.address:  # a cluster we joined may autoscale (GPU workers start at 0): it gets no fit check
        check_fits(s, cluster)
    sio.check_shared_storage(exp.uri, sio.cluster_node_count())
    sio.makedirs(exp.uri)
    if not resume:
        exp.snapshot_inputs(s)
    exp.save_settings(s)
    exp.record_start(s, resumed=resume)
    concurrency = s.max_concurrent or default_concurrency(s, cluster)
    res = Resources(workers=s.workers_per_trial, gpu=s.gpu, cpus_per_worker=s.cpus_per_worker,
                    gpus_per_worker=s.gpus_per_worker, threads=max(1, int(s.cpus_per_worker)))
    trial_fn = make_trial_fn(base.to_dict(), res, exp.uri, s.max_failures)
    # The trial function only waits on its Train controller. Its request must be non-zero, and a CPU fraction
    # would leave too little for the workers (2 x 1 CPU on 2 cores): ask for a little logical memory instead.
    trainable = tune.with_resources(trial_fn, {"memory": 64 * 1024 * 1024})
    tune_state_period(exp.uri)  # read by Tune when the search starts
    storage = optuna_storage(s, exp)
    # Tune restores the searcher from the experiment's pickles, which name the study where the experiment was
    ConstrainedOptunaSearch.restore_storage = storage

    if resume:
        # Tune restores its callbacks too; the Recorder finds the experiment where it is now (a copy, a move)
        tuner = tune.Tuner.restore(exp.uri, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        points = initial_points(s, space, base)
        searcher = ConstrainedOptunaSearch(to_optuna(space), s.size_metric, s.target_accuracy, storage=storage,
                                           study_name=s.name, seed=s.seed, points_to_evaluate=points or None,
                                           sampler=s.sampler, budget=s.trials)
        upload_study(s, exp)  # the new study is in an object-store experiment before any trial ends
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(s, base, points),
                                        num_samples=s.trials, max_concurrent_trials=concurrency,
                                        trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                        reuse_actors=REUSE_ACTORS),
            run_config=tune.RunConfig(name=s.name, storage_path=s.root, callbacks=[Recorder(exp.uri)], verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
    # Tune logs each errored trial's full traceback; the progress line shows the reason and results.parquet /
    # <trial>/error.txt keep the details
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    print(f"simmim-ray search: {s.trials} trials of space {space.name!r}, target accuracy "
          f">= {s.target_accuracy:g}, minimise {s.size_metric}; {concurrency} at a time x {s.workers_per_trial} "
          f"workers; experiment {exp.uri}", flush=True)
    tuner.fit()
    close_study(s, exp)
    return finish(s, exp)


def finish(s: SearchSettings, exp: Experiment) -> int:
    """Write results.parquet, history.parquet, best/, pareto.png; exit 3 when no trial is feasible."""
    from simmim_ray.search import results

    table = results.write_outputs(exp, s.target_accuracy, s.size_metric)
    print(results.format_report(table, s.target_accuracy, s.size_metric), flush=True)
    if not any(r["feasible"] for r in table):
        best = max((r for r in table if r.get(VAL_ACCURACY) is not None), key=lambda r: r[VAL_ACCURACY],
                   default=None)
        if best is None:
            raise NoFeasibleTrial(f"no trial finished; see {exp.uri}/results.parquet")
        raise NoFeasibleTrial(f"no trial reached accuracy >= {s.target_accuracy:g}; best was "
                              f"{best[VAL_ACCURACY]:.4f} by {best['trial_id']} ({s.size_metric}="
                              f"{best[s.size_metric]:.4g}); report written to {exp.uri}")
    return 0


def make_scheduler(s: SearchSettings, base: Config, protect: list[dict] | None = None):
    """ASHA on the per-epoch proxy (never stopping the `protect` points: the warm start), or FIFO."""
    from ray.tune.schedulers import FIFOScheduler

    from simmim_ray.search.schedulers import ProtectingASHA

    if s.scheduler == "fifo":
        return FIFOScheduler()
    return ProtectingASHA(protect=protect, time_attr=EPOCH, metric=s.asha_metric,
                          mode="min" if "loss" in s.asha_metric else "max", max_t=base.train.epochs,
                          grace_period=min(s.grace_period, base.train.epochs), reduction_factor=s.reduction_factor)


# Tune saves the experiment state (what `--resume` restores) every 10 s or more by default, copying its whole staging
# directory to the storage path each time: a trial that starts and ends between two saves is unknown to a search
# restored after a crash. On a file system that copy is cheap, so save every 2 s (trials last 5 s and more); on
# object stores keep Tune's pace (one PUT per file per save), where trials are longer than 10 s in practice.
TUNE_STATE_PERIOD_S = "2"


def tune_state_period(storage_uri: str) -> None:
    from simmim_ray.storage import is_node_local

    if is_node_local(storage_uri):
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", TUNE_STATE_PERIOD_S)


def initial_points(s: SearchSettings, space: SearchSpace, base: Config) -> list[dict]:
    """What the search tries first: the user's --points, then the size ladder (search/warm_start.py)."""
    from simmim_ray.search.warm_start import size_ladder

    points = load_points(s.points, space) if s.points else []
    ladder = size_ladder(space, base, min(s.warm_start, s.trials // 2), s.size_metric, s.seed)
    return points + [p for p in ladder if p not in points]


def load_points(path: str, space: SearchSpace) -> list[dict]:
    from simmim_ray.configio import read_yaml

    pts = read_yaml(path, "--points")
    if not isinstance(pts, list) or not all(isinstance(p, dict) for p in pts):
        raise UserError(f"--points {path!r}: must be a YAML list of mappings of searched keys to values")
    keys = set(space.keys())
    for i, p in enumerate(pts):
        missing, unknown = keys - set(p), set(p) - keys
        if missing or unknown:
            raise UserError(f"--points {path!r}: point {i} must set exactly the searched keys; missing "
                            f"{sorted(missing)}, unknown {sorted(unknown)}")
    from simmim_ray.search.space import encode

    return [{k: encode(v) for k, v in p.items()} for p in pts]
