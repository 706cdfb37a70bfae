"""What benchmarks/search_replay.py reports: per method and budget, how often the answer is S*, how far off it is,
how often it is infeasible by the table or missing, the compute used; the anytime plot; the goal of issue 21."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from simmim_ray.search.answer.stats import wilson_interval

from benchmarks import replay_table as rt
from benchmarks.replay_methods import CONFIRM_SEEDS, METHODS, NEW_DEFAULT, confirms

SCAN = "size-scan"
GOAL_SEEDS = 50


@dataclass(frozen=True)
class Outcome:
    """One seed's answer at one budget, judged by the table."""
    size: int | None  # None: no answer
    feasible: bool | None
    success: bool  # feasible and of size S*
    log2: float  # log2(size / S*); inf without an answer; nan without an S*
    reached: bool = False  # of size S*_val: the best a search that chooses on validation can answer


def s_star_val(table: rt.Table) -> int | None:
    """The smallest size whose configuration confirms on validation (its 3 seeds' mean meets the target): what a
    search that never chooses on test can answer at best."""
    return min((r.size(table.size_metric) for r in table.rows.values()
                if confirms(table, r.point, CONFIRM_SEEDS)), default=None)


def outcome(table: rt.Table, run, compute: float, on_val: int | None = None) -> Outcome:
    key = run.answer_at(compute)
    s_star = table.s_star
    if key is None:
        return Outcome(None, None, False, math.inf if s_star else math.nan)
    row = table.rows[key]
    size, feasible = row.size(table.size_metric), table.feasible(row)
    return Outcome(size, feasible, feasible and size == s_star, math.log2(size / s_star) if s_star else math.nan,
                   size == on_val)


@dataclass(frozen=True)
class Cell:
    method: str
    multiple: float
    n: int
    successes: int
    median_log2: float
    answers: int
    larger: int  # feasible answers larger than S*
    infeasible: int
    spent: float  # mean compute used, in multiples of the 1x budget
    reached: int = 0  # answers of size S*_val

    @property
    def success_rate(self) -> float:
        return self.successes / self.n

    @property
    def infeasible_share(self) -> float:
        """Of the answers given (0 when there are none)."""
        return self.infeasible / self.answers if self.answers else 0.0


def cell(table: rt.Table, runs: list, method: str, multiple: float, budget: float) -> Cell:
    mine = [r for r in runs if r.method == method]
    on_val = s_star_val(table)
    outs = [outcome(table, r, multiple * budget, on_val) for r in mine]
    answered = [o for o in outs if o.size is not None]
    return Cell(method, multiple, len(outs), sum(o.success for o in outs), statistics.median(o.log2 for o in outs),
                len(answered), sum(o.feasible and not o.success for o in answered),
                sum(not o.feasible for o in answered),
                statistics.fmean(r.spent_at(multiple * budget) for r in mine) / budget, sum(o.reached for o in outs))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _log2(x: float) -> str:
    return "-" if math.isnan(x) else "inf (no answer)" if x == math.inf else f"{x:+.2f}"


