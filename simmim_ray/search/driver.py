"""`simmim-ray search`: Ray Tune runs trials, Optuna proposes configs, the answer is the smallest feasible model.

Experiment directory (<storage>/<name>/): study.db (Optuna), settings.json, inputs/ (space and config YAML),
trials.jsonl (status events), <trial>/ (Tune), train_runs/<trial>/ (checkpoints), tb/<trial>/ (TensorBoard),
results.parquet, history.parquet, best/, pareto.png.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

from simmim_ray.config import Config
from simmim_ray.errors import NoFeasibleTrial, UserError
from simmim_ray.metrics import VAL_ACCURACY
from simmim_ray.search.settings import SearchSettings, experiment_dir
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


def run_search(s: SearchSettings, space: SearchSpace, base: Config, resume: bool) -> int:
    import ray
    from ray import tune

    from simmim_ray.train.launch import Resources
    from simmim_ray.search import progress
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.study_store import close_study, optuna_storage, study_in_cache, upload_study
    from simmim_ray.search.space import to_optuna
    from simmim_ray.search.trial import make_trial_fn, trial_name
    from simmim_ray import storage as sio

    exp = experiment_dir(s)
    cluster = ray.cluster_resources()
    if not s.address:  # a cluster we joined may autoscale (GPU workers start at 0): it gets no fit check
        check_fits(s, cluster)
    sio.check_shared_storage(s.storage, sio.cluster_node_count())
    sio.makedirs(exp)
    sio.write_text(sio.join(exp, "settings.json"), json.dumps(asdict(s), indent=2))
    if not resume:
        snapshot_inputs(s, exp)
    concurrency = s.max_concurrent or default_concurrency(s, cluster)
    # a streamed source's Ray Data reads within each trial's share of a fixed (local) cluster (train/data_cpus.py)
    res = Resources(workers=s.workers_per_trial, gpu=s.gpu, cpus_per_worker=s.cpus_per_worker,
                    gpus_per_worker=s.gpus_per_worker, threads=max(1, int(s.cpus_per_worker)),
                    cpu_share=0.0 if s.address else cluster.get("CPU", 0) / concurrency)
    trial_fn = make_trial_fn(base.to_dict(), res, s.storage, s.name, s.max_failures)
    # The trial function only waits on its Train controller. Its request must be non-zero, and a CPU fraction
    # would leave too little for the workers (2 x 1 CPU on 2 cores): ask for a little logical memory instead.
    trainable = tune.with_resources(trial_fn, {"memory": 64 * 1024 * 1024})
    # Tune runs callbacks in list order: the study copy goes first, so a trial in trials.jsonl is in the copy too
    callbacks = [progress.StudyBackup(s, exp)] if study_in_cache(s, exp) else []
    callbacks.append(progress.ProgressPrinter(space, s, exp))
    tune_state_period(s.storage)  # read by Tune when the search starts

    if resume:
        tuner = tune.Tuner.restore(exp, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        storage = optuna_storage(s, exp)
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
            run_config=tune.RunConfig(name=s.name, storage_path=s.storage, callbacks=callbacks, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
    # Tune logs each errored trial's full traceback; the progress line shows the reason and results.parquet /
    # <trial>/error.txt keep the details
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    print(f"simmim-ray search: {s.trials} trials of space {space.name!r}, target accuracy "
          f">= {s.target_accuracy:g}, minimise {s.size_metric}; {concurrency} at a time x {s.workers_per_trial} "
          f"workers; experiment {exp}", flush=True)
    tuner.fit()
    close_study(s, exp)
    return finish(s, exp)


def snapshot_inputs(s: SearchSettings, exp: str) -> None:
    """Copies the space and base-config YAML into <exp>/inputs/: settings.json names them by path, and a Ray Job's
    working_dir (or the machine that started the search) may be gone when `--resume` runs."""
    from simmim_ray import storage as sio

    for path in (s.space_path, s.config_path):
        if path:
            with open(path, "rb") as f:
                sio.write_bytes(sio.join(exp, "inputs", os.path.basename(path)), f.read())


def stored_input(exp: str, path: str) -> str:
    """`path` when it still exists, else a local copy of <exp>/inputs/<its name> (same name: a space is named
    after its file); `path` unchanged when there is no copy either, so the loader names the missing file."""
    import tempfile

    from simmim_ray import storage as sio

    copy = sio.join(exp, "inputs", os.path.basename(path))
    if not path or os.path.isfile(path) or not sio.exists(copy):
        return path
    local = os.path.join(tempfile.mkdtemp(prefix="simmim_inputs_"), os.path.basename(path))
    with open(local, "wb") as f:
        f.write(sio.read_bytes(copy))
    return local


def finish(s: SearchSettings, exp: str) -> int:
    """Write results.parquet, history.parquet, best/, pareto.png; exit 3 when no trial is feasible."""
    from simmim_ray.search import results

    table = results.write_outputs(exp, s.target_accuracy, s.size_metric)
    print(results.format_report(table, s.target_accuracy, s.size_metric), flush=True)
    if not any(r["feasible"] for r in table):
        best = max((r for r in table if r.get(VAL_ACCURACY) is not None), key=lambda r: r[VAL_ACCURACY],
                   default=None)
        if best is None:
            raise NoFeasibleTrial(f"no trial finished; see {exp}/results.parquet")
        raise NoFeasibleTrial(f"no trial reached accuracy >= {s.target_accuracy:g}; best was "
                              f"{best[VAL_ACCURACY]:.4f} by {best['trial_id']} ({s.size_metric}="
                              f"{best[s.size_metric]:.4g}); report written to {exp}")
    return 0


def make_scheduler(s: SearchSettings, base: Config, protect: list[dict] | None = None):
    """ASHA on the per-epoch proxy (never stopping the `protect` points: the warm start), or FIFO."""
    from ray.tune.schedulers import FIFOScheduler

    from simmim_ray.search.schedulers import ProtectingASHA

    if s.scheduler == "fifo":
        return FIFOScheduler()
    return ProtectingASHA(protect=protect, time_attr="epoch", metric=s.asha_metric,
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
