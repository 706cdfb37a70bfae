"""The answer stage as the search runs it when its trials end (and `report` re-derives it): the results tables, the
seed jobs of confirmation and the baselines (search/answer/answer.py), best/, pareto.png, TensorBoard's HParams
table, the printed report, and the exit code. It never touches Tune: change the answer here, not in the driver."""
from __future__ import annotations

from simmim_ray.errors import NoFeasibleTrial
from simmim_ray.metrics import (CONFIRM_VAL_ACCURACY_MEAN, CONFIRM_VAL_ACCURACY_PER_SEED, CONFIRM_VAL_ACCURACY_STD,
                                TEST_ACCURACY_MEAN, TEST_ACCURACY_STD, VAL_ACCURACY)
from simmim_ray.search.answer import hparams, report, tables
from simmim_ray.search.answer.answer import export, measure_answer
from simmim_ray.search.answer.seed_jobs import SeedJobSetup
from simmim_ray.search.record.experiment import TB, Experiment
from simmim_ray.search.settings import SearchSettings


def run_answer_stage(s: SearchSettings, exp: Experiment, setup: SeedJobSetup | None = None) -> int:
    """Write results.parquet, history.parquet; confirm and measure the baselines (seed jobs run with `setup`; None:
    only what the ledger holds); best/, pareto.png, TensorBoard HParams; print the report. Exit 3 when nothing is
    feasible on validation, or no candidate confirms on validation with fresh seeds."""
    table, history = tables.write_tables(exp, s.target_accuracy, s.size_metric)
    if setup is not None:
        rep = measure_answer(s, exp, table, setup)
    else:
        rep = report.build(s, table, exp.ledger.events(), None)
        export(exp, table, rep)
    win = rep["winner"]
    tables.plot_pareto(exp, table, s.target_accuracy, s.size_metric,
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
        return (f"no candidate confirmed accuracy >= {s.target_accuracy:g} on validation (its "
                f"{report.bound_name(s.feasibility)} over {len(best[CONFIRM_VAL_ACCURACY_PER_SEED])} fresh seeds); "
                f"best confirmed was {best['trial_id']} ({s.size_metric} {best[s.size_metric]:,.0f}) at "
                f"{best[CONFIRM_VAL_ACCURACY_MEAN]:.4f} ± "
                f"{best[CONFIRM_VAL_ACCURACY_STD]:.4f} on validation (test {best[TEST_ACCURACY_MEAN]:.4f} ± "
                f"{best[TEST_ACCURACY_STD]:.4f}, reported only); report written to {exp.uri}")
    if rep.get("answer") == "pending":
        return f"confirmation did not finish; continue it with --resume {exp.uri}"
    top = max((r for r in table if tables.measured(r, s.size_metric)), key=lambda r: r[VAL_ACCURACY], default=None)
    if top is None:
        return f"no trial finished; see {exp.uri}/results.parquet"
    return (f"no trial reached accuracy >= {s.target_accuracy:g}; best was {top[VAL_ACCURACY]:.4f} by "
            f"{top['trial_id']} ({s.size_metric} {top[s.size_metric]:,.0f}); report written to {exp.uri}")
