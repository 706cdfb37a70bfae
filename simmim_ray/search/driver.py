"""`simmim-ray search`: Ray Tune runs trials, Optuna proposes configs, the answer is the smallest feasible model.

The experiment directory and its records: search/record/experiment.py.
"""
from __future__ import annotations

import logging
import os

from simmim_ray._compat import trial_path
from simmim_ray.config import Config, coerce, field_type
from simmim_ray.errors import UserError, excerpt
from simmim_ray.io import storage
from simmim_ray.io.configio import read_yaml
from simmim_ray.metrics import EPOCH
from simmim_ray.search.answer.seed_jobs import SeedJobSetup
from simmim_ray.search.answer.stage import run_answer_stage
from simmim_ray.search.record.experiment import TB, TRIAL_PATH, Experiment
from simmim_ray.search.record.study_store import close_study, optuna_storage, upload_study
from simmim_ray.search.record.trust import TUNER_PKL, record_experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.size import SizeOf
from simmim_ray.search.space import SearchSpace, encode, to_optuna
from simmim_ray.search.warm_start import size_ladder
from simmim_ray.train.loop_config import Remeasure
from simmim_ray.train.resources import check_fits


def reuse_actors(lean: bool) -> bool:
    """On the lean trial path Tune hands a finished or stopped trial's actor to the next trial: saves a process
    start and the trial module's imports (torch) per trial; safe because the trial function ends its Train run when
    Tune stops it (search/trial/stop.py). On the public path Tune ends the trial actor instead, which ends its Train
    run."""
    return lean


