"""Search methods replayed over the benchmark table against its known optimum (issue 21): which finds the smallest
model that meets the target, S*, with how much compute.

Every configuration of the space was trained once and fine-tuned under 3 seeds (benchmarks/search_table.py), so a
search can be replayed without training: the methods (benchmarks/replay_methods.py) decide as in a real search
(benchmarks/search_sim.py drives their Tune searcher and scheduler in virtual time, one trial at a time as the
default search runs on 2 cores), and a trial of configuration c in replay seed s reports c's per-epoch proxy and the
validation accuracy of one of c's fine-tune seeds, drawn from (s, c) alone: paired seeds, the same noise for every
method. A trial costs the CPU seconds of the epochs it ran and, if it finished, of its drawn fine-tune.

The answer is the service's: after the search the 3 smallest trials feasible on validation are confirmed with the
configuration's 3 fine-tune seeds on validation; the smallest whose mean meets the target wins (the size scan
confirms each candidate as it comes instead). Budgets are compute, confirmation included, in multiples of the
default search's (`trials` full trials at the table's median cost, plus confirming 3 candidates). Each (seed,
method) runs once up to the largest budget; the answer at compute c is what the service would have answered had
the search stopped at the last moment whose confirmation still ends by c.

    python -m benchmarks.search_replay                 # 50 seeds on benchmarks/tables/digits_quick.json
    python -m benchmarks.search_replay --quick         # 5 seeds on the table's recipe slice (CI); writes nothing
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from benchmarks import common
from benchmarks import replay_table as rt
from benchmarks.replay_methods import CONFIRM_SEEDS, METHODS, Context, Method, confirms

CONFIRM = 3  # candidates confirmed (search/settings.py: confirm)
MULTIPLES = (0.5, 1.0, 2.0)
SLOTS = 1  # the default search on 2 cores runs 1 trial of 2 workers at a time
QUICK_SEEDS = 5


@dataclass(frozen=True)
class TrialLog:
    key: str
    ft_seed: int  # the fine-tune seed the trial drew
    outcome: str  # finished | pruned | cut
    epochs: int
    start: float  # search compute when it started
    end: float | None  # search compute when it finished or was stopped


@dataclass(frozen=True)
class Moment:
    """An answer the service could give: the search stopped at `search` CPU s, the answer known at `at`."""
    search: float
    at: float
    key: str | None  # the winner's configuration; None: no candidate confirmed


@dataclass(frozen=True)
class Run:
    seed: int
    method: str
    trials: tuple[TrialLog, ...]
    moments: tuple[Moment, ...]
    end: float  # compute when the method ended on its own; inf: the compute cap ended it

    def answer_at(self, compute: float) -> str | None:
        """The configuration answered within `compute`: that of the latest stop whose confirmation ends by then."""
        fits = [m for m in self.moments if m.at <= compute]
        return max(fits, key=lambda m: m.search).key if fits else None

    def spent_at(self, compute: float) -> float:
        return min(compute, self.end)


def confirm_cost(row: rt.Row) -> float:
    return sum(f.cpu_s for f in row.finetunes[:CONFIRM_SEEDS])


def service_moments(table: rt.Table, trials, k: int) -> list[Moment]:
    """After each trial that ends feasible on validation: the `k` smallest such configurations so far are confirmed
    (all of them, side by side); the smallest that confirms is the answer. A configuration run twice (a searcher
    repeats one only in an exhausted grid) is one candidate: its confirmation would measure the same seeds."""
    feas = sorted((t for t in trials if t.outcome == "finished" and t.val_accuracy >= table.target),
                  key=lambda t: t.compute_at_end)
    out = []
    for i, t in enumerate(feas):
        ranked = sorted(feas[:i + 1], key=lambda c: (c.trace[table.size_metric], -c.val_accuracy, c.trial_id))
        keys = list(dict.fromkeys(table.row(c.config).key for c in ranked))[:k]
        rows = [table.rows[key] for key in keys]
        winner = next((r.key for r in rows if confirms(table, r.point, CONFIRM_SEEDS)), None)
        out.append(Moment(t.compute_at_end, t.compute_at_end + sum(confirm_cost(r) for r in rows), winner))
    return out


def inline_moments(table: rt.Table, trials) -> list[Moment]:
    """The size scan confirmed each feasible trial as it ended (its trace carries the cost): the first confirmed
    one is the answer from then on."""
    return [Moment(t.compute_at_end, t.compute_at_end, table.row(t.config).key) for t in trials
            if t.outcome == "finished" and t.val_accuracy >= table.target and confirms(table, t.config, CONFIRM_SEEDS)]


def tracer(table: rt.Table, method: Method, seed: int):
    """params -> the trace of a trial of that configuration in replay seed `seed` under `method`."""
    n_val = rt.val_count(table) if method.remeasure else 0

    def trace_of(params: dict) -> dict:
        row = table.row(params)
        i = rt.draw(seed, row.key, len(row.finetunes))
        drawn = row.finetunes[i]
        val, cpu = drawn.val_accuracy, drawn.cpu_s
        if method.remeasure and method.remeasure(val, table.target, n_val):
            more = [f for j, f in enumerate(row.finetunes) if j != i][:2]
            val = statistics.fmean([val, *(f.val_accuracy for f in more)])
            cpu += sum(f.cpu_s for f in more)
        if method.confirm_inline and val >= table.target:
            cpu += confirm_cost(row)
        trace = row.trace(val, cpu)
        trace["ft_seed"] = drawn.seed
        return trace

    return trace_of


def replay(table: rt.Table, method_name: str, seed: int, cap: float) -> Run:
    """One search of `method_name` in replay seed `seed`, up to `cap` CPU seconds."""
    import optuna

    from benchmarks.search_sim import simulate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    method = METHODS[method_name]
    ctx = Context(table, seed)
    sim = simulate(method.searcher(ctx), method.scheduler(ctx), tracer(table, method, seed), table.epochs, cap, SLOTS)
    moments = inline_moments(table, sim.trials) if method.confirm_inline else service_moments(table, sim.trials,
                                                                                             CONFIRM)
    end = float("inf")
    if sim.exhausted:
        end = sim.compute + (0.0 if method.confirm_inline or not moments else moments[-1].at - moments[-1].search)
    logs = tuple(TrialLog(table.row(t.config).key, t.trace["ft_seed"], t.outcome, t.epochs_run, t.compute_at_start,
                          t.compute_at_end) for t in sim.trials)
    return Run(seed, method_name, logs, tuple(moments), end)


def _replay_task(task: tuple) -> Run:
    return replay(*task)


def run_all(table: rt.Table, methods: list[str], seeds: list[int], cap: float, jobs: int = 1) -> list[Run]:
    tasks = [(table, m, s, cap) for s in seeds for m in methods]
    if jobs <= 1:
        return [_replay_task(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_replay_task, tasks, chunksize=max(1, len(tasks) // (4 * jobs))))


def quick_slice(table: rt.Table) -> rt.Table:
    """Every architecture under one recipe (the first row's values of the other keys): the CI slice."""
    first = next(iter(table.rows.values()))
    return table.restrict({k: [first.point[k]] for k in table.keys if not k.startswith("model.")})


def main(argv: list[str] | None = None) -> int:
    from benchmarks import replay_report
    from benchmarks.search_table import table_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=table_path("digits_quick"), help="the benchmark table (search_table.py)")
    ap.add_argument("--seeds", type=int, default=None, help=f"replay seeds 0..N-1 (default 50; {QUICK_SEEDS} with "
                                                            "--quick)")
    ap.add_argument("--methods", nargs="+", default=None, choices=sorted(METHODS),
                    help="default: every method this checkout can build")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds on the table's first recipe slice; "
                                                         "writes only what --results / --png name")
    ap.add_argument("--jobs", type=int, default=1, help="searches replayed at once (one core each)")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--png", default=None, help="the anytime plot (default benchmarks/search_replay.png)")
    ap.add_argument("--no-write", action="store_true", help="print only (the plot is still written to --png)")
    args = ap.parse_args(argv)
    if args.quick and args.results is None:
        args.no_write = True
    png = args.png or (None if args.quick else os.path.join(os.path.dirname(common.RESULTS), "search_replay.png"))

    full = rt.load(args.table)
    grid = rt.complete_subgrid(full)
    table = full.restrict(grid)
    if args.quick:
        table = quick_slice(table)
    grid_line = (f"Replayed grid: {rt.grid_text(table.values())} ({len(table.rows)} configurations"
                 + (f"; the table holds {rt.holds(full)}, the largest complete sub-grid is replayed)"
                    if len(table.rows) < len(full.rows) else ")"))
    print(grid_line, flush=True)
    methods = args.methods or [m for m, spec in METHODS.items() if spec.ready]
    for m in methods:
        if not METHODS[m].ready:
            raise SystemExit(f"search_replay: method {m!r} cannot run in this checkout: {METHODS[m].missing}")
    seeds = list(range(args.seeds or (QUICK_SEEDS if args.quick else 50)))
    budget = table.budget_1x(CONFIRM, CONFIRM_SEEDS)
    info = common.machine_info()
    print(common.describe(info), flush=True)
    t0 = time.time()
    runs = run_all(table, methods, seeds, max(MULTIPLES) * budget, args.jobs)
    took = time.time() - t0
    link = None
    if png:
        replay_report.plot(table, runs, methods, budget, png)
        link = os.path.relpath(png, os.path.dirname(os.path.abspath(args.results or common.RESULTS)))
    body = replay_report.markdown(table, runs, methods, seeds, budget, grid_line, link, took)
    common.publish("search_replay", body, args, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
