"""Confirmation: the smallest candidates the search found feasible on validation, measured again on the test split
under several seeds; the answer is the smallest one whose test accuracy still meets the target.

Selection (the search) reads validation only. Its winner is optimistically biased (chosen as the best of many
noisy measurements) and rests on one seed; confirmation measures each candidate on images no decision has seen,
with fresh seeds. Pure decisions here; `search/seed_jobs.py` runs the Train jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simmim_ray.metrics import TEST_ACCURACY, VAL_ACCURACY
from simmim_ray.search.stats import SeedSummary, seed_summary

# What a confirmation re-seeds. "finetune": the fine-tune of the trial's own pre-trained encoder (what best/
# exports, so the numbers describe the artifact a user deploys); "pretrain": the whole trial (pre-training and
# fine-tune) with each seed: the spread of the recipe rather than of the artifact, at the cost of a trial per seed.
RESEED_MODES = ("finetune", "pretrain")
FEASIBILITY = ("mean", "lower-bound")
CONFIRM, SCRATCH = "confirm", "scratch"  # job kinds: a candidate's confirmation, the from-scratch baseline


def confirm_seeds(n: int, search_seed: int) -> tuple[int, ...]:
    """Seeds no trial of the search used (a trial fine-tunes with seed*7+1 and pre-trains with its config seed):
    a candidate's luck in the search does not carry into its confirmation."""
    return tuple(1000 * (search_seed + 1) + i for i in range(n))


def candidates(rows: list[dict], k: int, size_metric: str) -> list[dict]:
    """The `k` smallest trials feasible on validation, smallest first (ties: higher validation accuracy first)."""
    feas = [r for r in rows if r.get("feasible")]
    return sorted(feas, key=lambda r: (r[size_metric], -r[VAL_ACCURACY], r["trial_id"]))[:k]


@dataclass(frozen=True)
class Job:
    """One Train job: `seeds` of one trial's architecture, in `kind` (confirm | scratch) with re-seed `mode`."""

    kind: str
    trial_id: str
    mode: str  # train/loop_config.SeedRuns.mode: finetune | pretrain | scratch
    seeds: tuple[int, ...]
    part: int = 0  # > 0: one of several jobs sharing a candidate's seeds

    @property
    def name(self) -> str:
        """Train run name: stable, so `--resume` continues an interrupted job at its next seed."""
        return f"{self.kind}_{self.trial_id}" + (f"_part{self.part}" if self.part else "")


def plan_jobs(kind: str, trial_ids: list[str], mode: str, seeds: tuple[int, ...], slots: int) -> list[Job]:
    """One job per trial, looping over its seeds: every Train job pays a fixed start-up (placement, worker
    processes, process group, data) that a short fine-tune does not dwarf. Where the cluster has more trial slots
    than trials, a trial's seeds are dealt over several jobs so the slots are used."""
    per = max(1, min(len(seeds), slots // max(1, len(trial_ids))))
    jobs = []
    for t in trial_ids:
        for p in range(per):
            part = seeds[p::per]
            if part:
                jobs.append(Job(kind, t, mode, tuple(part), p + 1 if per > 1 else 0))
    return jobs


@dataclass
class Measured:
    """Every seed measured for one trial in one kind of job (merged over its jobs)."""

    trial_id: str
    runs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    params: float | None = None
    flops: float | None = None

    def summary(self) -> SeedSummary | None:
        accs = [r[TEST_ACCURACY] for r in sorted(self.runs, key=lambda r: r["seed"])]
        return seed_summary(accs) if accs else None


def merge(events: list[dict], kind: str) -> dict[str, Measured]:
    """Job events of `kind` (as `seed_jobs` records them) -> {trial_id: Measured}; a seed measured twice (a job
    re-run after a crash between its report and its event) counts once."""
    out: dict[str, Measured] = {}
    for e in events:
        if e.get("kind") != kind:
            continue
        m = out.setdefault(e["trial_id"], Measured(e["trial_id"]))
        seen = {r["seed"] for r in m.runs}
        m.runs.extend(r for r in e.get("runs", []) if r["seed"] not in seen)
        if e.get("error"):
            m.errors.append(e["error"])
        m.params = e.get("params", m.params)
        m.flops = e.get("flops", m.flops)
    return out


def pick_winner(cands: list[dict], measured: dict[str, Measured], target: float, feasibility: str,
                seeds: int) -> dict | None:
    """The smallest candidate whose test accuracy over all its seeds meets the target: its mean, or the lower end
    of its 95% t-interval (`feasibility`). A candidate with a seed missing (a failed job) is not confirmed."""
    for c in cands:
        m = measured.get(c["trial_id"])
        s = m.summary() if m else None
        if s is not None and len(s.per_seed) >= seeds and s.bound(feasibility) >= target:
            return c
    return None


def best_confirmed(cands: list[dict], measured: dict[str, Measured]) -> tuple[dict, SeedSummary] | None:
    """The candidate with the highest mean test accuracy (named when none meets the target)."""
    scored = [(c, measured[c["trial_id"]].summary()) for c in cands if c["trial_id"] in measured]
    scored = [(c, s) for c, s in scored if s is not None]
    return max(scored, key=lambda cs: cs[1].mean, default=None)