def default_concurrency(s: SearchSettings, cluster: dict) -> int:
    """Trials that fit at once, so no trial driver waits for workers that can never be placed."""
    per_trial_cpu = s.workers_per_trial * s.cpus_per_worker
    fit = int(cluster.get("CPU", 1) // per_trial_cpu) if per_trial_cpu > 0 else 1
    if s.gpu:
        per_trial_gpu = s.workers_per_trial * s.gpus_per_worker
        fit = min(fit, int(cluster.get("GPU", 0) // per_trial_gpu)) if per_trial_gpu > 0 else fit
    return max(1, fit)


def check_trials_fit(s: SearchSettings, cluster: dict, where: str = "the Ray cluster") -> None:
    """One trial's workers fit `cluster` (train/resources.check_fits, with the search's flags)."""
    check_fits(s.workers_per_trial, s.cpus_per_worker, s.gpus_per_worker, s.gpu, cluster, "--workers-per-trial", where,
         job="one trial")


def run_search(s: SearchSettings, space: SearchSpace, base: Config, exp: Experiment, resume: bool) -> int:
    """Runs (or, with `resume`, continues) the search in experiment `exp`; -> exit code."""
    # Ray, Tune, Optuna and what is built on them, imported when a search runs: the command line imports this
    # module to check --points before Ray starts (cli/search_checks.py), and `--help` stays fast
    import ray
    from ray import tune

    from simmim_ray.search.record.recorder import Recorder
    from simmim_ray.search.record.trust_callback import PickleDigests
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.trial.trial import make_trial_fn, trial_name
    from simmim_ray.train.launch import Resources, share_splits

    quiet_optuna()
    cluster = ray.cluster_resources()
    if not s.address:  # a cluster we joined may autoscale (GPU workers start at 0): it gets no fit check
        check_trials_fit(s, cluster)
    storage.check_shared_storage(exp.uri, storage.cluster_node_count())
    storage.makedirs(exp.uri)
    if not resume:
        exp.snapshot_inputs(s)
    exp.save_settings(s)
    exp.record_start(s, resumed=resume)
    concurrency = s.max_concurrent or default_concurrency(s, cluster)
    # a streamed source's Ray Data reads within each trial's share of a fixed (local) cluster (train/data_cpus.py)
    res = Resources(workers=s.workers_per_trial, gpu=s.gpu, cpus_per_worker=s.cpus_per_worker,
                    gpus_per_worker=s.gpus_per_worker, threads=max(1, int(s.cpus_per_worker)),
                    cpu_share=0.0 if s.address else cluster.get("CPU", 0) / concurrency)
    lean = trial_path() == "lean"
    check_trial_path(exp, lean, resume)
    shared = share_splits(base)  # the data, loaded once: every trial, confirmation and baseline uses these splits
    remeasure = Remeasure(s.target_accuracy, s.remeasure_seeds) if s.remeasure_seeds else None
    trial_fn = make_trial_fn(base.to_dict(), res, exp.uri, s.max_failures, shared=shared, lean=lean,
                             remeasure=remeasure)
    # The trial function only waits on its Train controller. Its request must be non-zero, and a CPU fraction
    # would leave too little for the workers (2 x 1 CPU on 2 cores): ask for a little logical memory instead.
    trainable = tune.with_resources(trial_fn, {"memory": 64 * 1024 * 1024})
    tune_state_period(exp.uri)  # read by Tune when the search starts
    study_db = optuna_storage(s, exp)
    # Tune restores the searcher from the experiment's pickles, which name the study where the experiment was
    ConstrainedOptunaSearch.restore_storage = study_db

    if resume:
        # Tune restores its callbacks too; the Recorder finds the experiment where it is now (a copy, a move)
        tuner = tune.Tuner.restore(exp.uri, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        points = initial_points(s, space, base)
        searcher = make_searcher(s, space, base, points, study_db)
        upload_study(s, exp)  # the new study is in an object-store experiment before any trial ends
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(s, base, points),
                                        num_samples=s.trials, max_concurrent_trials=concurrency,
                                        trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                        reuse_actors=reuse_actors(lean)),
            run_config=tune.RunConfig(name=s.name, storage_path=s.root, callbacks=[Recorder(exp.uri),
                                      PickleDigests(exp.uri)], verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        record_experiment(exp.uri, only=(TUNER_PKL,))  # Tune wrote it into the experiment, not its staging dir
    # Tune's own terminal output (a configuration box, and a TensorBoard hint for a directory of Ray's session
    # that holds none of our curves) gives way to one line per trial (search/progress.py) and our own hint
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune logs each errored trial's full traceback; the progress line shows the reason and results.parquet /
    # <trial>/error.txt keep the details
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    budget = (f"a budget of {s.budget_epochs:,} trial-epochs (at most {s.trials} trials)" if s.budget_epochs else
              f"a budget of {s.budget_seconds:,.0f} trial-seconds (at most {s.trials} trials)" if s.budget_seconds
              else f"{s.trials} trials")
    print(f"simmim-ray search: {budget} of space {space.name!r}, target accuracy "
          f">= {s.target_accuracy:g}, minimise {s.size_metric}; {concurrency} at a time x {s.workers_per_trial} "
          f"workers; experiment {exp.uri}", flush=True)
    print(f"TensorBoard: tensorboard --logdir {exp.path(TB)}", flush=True)
    tuner.fit()
    close_study(s, exp)
    why = finished_reason(study_db, s.name)
    if why:
        print(f"simmim-ray search: no more trials: {why}", flush=True)
    return run_answer_stage(s, exp, SeedJobSetup(base, res, concurrency, shared, s.max_failures))


def quiet_optuna() -> None:
    """Optuna logs "A new study created in RDB with name: ..." (and each trial's end) at INFO: the search's own
    lines say what happens. Its warnings still show."""
    import optuna  # only when a search runs: the search command's checks import this module

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def check_trial_path(exp: Experiment, lean: bool, resume: bool) -> None:
    """A restored Tune keeps the actor reuse the search started with, which fits only that trial path: record it,
    and refuse to resume on the other one."""
    path, record = ("lean" if lean else "public"), exp.path(TRIAL_PATH)
    if resume and storage.exists(record):
        was = storage.read_bytes(record).decode().strip()
        if was != path:
            raise UserError(f"--resume {exp.uri}: the search ran the {was} trial path, but this Ray gives the "
                            f"{path} path; resume with SIMMIM_RAY_TRIAL_PATH={was} (or the Ray the search started "
                            f"with)")
    storage.write_text(record, path)


def make_searcher(s: SearchSettings, space: SearchSpace, base: Config, points: list[dict], study_db=None):
    """The search's one objective (size) under the accuracy constraint, sizes computed before training, within
    the trial and compute budgets (search/searcher.py)."""
    from simmim_ray.search.searcher import ConstrainedOptunaSearch  # Optuna and Tune: only when a search runs

    return ConstrainedOptunaSearch(to_optuna(space), s.size_metric, s.target_accuracy, storage=study_db,
                                   study_name=s.name, seed=s.seed, points_to_evaluate=points or None,
                                   sampler=s.sampler, budget=s.trials, size_of=SizeOf(base.to_dict(), s.size_metric),
                                   budget_epochs=s.budget_epochs, budget_seconds=s.budget_seconds)


def finished_reason(study_db, study_name: str) -> str:
    """Why the searcher stopped proposing trials before Tune's trial count ran out ("" if it did not)."""
    import optuna  # only when a search runs, as the searcher

    from simmim_ray.search.study import FINISHED_ATTR

    try:
        return optuna.load_study(study_name=study_name, storage=study_db).user_attrs.get(FINISHED_ATTR, "")
    except Exception:  # noqa: BLE001 - a message only: the study's trials are what counts
        return ""


def rungs(s: SearchSettings, base: Config) -> list[int]:
    """The constraint stopper's rungs: every grace_period pre-training epochs, before the last."""
    step = min(s.grace_period, base.train.epochs)
    return list(range(step, base.train.epochs, step))


def make_scheduler(s: SearchSettings, base: Config, protect: list[dict] | None = None):
    """The constraint stopper (default), ASHA on the per-epoch proxy (never stopping the `protect` points: the
    warm start), or FIFO."""
    from ray.tune.schedulers import FIFOScheduler  # Tune: only when a search runs

    from simmim_ray.search.schedulers import ConstraintStopper, ProtectingASHA

    if s.scheduler == "fifo":
        return FIFOScheduler()
    if s.scheduler == "constraint":
        return ConstraintStopper(s.size_metric, s.target_accuracy, s.asha_metric, rungs(s, base), s.stop_margin,
                                 protect=protect)
    return ProtectingASHA(protect=protect, time_attr=EPOCH, metric=s.asha_metric,
                          mode="min" if "loss" in s.asha_metric else "max", max_t=base.train.epochs,
                          grace_period=min(s.grace_period, base.train.epochs), reduction_factor=s.reduction_factor)


# Tune saves the experiment state (what `--resume` restores) every 10 s or more by default, copying its whole staging
# directory to the storage path each time: a trial that starts and ends between two saves is unknown to a search
# restored after a crash. On a file system that copy is cheap, so save every 2 s (trials last 5 s and more); on
# object stores keep Tune's pace (one PUT per file per save), where trials are longer than 10 s in practice.
TUNE_STATE_PERIOD_S = "2"


def tune_state_period(storage_uri: str) -> None:
    if storage.is_node_local(storage_uri):
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", TUNE_STATE_PERIOD_S)


def initial_points(s: SearchSettings, space: SearchSpace, base: Config) -> list[dict]:
    """What the search tries first: the user's --points, then the size ladder (search/warm_start.py)."""
    points = load_points(s.points, space) if s.points else []
    ladder = size_ladder(space, base, min(s.warm_start, s.trials // 2), s.size_metric, s.seed)
    return points + [p for p in ladder if p not in points]


def load_points(path: str, space: SearchSpace) -> list[dict]:
    pts = read_yaml(path, "--points")
    if not isinstance(pts, list) or not all(isinstance(p, dict) for p in pts):
        raise UserError(f"--points {path!r}: must be a YAML list of mappings of searched keys to values")
    keys = set(space.keys())
    for i, p in enumerate(pts):
        missing, unknown = keys - set(p), set(p) - keys
        if missing or unknown:  # keys may be anything YAML holds (ints, long strings): sorted as text, cut short
            raise UserError(f"--points {path!r}: point {i} must set exactly the searched keys; missing "
                            f"{excerpt(sorted(missing), 200)}, unknown {excerpt(sorted(unknown, key=str), 200)}")
        for k, v in p.items():  # before encode() turns a list into text
            try:
                coerce(k, field_type(k), v)
            except UserError as e:
                raise UserError(f"--points {path!r}: point {i}: {e}") from None
    return [{k: encode(v) for k, v in p.items()} for p in pts]