def results_table(cells: list[Cell]) -> list[str]:
    lines = ["| method | budget | success: answer is S* (95% CI) | answer is S*_val | median log2(answer / S*) | "
             "larger feasible | infeasible by the table (of answers) | no answer | compute used |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lo, hi = wilson_interval(c.success_rate, c.n)
        lines.append(f"| {c.method} | {c.multiple:g}x | {c.successes}/{c.n} = {_pct(c.success_rate)} "
                     f"[{_pct(lo)}, {_pct(hi)}] | {c.reached}/{c.n} = {_pct(c.reached / c.n)} | "
                     f"{_log2(c.median_log2)} | {c.larger} | {c.infeasible} of "
                     f"{c.answers} = {_pct(c.infeasible_share)} | {c.n - c.answers} = {_pct(1 - c.answers / c.n)} | "
                     f"{c.spent:.2f}x |")
    return lines


def trials_table(runs: list, methods: list[str], budget: float) -> list[str]:
    """Per method, what it trained within the 1x budget, mean per seed."""
    lines = ["| method | trials started | ran to the end | stopped early by the scheduler | distinct "
             "configurations, all seeds |", "|---|---|---|---|---|"]
    for m in methods:
        mine = [r for r in runs if r.method == m]
        started = [[t for t in r.trials if t.start < budget] for r in mine]
        done = [sum(t.outcome == "finished" and t.end <= budget for t in ts) for ts in started]
        stopped = [sum(t.outcome == "pruned" and t.end <= budget for t in ts) for ts in started]
        keys = {t.key for ts in started for t in ts}
        lines.append(f"| {m} | {statistics.fmean(map(len, started)):.1f} | {statistics.fmean(done):.1f} | "
                     f"{statistics.fmean(stopped):.1f} | {len(keys)} |")
    return lines


def goal(cells: list[Cell], n_seeds: int) -> str:
    """Issue 21's goal, judged on the new default: at 1x success >= 0.8, infeasible answers <= 5%, median log2 0;
    at 0.5x a success rate at least the size scan's at 1x."""
    text = (f"Goal (issue 21): at 1x over >= {GOAL_SEEDS} seeds, `{NEW_DEFAULT}` succeeds in >= 80%, answers "
            f"infeasibly in <= 5% and has median log2 = 0; at 0.5x it succeeds at least as often as `{SCAN}` at 1x")
    by = {(c.method, c.multiple): c for c in cells}
    missing = [m for m in (NEW_DEFAULT, SCAN) if (m, 1.0) not in by]
    if missing:
        return f"{text}: not judged (not run: {', '.join(missing)})."
    if n_seeds < GOAL_SEEDS:
        return f"{text}: not judged ({n_seeds} seeds)."
    d1, d05, scan = by[(NEW_DEFAULT, 1.0)], by[(NEW_DEFAULT, 0.5)], by[(SCAN, 1.0)]
    parts = [(d1.success_rate >= 0.8, f"success at 1x {_pct(d1.success_rate)}"),
             (d1.infeasible_share <= 0.05, f"infeasible {_pct(d1.infeasible_share)}"),
             (d1.median_log2 == 0, f"median log2 {_log2(d1.median_log2)}"),
             (d05.success_rate >= scan.success_rate, f"success at 0.5x {_pct(d05.success_rate)} against the scan's "
                                                     f"{_pct(scan.success_rate)} at 1x")]
    verdict = "met" if all(ok for ok, _ in parts) else "NOT met"
    return f"{text}: **{verdict}** ({'; '.join(s + ('' if ok else ' (no)') for ok, s in parts)})."


def markdown(table: rt.Table, runs: list, methods: list[str], seeds: list[int], budget: float, grid_line: str,
             png_link: str | None, took: float) -> str:
    from benchmarks.search_replay import CONFIRM, MULTIPLES, SLOTS

    metric, s_star = table.size_metric, table.s_star
    feasible = sum(table.feasible(r) for r in table.rows.values())
    full = statistics.median(r.full_cpu_s for r in table.rows.values())
    ft = statistics.median(f.cpu_s for r in table.rows.values() for f in r.finetunes)
    on_val = s_star_val(table)
    reach = ("no configuration confirms on validation (3-seed mean >= target): no method can answer"
             if on_val is None else f"the smallest configuration that confirms on validation (3-seed mean >= "
             f"target) has {on_val:,} {metric} (S*_val)" + (" too" if on_val == s_star else
                                                    ": no method, selecting on validation, can answer S* here"))
    truth = (f"S* = {s_star:,} {metric}; {feasible} of {len(table.rows)} configurations are feasible (mean test "
             f"accuracy over their fine-tune seeds >= {table.target:g}); {reach}" if s_star else
             f"no configuration is feasible (mean test accuracy >= {table.target:g}): there is no S*, every answer "
             "is infeasible and no method can succeed")
    lines = [f"Table `{table.space}` ({table.epochs} pre-training epochs per trial). {grid_line}. {truth}.", "",
             f"{len(seeds)} paired replay seeds: seed s seeds every method's sampler and draws, for each "
             "configuration, the one fine-tune seed whose validation accuracy a trial of it reports, the same "
             f"under every method. 1x budget = {budget:,.0f} CPU s: {table.trials:g} full trials at the median "
             f"{full:,.0f} CPU s (every epoch and one fine-tune) and confirming {CONFIRM} candidates x 3 seeds at "
             f"the median fine-tune's {ft:,.0f} CPU s. {SLOTS} trial at a time. Answer: the {CONFIRM} smallest "
             "configurations with a trial feasible on validation, confirmed by their 3 fine-tune seeds on "
             "validation (mean >= target); compute counts every epoch, fine-tune and confirmation.", "",
             "Methods:", *(f"- `{m}`: {METHODS[m].summary}" for m in methods), ""]
    cells = [cell(table, runs, m, x, budget) for m in methods for x in MULTIPLES]
    lines += results_table(cells)
    lines += ["", "Success: the answer is feasible by the table and of size S*. S*_val: the smallest size that "
              "confirms on validation, the best answer a search that never chooses on test can give. Median log2 counts a seed without an "
              "answer as +inf. Compute used: mean over seeds, in multiples of 1x (a search spends its budget; the "
              "scan stops at its first confirmed candidate).", "", "Trials within the 1x budget, mean per seed:", ""]
    lines += trials_table(runs, methods, budget)
    if png_link:
        lines += ["", f"![success rate against compute]({png_link})"]
    lines += ["", goal(cells, len(seeds)), "", f"Replayed in {took:.0f} s."]
    return "\n".join(lines)


def plot(table: rt.Table, runs: list, methods: list[str], budget: float, path: str) -> None:
    """Success rate against compute (multiples of the 1x budget), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from benchmarks.search_replay import MULTIPLES

    xs = np.linspace(0, max(MULTIPLES), 161)
    on_val = s_star_val(table)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, m in enumerate(methods):
        mine = [r for r in runs if r.method == m]
        outs = [[outcome(table, r, x * budget, on_val) for r in mine] for x in xs]
        line, = ax.plot(xs, [statistics.fmean(o.success for o in os_) for os_ in outs], label=f"{m}: answer is S*")
        ax.plot(xs, [statistics.fmean(o.reached for o in os_) for os_ in outs], linestyle="--",
                color=line.get_color(), label=f"{m}: answer is S*_val")
    for x in MULTIPLES:
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel=f"compute, multiples of the default search's budget ({budget:,.0f} CPU s)",
           ylabel="share of seeds", ylim=(-0.02, 1.02),
           title=f"{table.space}: {len(runs) // max(1, len(methods))} paired seeds, {len(table.rows)} configurations")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
