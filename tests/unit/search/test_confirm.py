"""Confirmation decisions on synthetic candidates (no Ray): which trials are confirmed, how jobs are planned, who
wins, and that no decision reads a test number."""
from __future__ import annotations

import random

import pytest

from simmim_ray.search.answer import confirm
from simmim_ray.search.settings import FEASIBILITY

SEEDS = (1000, 1001, 1002)


def row(t, params, val, feasible=True):
    return {"trial_id": t, "params": params, "flops": params * 10, "val_accuracy": val, "feasible": feasible,
            "status": "complete"}


def event(t, val, test=None, seeds=SEEDS, error=""):
    """A confirmation event as the ledger holds it: each seed's validation (`val`) and test accuracy (`test`; by
    default 0.05 below validation)."""
    test = [a - 0.05 for a in val] if test is None else test
    return {"trial_id": t, "runs": [{"seed": s, "val_accuracy": v, "val_count": 300, "test_accuracy": a,
                                     "test_count": 300} for s, v, a in zip(seeds, val, test)], "error": error}


ROWS = [row("trial_big", 9000, 0.95), row("trial_mid", 5000, 0.91), row("trial_small", 1000, 0.93),
        row("trial_tiny", 500, 0.70, feasible=False)]


def test_candidates_are_the_smallest_feasible_on_validation():
    assert [c["trial_id"] for c in confirm.candidates(ROWS, 2, "params")] == ["trial_small", "trial_mid"]
    assert [c["trial_id"] for c in confirm.candidates(ROWS, 5, "params")] == ["trial_small", "trial_mid", "trial_big"]


def test_the_validation_winner_failing_confirmation_loses_to_the_next_confirmed_one():
    cands = confirm.candidates(ROWS, 3, "params")
    # trial_small won the search on validation (0.93, one seed) but holds up worse with fresh seeds; trial_mid
    # confirms (on validation: the test numbers here are validation's less 0.05, all below 0.9)
    measured = confirm.merge([event("trial_small", [0.86, 0.88, 0.87]), event("trial_mid", [0.92, 0.90, 0.91]),
                         event("trial_big", [0.95, 0.94, 0.96])], SEEDS)
    win, final = confirm.pick_winner(cands, measured, SEEDS, 0.9, "mean")
    assert (win["trial_id"], final) == ("trial_mid", True)
    # the lower end of trial_mid's 95% interval is below 0.9: with --feasibility lower-bound only trial_big passes
    assert confirm.pick_winner(cands, measured, SEEDS, 0.9, "lower-bound")[0]["trial_id"] == "trial_big"
    assert confirm.pick_winner(cands, measured, SEEDS, 0.99, "mean") == (None, True)
    best, summary = confirm.best_confirmed(cands, measured, SEEDS)
    assert best["trial_id"] == "trial_big" and summary.per_seed == (0.95, 0.94, 0.96)  # validation's values


def test_no_winner_while_a_smaller_candidate_is_pending_and_a_failed_job_is_not_confirmed():
    cands = confirm.candidates(ROWS, 3, "params")
    partial = confirm.merge([event("trial_small", [0.95], seeds=SEEDS[:1]), event("trial_mid", [0.92, 0.91, 0.93])],
                       SEEDS)
    # trial_mid confirms, but trial_small (smaller) could still win: not final
    assert confirm.pick_winner(cands, partial, SEEDS, 0.9, "mean") == (None, False)
    failed = confirm.merge([event("trial_small", [0.95], seeds=SEEDS[:1], error="TrainingFailedError: boom"),
                       event("trial_mid", [0.92, 0.91, 0.93])], SEEDS)
    assert confirm.state(failed["trial_small"], SEEDS, 0.9, "mean") == "failed"
    assert confirm.pick_winner(cands, failed, SEEDS, 0.9, "mean")[0]["trial_id"] == "trial_mid"


def test_a_seed_measured_twice_counts_once_and_other_seeds_are_ignored():
    m = confirm.merge([event("t", [0.8, 0.9]), event("t", [0.7, 0.6, 0.5], seeds=(1001, 1002, 7))], SEEDS)["t"]
    assert sorted((r["seed"], r["val_accuracy"]) for r in m.runs) == [(1000, 0.8), (1001, 0.9), (1002, 0.6)]
    assert confirm.missing_seeds(m, SEEDS) == ()


def test_jobs_loop_over_seeds_and_spread_over_free_slots():
    todo = {"a": SEEDS, "b": SEEDS, "c": ()}
    one_slot = confirm.plan_jobs(todo, "finetune", slots=1)
    assert [(j.trial_id, j.seeds) for j in one_slot] == [("a", SEEDS), ("b", SEEDS)]
    wide = confirm.plan_jobs(todo, "finetune", slots=6)
    assert sorted((j.trial_id, j.seeds) for j in wide) == [
        ("a", (1000,)), ("a", (1001,)), ("a", (1002,)), ("b", (1000,)), ("b", (1001,)), ("b", (1002,))]
    # Train run names: stable for the same job (resume continues it), distinct across seed sets and modes
    assert len({j.name for j in wide}) == 6 and one_slot[0].name == confirm.plan_jobs(
        {"a": SEEDS}, "finetune", 1)[0].name
    assert one_slot[0].name != confirm.plan_jobs({"a": SEEDS}, "pretrain", 1)[0].name
    assert set(confirm.confirm_seeds(3, 0)).isdisjoint(confirm.confirm_seeds(3, 1))


