"""Confirmation: the smallest candidates the search found feasible on validation, measured again under fresh
seeds; the answer is the smallest whose validation accuracy over those seeds still meets the target. The same runs
measure test, which is only reported: nothing here reads it.

The search's winner is optimistically biased (chosen as the best of many noisy measurements) and rests on one seed;
fresh seeds give each candidate a measurement no search decision was fitted to. Choosing among the candidates by
test would move that bias onto the reported test accuracy (the winner's curse), so the choice stays on validation
and test remains a measurement nothing chose on. Pure decisions here; `search/answer/seed_jobs.py` runs the seed jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simmim_ray.metrics import VAL_ACCURACY
from simmim_ray.search.answer.stats import SeedSummary, seed_summary
from simmim_ray.train.loop_config import SeedJob

# What a candidate is decided on: validation, as each seed's run reports it; test, in the same runs, is only reported
SELECTED_ON, SELECTION_METRIC = "validation", VAL_ACCURACY


def confirm_seeds(n: int, search_seed: int) -> tuple[int, ...]:
    """Seeds no trial of the search used (a trial fine-tunes with seed*7+1 and pre-trains with its config seed):
    a candidate's luck in the search does not carry into its confirmation."""
    return tuple(1000 * (search_seed + 1) + i for i in range(n))


def candidates(rows: list[dict], k: int, size_metric: str) -> list[dict]:
    """The `k` smallest trials feasible on validation, smallest first (ties: higher validation accuracy first)."""
    feas = [r for r in rows if r.get("feasible")]
    return sorted(feas, key=lambda r: (r[size_metric], -r[VAL_ACCURACY], r["trial_id"]))[:k]


def plan_jobs(todo: dict[str, tuple[int, ...]], mode: str, slots: int) -> list[SeedJob]:
    """`todo`: {trial_id: seeds to measure}; `mode`: SeedJob.mode. One seed job per trial, looping over its seeds:
    every Train job pays a fixed start-up (placement, worker processes, process group, data) that a short fine-tune
    does not dwarf. Where
    the cluster has more job slots than trials, a trial's seeds are dealt over several jobs so the slots are used."""
    todo = {t: seeds for t, seeds in todo.items() if seeds}
    per = max(1, slots // max(1, len(todo)))
    jobs = []
    for t, seeds in todo.items():
        n = min(per, len(seeds))
        jobs += [SeedJob(t, mode, tuple(seeds[p::n])) for p in range(n)]
    return jobs


@dataclass
class Measured:
    """Every seed measured for one trial in one kind of job (merged over its jobs)."""

    trial_id: str
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    params: float | None = None
    flops: float | None = None

    def summary(self, metric: str) -> SeedSummary | None:
        """`metric` over the seeds measured: SELECTION_METRIC to decide, TEST_ACCURACY to report."""
        accs = [r[metric] for r in sorted(self.runs, key=lambda r: r["seed"])]
        return seed_summary(accs) if accs else None


def merge(events: list[dict], seeds: tuple[int, ...]) -> dict[str, Measured]:
    """Job events (as search/answer/answer.py records them) -> {trial_id: Measured}, keeping the runs of `seeds` only; a
    seed measured twice (a job run again after a crash between its last report and its event) counts once."""
    out: dict[str, Measured] = {}
    for e in events:
        m = out.setdefault(e["trial_id"], Measured(e["trial_id"]))
        have = {r["seed"] for r in m.runs}
        m.runs.extend(r for r in e.get("runs", []) if r["seed"] in seeds and r["seed"] not in have)
        if e.get("error"):
            m.errors.append(e["error"])
        m.params = e.get("params") if e.get("params") is not None else m.params
        m.flops = e.get("flops") if e.get("flops") is not None else m.flops
    return out


def missing_seeds(m: Measured | None, seeds: tuple[int, ...]) -> tuple[int, ...]:
    have = {r["seed"] for r in m.runs} if m else set()
    return tuple(x for x in seeds if x not in have)


def state(m: Measured | None, seeds: tuple[int, ...], target: float, feasibility: str) -> str:
    """A candidate's confirmation on validation: "confirmed" / "below target" (every seed measured), "failed" (a job
    failed and seeds are missing) or "pending" (seeds still to measure)."""
    if missing_seeds(m, seeds):
        return "failed" if m is not None and m.errors else "pending"
    return "confirmed" if m.summary(SELECTION_METRIC).bound(feasibility) >= target else "below target"


def pick_winner(cands: list[dict], measured: dict[str, Measured], seeds: tuple[int, ...], target: float,
                feasibility: str) -> tuple[dict | None, bool]:
    """-> (the smallest candidate whose validation accuracy over `seeds` meets the target: its mean, or the lower end
    of its 95% t-interval, per `feasibility`; whether that is final). Not final while a smaller candidate is still
    pending: it could win. A candidate whose job failed is not confirmed."""
    for c in cands:
        st = state(measured.get(c["trial_id"]), seeds, target, feasibility)
        if st == "pending":
            return None, False
        if st == "confirmed":
            return c, True
    return None, True


def best_confirmed(cands: list[dict], measured: dict[str, Measured],
                   seeds: tuple[int, ...]) -> tuple[dict, SeedSummary] | None:
    """The fully measured candidate with the highest mean validation accuracy over `seeds`, with that summary (named
    when none meets the target)."""
    scored = [(c, measured[c["trial_id"]].summary(SELECTION_METRIC)) for c in cands
              if c["trial_id"] in measured and not missing_seeds(measured[c["trial_id"]], seeds)]
    return max(scored, key=lambda cs: cs[1].mean, default=None)
