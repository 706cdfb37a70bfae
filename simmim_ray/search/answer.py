"""The stage after a search, on the driver: confirmation of the smallest candidates (re-measured on validation with
fresh seeds, which decides; test measured in the same runs, reported only), the baselines, best/. Each result is
appended to the ledger as it arrives (CONFIRMATION, BASELINE events); the answer itself is derived from the ledger
(search/report.py), so a resumed search measures nothing twice and `simmim-ray report` says exactly what the search
said.

Event fields. CONFIRMATION: trial_id, job (Train run name), mode (finetune | pretrain), seeds (asked), runs (one
dict per seed measured: seed, val/test accuracy and count, seconds, cpu_seconds, pretrain_epochs), params, flops,
error (one line, "" when it ran), started, wall_s, gpu_seconds. BASELINE: name (pixel_logreg | scratch); a scratch
event has the fields of a confirmation event (mode "scratch"), a pixel_logreg one test_accuracy, test_count,
labeled_images, labeled_fraction, or skipped (why).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from simmim_ray.config import Config
from simmim_ray.metrics import FLOPS, PARAMS, TEST_ACCURACY, VAL_ACCURACY
from simmim_ray.search import confirm as cf
from simmim_ray.search import ledger as lg
from simmim_ray.search import report
from simmim_ray.search.baselines import PIXEL_LOGREG, SCRATCH
from simmim_ray.search.experiment import BEST, TRAIN_RUNS, Experiment
from simmim_ray.search.space import decode


@dataclass
class Runner:
    """What the driver runs the stage's Train jobs with: the search's base config and trial resources."""

    base: Config
    res: object  # train.launch.Resources
    concurrency: int
    shared: object = None  # train.launch.SharedSplits
    max_failures: int = 1


def run_answer(s, exp: Experiment, rows: list[dict], runner: Runner) -> dict:
    """Runs whatever of the stage is not in the ledger yet; -> the report (search/report.py)."""
    lf = runner.base.eval.labeled_fraction
    if not exp.ledger.events(lg.BASELINE, name=PIXEL_LOGREG):
        _pixel_logreg(exp, runner, lf)
    seeds = cf.confirm_seeds(s.confirm_seeds, s.seed)
    if s.confirm:
        cands = cf.candidates(rows, s.confirm, s.size_metric)
        measured = cf.merge(report.confirmation_events(exp.ledger.events(), s.confirm_reseed), seeds)
        todo = {c["trial_id"]: cf.missing_seeds(measured.get(c["trial_id"]), seeds) for c in cands}
        if any(todo.values()) and not cf.pick_winner(cands, measured, seeds, s.target_accuracy, s.feasibility)[1]:
            which = "the smallest candidate" if len(cands) == 1 else f"the {len(cands)} smallest candidates"
            print(f"simmim-ray: confirming {which}: re-measured on validation with "
                  f"{len(seeds)} fresh seed{'' if len(seeds) == 1 else 's'} each (re-seeding the {s.confirm_reseed}); "
                  f"test measured alongside, reported only", flush=True)
            _run(s, exp, runner, rows, lg.CONFIRMATION, cf.plan_jobs(cf.CONFIRM, todo, s.confirm_reseed,
                                                                     runner.concurrency), cands=cands)
        rep = report.build(s, rows, exp.ledger.events(), lf)
        ref = rep["winner"] or rep["best_confirmed"]
        if ref is not None:
            done = cf.merge(report.scratch_events(exp.ledger.events(), ref["trial_id"]), seeds)
            missing = cf.missing_seeds(done.get(ref["trial_id"]), seeds)
            if missing:
                print(f"simmim-ray: baseline: {ref['trial_id']}'s architecture from scratch, same fine-tune and "
                      f"seeds", flush=True)
                _run(s, exp, runner, rows, lg.BASELINE,
                     cf.plan_jobs(cf.SCRATCH, {ref["trial_id"]: missing}, SCRATCH, runner.concurrency))
    rep = report.build(s, rows, exp.ledger.events(), lf)
    export(exp, rows, rep)
    return rep


def base_config(exp: Experiment, s) -> Config | None:
    """The search's base config (the space's `fixed:` under the user's --set) from the experiment's own copy of
    its inputs, as --resume composes it; None when the inputs are gone."""
    from simmim_ray.configio import load_config, parse_set
    from simmim_ray.errors import UserError
    from simmim_ray.search.space import load_space

    try:
        config_path = exp.input_file(s.config_path) or None
        space = load_space(exp.input_file(s.space_path), load_config(config_path, list(s.overrides)))
        return space.base_config(load_config(config_path)).with_overrides(parse_set(list(s.overrides)))
    except (UserError, OSError):
        return None


def labeled_fraction(exp: Experiment, s) -> float | None:
    base = base_config(exp, s)
    if base is not None:
        return base.eval.labeled_fraction
    e = exp.ledger.latest(lg.BASELINE, name=PIXEL_LOGREG)
    return e.get("labeled_fraction") if e else None


def _pixel_logreg(exp: Experiment, runner: Runner, lf: float) -> None:
    from simmim_ray.search.baselines import pixel_logreg

    splits = None
    if runner.shared is not None and runner.shared.ref is not None:  # in memory (a streamed source has no ref)
        import ray

        splits = ray.get(runner.shared.ref)  # the search's own splits: the same labelled and test images
    try:
        out = pixel_logreg(runner.base, splits)
    except (MemoryError, ValueError) as e:  # e.g. one class only among the labelled images
        out = {"test_accuracy": None, "skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    exp.ledger.append(lg.BASELINE, name=PIXEL_LOGREG, labeled_fraction=lf, **out)


def _run(s, exp: Experiment, runner: Runner, rows: list[dict], event: str, jobs: list[cf.Job],
         cands: list[dict] | None = None) -> None:
    """Runs `jobs`, recording each as it ends; with `cands` (confirmation), jobs not started yet are dropped as
    soon as the answer is decided (a smaller candidate confirmed: the larger ones cannot change it)."""
    from simmim_ray.search.seed_jobs import JobSpec, run_jobs

    by_id = {r["trial_id"]: r for r in rows}
    specs = []
    for job in jobs:
        row = by_id[job.trial_id]
        cfg = runner.base.with_overrides(decode({k: v for k, v in row.items() if "." in k}))
        init = ""
        if job.mode == "finetune":
            from simmim_ray.export import latest_checkpoint

            init = latest_checkpoint(exp.path(TRAIN_RUNS, job.trial_id), row.get("checkpoint_path") or "") or ""
        specs.append(JobSpec(job, cfg.to_dict(), init))
    gpus = runner.res.workers * runner.res.gpus_per_worker if runner.res.gpu else 0.0
    seeds = cf.confirm_seeds(s.confirm_seeds, s.seed)

    def done(spec: JobSpec, metrics: dict, error: str, wall: float) -> bool:
        job = spec.job
        extra = {"name": SCRATCH} if event == lg.BASELINE else {}
        if not spec.init_path and job.mode == "finetune" and not error:
            error = f"no checkpoint of {job.trial_id} under {exp.path(TRAIN_RUNS, job.trial_id)}"
        exp.ledger.append(event, **extra, trial_id=job.trial_id, job=job.name, mode=job.mode, seeds=list(job.seeds),
                          runs=metrics.get("runs", []), params=metrics.get(PARAMS), flops=metrics.get(FLOPS),
                          error=error, started=time.time() - wall, wall_s=wall, gpu_seconds=wall * gpus)
        runs = metrics.get("runs", [])
        val, test = (", ".join(f"{r[k]:.3f}" for r in runs) for k in (VAL_ACCURACY, TEST_ACCURACY))
        print(f"[{'confirm' if event == lg.CONFIRMATION else 'scratch'}] {job.trial_id} seeds {list(job.seeds)}: "
              + (f"ERROR: {error}" if error else f"validation accuracy {val}; test {test}") + f" ({wall:.0f} s)",
              flush=True)
        if cands is None:
            return False
        measured = cf.merge(report.confirmation_events(exp.ledger.events(), s.confirm_reseed), seeds)
        win, final = cf.pick_winner(cands, measured, seeds, s.target_accuracy, s.feasibility)
        return win is not None and final

    # a finetune job without its trial's checkpoint cannot run: record why instead of failing in the workers
    runnable = [sp for sp in specs if sp.init_path or sp.job.mode != "finetune"]
    for sp in specs:
        if sp not in runnable:
            done(sp, {}, "", 0.0)
    run_jobs(runnable, runner.res, exp.path(TRAIN_RUNS), runner.concurrency, runner.shared, runner.max_failures,
             done)


def export(exp: Experiment, rows: list[dict], rep: dict) -> None:
    """best/ holds the answer: the confirmed winner (or, with --confirm 0, the validation winner, marked
    unconfirmed); with no answer, no best/."""
    from simmim_ray import storage as sio
    from simmim_ray.export import export_best, latest_checkpoint

    w = rep["winner"]
    if w is None:  # a resume with other confirmation settings can undo an earlier answer
        fs, path, _ = sio.resolve_storage(exp.path(BEST))
        if sio.exists(exp.path(BEST)):
            fs.delete_dir(path)
        return
    row = next(r for r in rows if r["trial_id"] == w["trial_id"])
    ckpt = latest_checkpoint(exp.path(TRAIN_RUNS, w["trial_id"]), row.get("checkpoint_path") or "")
    if ckpt is None:
        print(f"simmim-ray: warning: could not export {w['trial_id']}: no checkpoint under "
              f"{exp.path(TRAIN_RUNS, w['trial_id'])}", flush=True)
        return
    conf = rep["confirmation"]
    metrics = {**{k: v for k, v in row.items() if "." not in k}, **{k: v for k, v in w.items() if k != "config"},
               "seeds": conf["seeds"], "reseed": conf["reseed"], "feasibility": conf["feasibility"],
               "selected_on": rep["selected_on"], "selection_rule": rep["selection_rule"]}
    export_best(ckpt, exp.path(BEST), metrics)
