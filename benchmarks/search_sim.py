"""A search replayed in virtual time over trial traces, for benchmarks/search_replay.py.

The decisions are the searcher's and scheduler's own: a Tune `Searcher` (the service's `ConstrainedOptunaSearch`,
or a benchmark baseline) is asked and told exactly as Tune would, and a Tune `TrialScheduler` (the search driver's
`make_scheduler`: ProtectingASHA or FIFO) sees every per-epoch result and says continue or stop, as Tune calls them.
What is simulated is only the clock: `slots` trials run at once, each on one core, and a trial's epoch ends when the
CPU seconds its trace gives for that epoch have passed. So the order in which results reach ASHA is the order a
real search on idle cores would produce, and the compute a search spent by any moment is the sum of the CPU seconds
of the epochs (and final fine-tunes) that had finished by then.

A trace is what one trial of a configuration reports: {"epochs": [{proxy_knn, cpu_s}, ...], "final":
{val_accuracy, cpu_s}, params, flops}; the last epoch's cost carries the final fine-tune's.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ray.tune.schedulers import TrialScheduler

from simmim_ray.metrics import DONE, EPOCH, FLOPS, PARAMS, PROXY_KNN, VAL_ACCURACY
from simmim_ray.search.space import decode


@dataclass
class SimTrial:
    """What the schedulers read of a Tune trial: its id and config."""
    trial_id: str
    config: dict
    trace: dict = field(repr=False, default_factory=dict)
    start: float = 0.0  # virtual seconds
    compute_at_start: float = 0.0  # CPU seconds the whole search had spent when it started
    epochs_run: int = 0
    outcome: str = "running"  # running | finished | pruned | cut (the compute cap ended it)
    val_accuracy: float | None = None
    finished_at: float | None = None  # virtual seconds
    compute_at_end: float | None = None  # CPU seconds the whole search had spent when it finished or was pruned

    @property
    def compute_at_finish(self) -> float | None:
        return self.compute_at_end if self.outcome == "finished" else None


@dataclass
class SimResult:
    trials: list[SimTrial]
    compute: float  # CPU seconds spent in all
    trial_epochs: int
    wall: float  # virtual seconds
    exhausted: bool  # the searcher stopped proposing and every trial ended, before the cap


def simulate(searcher, scheduler, trace_of, epochs: int, max_compute: float, slots: int = 1) -> SimResult:
    """Runs the search until it has spent `max_compute` CPU seconds (the epoch that crosses it completes) or the
    searcher has no more trials to start. `trace_of(params) -> trace`."""
    events: list[tuple[float, int, int, SimTrial]] = []  # (time, tie-break, epoch, trial)
    trials: list[SimTrial] = []
    spent, n_epochs, seq = 0.0, 0, 0

    def start(now: float) -> bool:
        nonlocal seq
        tid = f"t{len(trials):04d}"
        params = searcher.suggest(tid)
        if params is None or params == searcher.FINISHED:
            return False
        t = SimTrial(tid, dict(params), trace_of(decode(params)), start=now, compute_at_start=spent)
        trials.append(t)
        scheduler.on_trial_add(None, t)
        seq += 1
        heapq.heappush(events, (now + _epoch_cost(t.trace, 1, epochs), seq, 1, t))
        return True

    running = sum(start(0.0) for _ in range(slots))
    now, capped = 0.0, False
    while events and running:
        now, _, epoch, t = heapq.heappop(events)
        spent += _epoch_cost(t.trace, epoch, epochs)
        n_epochs += 1
        t.epochs_run = epoch
        result = {EPOCH: epoch, PROXY_KNN: t.trace["epochs"][epoch - 1][PROXY_KNN], PARAMS: t.trace[PARAMS],
                  FLOPS: t.trace[FLOPS], DONE: epoch == epochs}
        if epoch == epochs:
            result[VAL_ACCURACY] = t.trace["final"][VAL_ACCURACY]
        action = scheduler.on_trial_result(None, t, result)
        ended = epoch == epochs or action == TrialScheduler.STOP
        if ended:
            scheduler.on_trial_complete(None, t, result)
            searcher.on_trial_complete(t.trial_id, result)
            t.outcome = "finished" if epoch == epochs else "pruned"
            t.compute_at_end = spent
            if epoch == epochs:
                t.val_accuracy = result[VAL_ACCURACY]
                t.finished_at = now
        if spent >= max_compute:
            capped = True
            break
        if ended:
            running -= 1
            running += start(now)
        else:
            seq += 1
            heapq.heappush(events, (now + _epoch_cost(t.trace, epoch + 1, epochs), seq, epoch + 1, t))
    for t in trials:
        if t.outcome == "running":
            t.outcome = "cut"
    return SimResult(trials, spent, n_epochs, now, exhausted=not capped)


def _epoch_cost(trace: dict, epoch: int, epochs: int) -> float:
    """CPU seconds of pre-training epoch `epoch` (1-based) and its proxy; the last one carries the final fine-tune."""
    cost = trace["epochs"][epoch - 1]["cpu_s"]
    return cost + (trace["final"]["cpu_s"] if epoch == epochs else 0.0)
