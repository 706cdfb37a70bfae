"""`simmim-ray search`: Ray Tune runs trials, Optuna proposes configs, the answer is the smallest feasible model.

The experiment directory and its records: search/experiment.py.
"""
from __future__ import annotations

import logging
import os

from simmim_ray.config import Config
from simmim_ray.errors import NoFeasibleTrial, UserError
from simmim_ray.metrics import (CONFIRM_VAL_ACCURACY_MEAN, CONFIRM_VAL_ACCURACY_PER_SEED, CONFIRM_VAL_ACCURACY_STD,
                                EPOCH, TEST_ACCURACY_MEAN, TEST_ACCURACY_STD, VAL_ACCURACY)
from simmim_ray.search.experiment import TB, TRIAL_PATH, Experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.space import SearchSpace


def reuse_actors(lean: bool) -> bool:
    """On the lean trial path Tune hands a finished or stopped trial's actor to the next trial: saves a process
    start and the trial module's imports (torch) per trial; safe because the trial function ends its Train run when
    Tune stops it (trial_stop.py). On the public path Tune ends the trial actor instead, which ends its Train run."""
    return lean


def default_concurrency(s: SearchSettings, cluster: dict) -> int:
    """Trials that fit at once, so no trial driver waits for workers that can never be placed."""
    per_trial_cpu = s.workers_per_trial * s.cpus_per_worker
    fit = int(cluster.get("CPU", 1) // per_trial_cpu) if per_trial_cpu > 0 else 1
    if s.gpu:
        per_trial_gpu = s.workers_per_trial * s.gpus_per_worker
        fit = min(fit, int(cluster.get("GPU", 0) // per_trial_gpu)) if per_trial_gpu > 0 else fit
    return max(1, fit)


def check_fits(s: SearchSettings, cluster: dict, where: str = "the Ray cluster") -> None:
    from simmim_ray.resources import check_fits as fits

    fits(s.workers_per_trial, s.cpus_per_worker, s.gpus_per_worker, s.gpu, cluster, "--workers-per-trial", where,
         job="one trial")


def run_search(s: SearchSettings, space: SearchSpace, base: Config, exp: Experiment, resume: bool) -> int:
    """Runs (or, with `resume`, continues) the search in experiment `exp`; -> exit code."""
    import ray
    from ray import tune

    from simmim_ray.train.launch import Resources
    from simmim_ray.search.recorder import Recorder
    from simmim_ray.search.trust import TUNER_PKL, record_experiment
    from simmim_ray.search.trust_callback import PickleDigests
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.study_store import close_study, optuna_storage, upload_study
    from simmim_ray.search.trial import make_trial_fn, trial_name
    from simmim_ray import storage as sio
    from simmim_ray._compat import trial_path

    quiet_optuna()
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
    # a streamed source's Ray Data reads within each trial's share of a fixed (local) cluster (train/data_cpus.py)
    res = Resources(workers=s.workers_per_trial, gpu=s.gpu, cpus_per_worker=s.cpus_per_worker,
                    gpus_per_worker=s.gpus_per_worker, threads=max(1, int(s.cpus_per_worker)),
                    cpu_share=0.0 if s.address else cluster.get("CPU", 0) / concurrency)
    lean = trial_path() == "lean"
    check_trial_path(exp, lean, resume)
    from simmim_ray.train.launch import share_splits

    shared = share_splits(base)  # the data, loaded once: every trial, confirmation and baseline uses these splits
    from simmim_ray.train.loop_config import Remeasure

    remeasure = Remeasure(s.target_accuracy, s.remeasure_seeds) if s.remeasure_seeds else None
    trial_fn = make_trial_fn(base.to_dict(), res, exp.uri, s.max_failures, shared=shared, lean=lean,
                             remeasure=remeasure)
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
        searcher = make_searcher(s, space, base, points, storage)
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
    why = finished_reason(storage, s.name)
    if why:
        print(f"simmim-ray search: no more trials: {why}", flush=True)
    from simmim_ray.search.answer import Runner

    return finish(s, exp, Runner(base, res, concurrency, shared, s.max_failures))


def quiet_optuna() -> None:
    """Optuna logs "A new study created in RDB with name: ..." (and each trial's end) at INFO: the search's own
    lines say what happens. Its warnings still show."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def check_trial_path(exp: Experiment, lean: bool, resume: bool) -> None:
    """A restored Tune keeps the actor reuse the search started with, which fits only that trial path: record it,
    and refuse to resume on the other one."""
    from simmim_ray import storage as sio

    path, record = ("lean" if lean else "public"), exp.path(TRIAL_PATH)
    if resume and sio.exists(record):
        was = sio.read_bytes(record).decode().strip()
        if was != path:
            raise UserError(f"--resume {exp.uri}: the search ran the {was} trial path, but this Ray gives the "
                            f"{path} path; resume with SIMMIM_RAY_TRIAL_PATH={was} (or the Ray the search started "
                            f"with)")
    sio.write_text(record, path)


def finish(s: SearchSettings, exp: Experiment, runner=None) -> int:
    """Write results.parquet, history.parquet; confirm and measure the baselines (`runner`: search/answer.py;
    None: only what the ledger holds); best/, pareto.png, TensorBoard HParams; print the report. Exit 3 when
    nothing is feasible on validation, or no candidate confirms on validation with fresh seeds."""
    from simmim_ray.search import hparams, report, results
    from simmim_ray.search.answer import export, run_answer

    table, history = results.write_tables(exp, s.target_accuracy, s.size_metric)
    if runner is not None:
        rep = run_answer(s, exp, table, runner)
    else:
        rep = report.build(s, table, exp.ledger.events(), None)
        export(exp, table, rep)
    win = rep["winner"]
    results.plot_pareto(exp, table, s.target_accuracy, s.size_metric,
                        next((r for r in table if win and r["trial_id"] == win["trial_id"]), None))
    hparams.write(exp, s, table, history, rep)
    print(report.format_text(rep, s), flush=True)
    print(f"TensorBoard: tensorboard --logdir {exp.path(TB)}", flush=True)
    if win is None:
        raise NoFeasibleTrial(no_answer_message(s, exp, table, rep))
    return 0


def no_answer_message(s: SearchSettings, exp: Experiment, table: list[dict], rep: dict) -> str:
    best = rep.get("best_confirmed")
    if best is not None:
        from simmim_ray.search.report import bound_name

        return (f"no candidate confirmed accuracy >= {s.target_accuracy:g} on validation (its "
                f"{bound_name(s.feasibility)} over {len(best[CONFIRM_VAL_ACCURACY_PER_SEED])} fresh seeds); best "
                f"confirmed was {best['trial_id']} ({s.size_metric} {best[s.size_metric]:,.0f}) at "
                f"{best[CONFIRM_VAL_ACCURACY_MEAN]:.4f} ± "
                f"{best[CONFIRM_VAL_ACCURACY_STD]:.4f} on validation (test {best[TEST_ACCURACY_MEAN]:.4f} ± "
                f"{best[TEST_ACCURACY_STD]:.4f}, reported only); report written to {exp.uri}")
    if rep.get("answer") == "pending":
        return f"confirmation did not finish; continue it with --resume {exp.uri}"
    from simmim_ray.search.results import measured

    top = max((r for r in table if measured(r, s.size_metric)), key=lambda r: r[VAL_ACCURACY], default=None)
    if top is None:
        return f"no trial finished; see {exp.uri}/results.parquet"
    return (f"no trial reached accuracy >= {s.target_accuracy:g}; best was {top[VAL_ACCURACY]:.4f} by "
            f"{top['trial_id']} ({s.size_metric} {top[s.size_metric]:,.0f}); report written to {exp.uri}")


def make_searcher(s: SearchSettings, space: SearchSpace, base: Config, points: list[dict], storage=None):
    """The search's one objective (size) under the accuracy constraint, sizes computed before training, within
    the trial and compute budgets (search/searcher.py)."""
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.size import SizeOf
    from simmim_ray.search.space import to_optuna

    return ConstrainedOptunaSearch(to_optuna(space), s.size_metric, s.target_accuracy, storage=storage,
                                   study_name=s.name, seed=s.seed, points_to_evaluate=points or None,
                                   sampler=s.sampler, budget=s.trials, size_of=SizeOf(base.to_dict(), s.size_metric),
                                   budget_epochs=s.budget_epochs, budget_seconds=s.budget_seconds)


def finished_reason(storage, study_name: str) -> str:
    """Why the searcher stopped proposing trials before Tune's trial count ran out ("" if it did not)."""
    import optuna

    from simmim_ray.search.searcher import FINISHED_ATTR

    try:
        return optuna.load_study(study_name=study_name, storage=storage).user_attrs.get(FINISHED_ATTR, "")
    except Exception:  # noqa: BLE001 - a message only: the study's trials are what counts
        return ""


def rungs(s: SearchSettings, base: Config) -> list[int]:
    """The constraint stopper's rungs: every grace_period pre-training epochs, before the last."""
    step = min(s.grace_period, base.train.epochs)
    return list(range(step, base.train.epochs, step))


def make_scheduler(s: SearchSettings, base: Config, protect: list[dict] | None = None):
    """The constraint stopper (default), ASHA on the per-epoch proxy (never stopping the `protect` points: the
    warm start), or FIFO."""
    from ray.tune.schedulers import FIFOScheduler

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
    from simmim_ray.config import coerce, field_type
    from simmim_ray.errors import excerpt
    from simmim_ray.search.space import encode

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
