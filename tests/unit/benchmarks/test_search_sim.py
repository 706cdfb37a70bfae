"""benchmarks/search_sim.py: the virtual-time replay behind search_replay drives the service's searcher and
schedulers as Tune would, counts compute as the traces give it and stops at the compute cap."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler

from benchmarks.search_sim import simulate
from simmim_ray.search.schedulers import ProtectingASHA
from simmim_ray.search.searcher import ConstrainedOptunaSearch

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"model.depth": optuna.distributions.IntDistribution(1, 6)}
EPOCHS = 6


def trace(params: dict) -> dict:
    """Deeper: slower epochs, better proxy and accuracy; depth 1 learns nothing."""
    d = params["model.depth"]
    return {"epochs": [{"proxy_knn": 0.1 * d * e / EPOCHS, "cpu_s": float(d)} for e in range(1, EPOCHS + 1)],
            "final": {"val_accuracy": 0.15 * d, "cpu_s": 0.5}, "params": 100 * d, "flops": 1000 * d}


def test_fifo_runs_every_trial_to_the_end_within_the_budget():
    searcher = ConstrainedOptunaSearch(SPACE, "params", 0.6, seed=0, sampler="random")
    sim = simulate(searcher, FIFOScheduler(), trace, EPOCHS, max_compute=60.0, slots=2)
    # the epoch that crosses the cap completes (at most a depth-6 epoch and a fine-tune), and nothing after it
    assert 60.0 <= sim.compute < 60.0 + 6 + 0.5 and not sim.exhausted
    finished = [t for t in sim.trials if t.outcome == "finished"]
    assert len(finished) >= 2 and all(t.epochs_run == EPOCHS for t in finished)
    assert {t.outcome for t in sim.trials} <= {"finished", "cut"}  # FIFO stops nothing; the budget cuts
    assert sum(t.epochs_run for t in sim.trials) == sim.trial_epochs
    # compute: every epoch run at its measured cost and each finished trial's fine-tune, nothing else
    assert sim.compute == sum(t.epochs_run * t.config["model.depth"] for t in sim.trials) + 0.5 * len(finished)
    # two slots: the first two trials start at 0 and each ends after its own trace's seconds
    for t in sim.trials[:2]:
        assert t.start == 0 and t.finished_at == EPOCHS * t.config["model.depth"] + 0.5
    # a trial that finishes later has seen more of the search's compute
    order = sorted(finished, key=lambda t: t.finished_at)
    assert [t.compute_at_finish for t in order] == sorted(t.compute_at_finish for t in order)
    told = [t for t in searcher.study.trials if t.state == TrialState.COMPLETE and "repeat_of" not in t.user_attrs]
    assert len(told) == len(finished)


def test_asha_stops_a_lagging_trial_and_the_study_hears_pruned():
    searcher = ConstrainedOptunaSearch(SPACE, "params", 0.6, seed=0, sampler="tpe",
                                       points_to_evaluate=[{"model.depth": 6}, {"model.depth": 1}])
    asha = ProtectingASHA(time_attr="epoch", metric="proxy_knn", mode="max", max_t=EPOCHS, grace_period=2,
                          reduction_factor=3)
    sim = simulate(searcher, asha, trace, EPOCHS, max_compute=60.0, slots=1)
    first, second = sim.trials[:2]
    assert first.outcome == "finished" and second.outcome == "pruned" and second.epochs_run == 2
    assert second.val_accuracy is None and second.compute_at_finish is None
    assert second.compute_at_end == first.compute_at_end + 2 * 1.0  # two depth-1 epochs
    assert second.compute_at_start == first.compute_at_end
    states = {t.params["model.depth"]: t.state for t in searcher.study.trials if "repeat_of" not in t.user_attrs}
    assert states[6] == TrialState.COMPLETE and states[1] == TrialState.PRUNED


def test_a_searcher_that_stops_proposing_ends_the_search_before_the_cap():
    searcher = ConstrainedOptunaSearch(SPACE, "params", 0.6, seed=0, sampler="random", budget=2)
    sim = simulate(searcher, FIFOScheduler(), trace, EPOCHS, max_compute=1e9, slots=1)
    assert sim.exhausted and len(sim.trials) == 2 and all(t.outcome == "finished" for t in sim.trials)
    assert sim.compute == sum(EPOCHS * t.config["model.depth"] + 0.5 for t in sim.trials)