# Three candidates, fresh-seed validation: trial_small misses 0.9, trial_mid meets it on the mean only (its lower
# end is below), trial_big meets it either way. Their test numbers, as measured, agree with validation.
MEASURED = [event("trial_small", [0.88, 0.87, 0.89]), event("trial_mid", [0.90, 0.93, 0.91]),
            event("trial_big", [0.95, 0.95, 0.96])]


def decisions(events: list[dict]) -> dict:
    """Everything confirmation decides: per rule, the winner, whether final, each candidate's state, the best."""
    cands = confirm.candidates(ROWS, 3, "params")
    measured = confirm.merge(events, SEEDS)
    out = {}
    for rule in FEASIBILITY:
        win, final = confirm.pick_winner(cands, measured, SEEDS, 0.9, rule)
        out[rule] = (win and win["trial_id"], final,
                     [confirm.state(measured.get(c["trial_id"]), SEEDS, 0.9, rule) for c in cands])
    best, summ = confirm.best_confirmed(cands, measured, SEEDS)
    out["best"] = (best["trial_id"], summ)
    return out


def with_test(events: list[dict], test_of) -> list[dict]:
    """`events` with every run's test accuracy replaced by test_of(trial_id, seed, test accuracy)."""
    return [{**e, "runs": [{**r, "test_accuracy": test_of(e["trial_id"], r["seed"], r["test_accuracy"])}
                           for r in e["runs"]]} for e in events]


class NoTest(dict):
    """A run whose test accuracy fails any read: what decides must never look at it."""

    def __getitem__(self, key):
        assert key != "test_accuracy", "a confirmation decision read a test accuracy"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key != "test_accuracy", "a confirmation decision read a test accuracy"
        return super().get(key, default)


def test_selection_reads_no_test_number():
    plain = decisions(MEASURED)
    assert plain["mean"] == ("trial_mid", True, ["below target", "confirmed", "confirmed"])
    assert plain["lower-bound"] == ("trial_big", True, ["below target", "below target", "confirmed"])
    assert plain["best"][0] == "trial_big"
    tests = [r["test_accuracy"] for e in MEASURED for r in e["runs"]]
    shuffled = random.Random(7).sample(tests, len(tests))
    pool = iter(shuffled)
    perturbed = [
        # the test labels permuted: every test accuracy moves to another (trial, seed)
        with_test(MEASURED, lambda t, s, a: next(pool)),
        # the smallest candidate perfect on test, the larger ones terrible
        with_test(MEASURED, lambda t, s, a: 1.0 if t == "trial_small" else 0.0),
        # and the reverse
        with_test(MEASURED, lambda t, s, a: 0.0 if t == "trial_small" else 1.0),
    ]
    assert shuffled != tests
    for events in perturbed:
        assert decisions(events) == plain
    sealed = [{**e, "runs": [NoTest(r) for r in e["runs"]]} for e in MEASURED]
    assert decisions(sealed) == plain


def test_a_high_test_mean_does_not_rescue_a_candidate_below_target_on_validation():
    cands = confirm.candidates(ROWS, 3, "params")
    measured = confirm.merge([event("trial_small", [0.85, 0.86, 0.84], test=[0.99, 0.99, 1.0]),
                         event("trial_mid", [0.92, 0.91, 0.93], test=[0.70, 0.71, 0.72])], SEEDS)
    assert confirm.state(measured["trial_small"], SEEDS, 0.9, "mean") == "below target"
    win, final = confirm.pick_winner(cands, measured, SEEDS, 0.9, "mean")
    assert (win["trial_id"], final) == ("trial_mid", True)  # though its test mean, 0.71, misses the target
    # when none meets the target, the best named is the best on validation, not the best on test
    best, summ = confirm.best_confirmed(cands, measured, SEEDS)
    assert confirm.pick_winner(cands, measured, SEEDS, 0.95, "mean") == (None, False)  # trial_big still pending
    assert best["trial_id"] == "trial_mid" and summ.per_seed == (0.92, 0.91, 0.93)


@pytest.mark.parametrize("rule, winner", [("mean", "trial_small"), ("lower-bound", "trial_mid")])
def test_lower_bound_holds_the_lower_end_of_the_validation_interval_against_the_target(rule, winner):
    cands = confirm.candidates(ROWS, 3, "params")
    # trial_small: validation mean 0.92 but spread wide (t-interval lower end < 0.9), test steady and high;
    # trial_mid: validation tight just above 0.9, test low and spread wide
    measured = confirm.merge([event("trial_small", [0.88, 0.96, 0.92], test=[0.97, 0.97, 0.97]),
                         event("trial_mid", [0.909, 0.91, 0.911], test=[0.5, 0.9, 0.7])], SEEDS)
    assert measured["trial_small"].summary("val_accuracy").low < 0.9 < measured["trial_mid"].summary(
        "val_accuracy").low
    assert confirm.pick_winner(cands, measured, SEEDS, 0.9, rule)[0]["trial_id"] == winner
