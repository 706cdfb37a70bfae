"""The stage after a search, on the driver: confirmation of the smallest candidates (re-measured on validation with
fresh seeds, which decides; test measured in the same runs, reported only), the baselines, best/. Each result is
appended to the ledger as it arrives (CONFIRMATION, BASELINE events); the answer itself is derived from the ledger
(search/answer/report.py), so a resumed search measures nothing twice and `simmim-ray report` says exactly what the
search said.

Event fields. CONFIRMATION: trial_id, job (Train run name), mode (finetune | pretrain), seeds (asked), runs (one
dict per seed measured: seed, val/test accuracy and count, seconds, cpu_seconds, pretrain_epochs), params, flops,
error (one line, "" when it ran), started, wall_s, gpu_seconds. BASELINE: name (pixel_logreg | scratch); a scratch
event has the fields of a confirmation event (mode "scratch"), a pixel_logreg one test_accuracy, test_count,
labeled_images, labeled_fraction, or skipped (why).
"""
from __future__ import annotations

import dataclasses
import time

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.io import storage
from simmim_ray.io.configio import load_config, parse_set
from simmim_ray.io.export import export_best, latest_checkpoint
from simmim_ray.metrics import FLOPS, PARAMS, TEST_ACCURACY, VAL_ACCURACY
# baselines and seed_jobs by module: tests replace their Train jobs and the pixel baseline there
from simmim_ray.search.answer import baselines, confirm, report, seed_jobs
from simmim_ray.search.answer.baselines import PIXEL_LOGREG, SCRATCH
from simmim_ray.search.answer.seed_jobs import SeedJobSetup
from simmim_ray.search.record import ledger
from simmim_ray.search.record.experiment import BEST, TRAIN_RUNS, Experiment
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.space import decode, load_space
from simmim_ray.train.loop_config import SeedJob


def measure_answer(s: SearchSettings, exp: Experiment, rows: list[dict], setup: SeedJobSetup) -> dict:
    """Measures whatever of the answer is not in the ledger yet (the pixel baseline, the candidates' confirmation,
    the scratch baseline), records best/; -> the report (search/answer/report.py)."""
    lf = setup.base.eval.labeled_fraction
    if not exp.ledger.events(ledger.BASELINE, name=PIXEL_LOGREG):
        _pixel_logreg(exp, setup, lf)
    seeds = confirm.confirm_seeds(s.confirm_seeds, s.seed)
    if s.confirm:
        cands = confirm.candidates(rows, s.confirm, s.size_metric)
        measured = confirm.merge(report.confirmation_events(exp.ledger.events(), s.confirm_reseed), seeds)
        todo = {c["trial_id"]: confirm.missing_seeds(measured.get(c["trial_id"]), seeds) for c in cands}
        if any(todo.values()) and not confirm.pick_winner(cands, measured, seeds, s.target_accuracy, s.feasibility)[1]:
            which = "the smallest candidate" if len(cands) == 1 else f"the {len(cands)} smallest candidates"
            print(f"simmim-ray: confirming {which}: re-measured on validation with "
                  f"{len(seeds)} fresh seed{'' if len(seeds) == 1 else 's'} each (re-seeding the {s.confirm_reseed}); "
                  f"test measured alongside, reported only", flush=True)
            _run(s, exp, setup, rows, ledger.CONFIRMATION, confirm.plan_jobs(todo, s.confirm_reseed, setup.concurrency),
                 cands=cands)
        rep = report.build(s, rows, exp.ledger.events(), lf)
        ref = rep["winner"] or rep["best_confirmed"]
        if ref is not None:
            done = confirm.merge(report.scratch_events(exp.ledger.events(), ref["trial_id"]), seeds)
            missing = confirm.missing_seeds(done.get(ref["trial_id"]), seeds)
            if missing:
                print(f"simmim-ray: baseline: {ref['trial_id']}'s architecture from scratch, same fine-tune and "
                      f"seeds", flush=True)
                _run(s, exp, setup, rows, ledger.BASELINE,
                     confirm.plan_jobs({ref["trial_id"]: missing}, SCRATCH, setup.concurrency))
    rep = report.build(s, rows, exp.ledger.events(), lf)
    export(exp, rows, rep)
    return rep


def base_config(exp: Experiment, s) -> Config | None:
    """The search's base config (the space's `fixed:` under the user's --set) from the experiment's own copy of
    its inputs, as --resume composes it; None when the inputs are gone."""
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
    e = exp.ledger.latest(ledger.BASELINE, name=PIXEL_LOGREG)
    return e.get("labeled_fraction") if e else None


