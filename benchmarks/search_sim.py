"""A search replayed in virtual time over measured trial traces, for benchmarks/search_efficiency.py.

The decisions are the service's own objects: `ConstrainedOptunaSearch` (TPE or random, with the size-ladder warm
start as its first points) asks and is told exactly as Tune would, and the scheduler from the search driver's
`make_scheduler` (ProtectingASHA or FIFO) sees every per-epoch result and says continue or stop, as Tune calls them.
What is simulated is only the clock: `slots` trials run at once, each on one core, and a trial's epoch ends when
the CPU seconds its trace measured for that epoch have passed. So the order in which results reach ASHA is the
order a real search on idle cores would produce, and the compute a search spent by any moment is the sum of the
measured CPU seconds of the epochs (and final fine-tunes) that had finished by then.
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
    start: float = 0.0
    epochs_run: int = 0
    outcome: str = "running"  # running | finished | pruned | cut (the budget ended it)
    val_accuracy: float | None = None
    finished_at: float | None = None  # virtual seconds
    compute_at_finish: float | None = None  # CPU seconds the whole search had spent by then
    epochs_at_finish: int | None = None  # trial-epochs the whole search had run by then


@dataclass
class SimResult:
    trials: list[SimTrial]
    compute: float  # CPU seconds spent in all
    trial_epochs: int
    wall: float  # virtual seconds


def simulate(searcher, scheduler, trace_of, epochs: int, budget: int, slots: int = 2) -> SimResult:
    """Runs the search until it has spent `budget` trial-epochs. `trace_of(params) -> trace` (search_traces.py)."""
    events: list[tuple[float, int, int, SimTrial]] = []  # (time, tie-break, epoch, trial)
    trials: list[SimTrial] = []
    spent, n_epochs, seq = 0.0, 0, 0

    def start(now: float) -> bool:
        nonlocal seq
        tid = f"t{len(trials):04d}"
        params = searcher.suggest(tid)
        if params is None or params == searcher.FINISHED:
            return False
        t = SimTrial(tid, dict(params), trace_of(decode(params)), start=now)
        trials.append(t)
        scheduler.on_trial_add(None, t)
        seq += 1
        heapq.heappush(events, (now + _epoch_cost(t.trace, 1, epochs), seq, 1, t))
        return True

    running = sum(start(0.0) for _ in range(slots))
    now = 0.0
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
            if epoch == epochs:
                t.val_accuracy = result[VAL_ACCURACY]
                t.finished_at, t.compute_at_finish, t.epochs_at_finish = now, spent, n_epochs
        if n_epochs >= budget:
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
    return SimResult(trials, spent, n_epochs, now)


def _epoch_cost(trace: dict, epoch: int, epochs: int) -> float:
    """CPU seconds of pre-training epoch `epoch` (1-based) and its proxy; the last one carries the final fine-tune."""
    cost = trace["epochs"][epoch - 1]["cpu_s"]
    return cost + (trace["final"]["cpu_s"] if epoch == epochs else 0.0)