def _pixel_logreg(exp: Experiment, setup: SeedJobSetup, lf: float) -> None:
    splits = None
    if setup.shared is not None and setup.shared.ref is not None:  # in memory (a streamed source has no ref)
        import ray  # only for a search's in-memory splits: `report` imports this module

        splits = ray.get(setup.shared.ref)  # the search's own splits: the same labelled and test images
    try:
        out = baselines.pixel_logreg(setup.base, splits)
    except (MemoryError, ValueError) as e:  # e.g. one class only among the labelled images
        out = {"test_accuracy": None, "skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    exp.ledger.append(ledger.BASELINE, name=PIXEL_LOGREG, labeled_fraction=lf, **out)


def _run(s, exp: Experiment, setup: SeedJobSetup, rows: list[dict], event: str, planned: list[SeedJob],
         cands: list[dict] | None = None) -> None:
    """Runs the `planned` seed jobs, recording each as it ends; with `cands` (confirmation), jobs not started yet
    are dropped as soon as the answer is decided (a smaller candidate confirmed: the larger ones cannot change it)."""
    by_id = {r["trial_id"]: r for r in rows}
    configs = {t: setup.base.with_overrides(decode({k: v for k, v in by_id[t].items() if "." in k})).to_dict()
               for t in {job.trial_id for job in planned}}
    specs = [_with_checkpoint(exp, job, by_id[job.trial_id]) for job in planned]
    gpus = setup.res.workers * setup.res.gpus_per_worker if setup.res.gpu else 0.0
    seeds = confirm.confirm_seeds(s.confirm_seeds, s.seed)

    def done(job: SeedJob, metrics: dict, error: str, wall: float) -> bool:
        extra = {"name": SCRATCH} if event == ledger.BASELINE else {}
        if not job.init_path and job.mode == "finetune" and not error:
            error = f"no checkpoint of {job.trial_id} under {exp.path(TRAIN_RUNS, job.trial_id)}"
        exp.ledger.append(event, **extra, trial_id=job.trial_id, job=job.name, mode=job.mode, seeds=list(job.seeds),
                          runs=metrics.get("runs", []), params=metrics.get(PARAMS), flops=metrics.get(FLOPS),
                          error=error, started=time.time() - wall, wall_s=wall, gpu_seconds=wall * gpus)
        runs = metrics.get("runs", [])
        val, test = (", ".join(f"{r[k]:.3f}" for r in runs) for k in (VAL_ACCURACY, TEST_ACCURACY))
        tag = "confirm" if event == ledger.CONFIRMATION else "scratch"
        print(f"[{tag}] {job.trial_id} seeds {list(job.seeds)}: "
              + (f"ERROR: {error}" if error else f"validation accuracy {val}; test {test}") + f" ({wall:.0f} s)",
              flush=True)
        if cands is None:
            return False
        measured = confirm.merge(report.confirmation_events(exp.ledger.events(), s.confirm_reseed), seeds)
        win, final = confirm.pick_winner(cands, measured, seeds, s.target_accuracy, s.feasibility)
        return win is not None and final

    # a finetune job without its trial's checkpoint cannot run: record why instead of failing in the workers
    runnable = [job for job in specs if job.init_path or job.mode != "finetune"]
    for job in specs:
        if job not in runnable:
            done(job, {}, "", 0.0)
    seed_jobs.run_jobs(runnable, configs, setup, exp.path(TRAIN_RUNS), done)


def _with_checkpoint(exp: Experiment, job: SeedJob, row: dict) -> SeedJob:
    """A "finetune" job starts from its trial's pre-trained checkpoint ("" when there is none: it is not run)."""
    if job.mode != "finetune":
        return job
    ckpt = latest_checkpoint(exp.path(TRAIN_RUNS, job.trial_id), row.get("checkpoint_path") or "")
    return dataclasses.replace(job, init_path=ckpt or "")


def export(exp: Experiment, rows: list[dict], rep: dict) -> None:
    """best/ holds the answer: the confirmed winner (or, with --confirm 0, the validation winner, marked
    unconfirmed); with no answer, no best/."""
    w = rep["winner"]
    if w is None:  # a resume with other confirmation settings can undo an earlier answer
        fs, path, _ = storage.resolve_storage(exp.path(BEST))
        if storage.exists(exp.path(BEST)):
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
