"""Confirmation decisions on synthetic candidates (no Ray): which trials are confirmed, how jobs are planned, who
wins."""
from __future__ import annotations

from simmim_ray.search import confirm as cf

SEEDS = (1000, 1001, 1002)


def row(t, params, val, feasible=True):
    return {"trial_id": t, "params": params, "flops": params * 10, "val_accuracy": val, "feasible": feasible,
            "status": "complete"}


def event(t, accs, seeds=SEEDS, error=""):
    return {"trial_id": t, "runs": [{"seed": s, "test_accuracy": a} for s, a in zip(seeds, accs)], "error": error}


ROWS = [row("trial_big", 9000, 0.95), row("trial_mid", 5000, 0.91), row("trial_small", 1000, 0.93),
        row("trial_tiny", 500, 0.70, feasible=False)]


def test_candidates_are_the_smallest_feasible_on_validation():
    assert [c["trial_id"] for c in cf.candidates(ROWS, 2, "params")] == ["trial_small", "trial_mid"]
    assert [c["trial_id"] for c in cf.candidates(ROWS, 5, "params")] == ["trial_small", "trial_mid", "trial_big"]


def test_the_validation_winner_failing_confirmation_loses_to_the_next_confirmed_one():
    cands = cf.candidates(ROWS, 3, "params")
    # trial_small won on validation (0.93) but holds up worse on test; trial_mid confirms
    measured = cf.merge([event("trial_small", [0.86, 0.88, 0.87]), event("trial_mid", [0.92, 0.90, 0.91]),
                         event("trial_big", [0.95, 0.94, 0.96])], SEEDS)
    win, final = cf.pick_winner(cands, measured, SEEDS, 0.9, "mean")
    assert (win["trial_id"], final) == ("trial_mid", True)
    # the lower end of trial_mid's 95% interval is below 0.9: with --feasibility lower-bound only trial_big passes
    assert cf.pick_winner(cands, measured, SEEDS, 0.9, "lower-bound")[0]["trial_id"] == "trial_big"
    assert cf.pick_winner(cands, measured, SEEDS, 0.99, "mean") == (None, True)
    best, summary = cf.best_confirmed(cands, measured, SEEDS)
    assert best["trial_id"] == "trial_big" and summary.per_seed == (0.95, 0.94, 0.96)


def test_no_winner_while_a_smaller_candidate_is_pending_and_a_failed_job_is_not_confirmed():
    cands = cf.candidates(ROWS, 3, "params")
    partial = cf.merge([event("trial_small", [0.95], seeds=SEEDS[:1]), event("trial_mid", [0.92, 0.91, 0.93])],
                       SEEDS)
    # trial_mid confirms, but trial_small (smaller) could still win: not final
    assert cf.pick_winner(cands, partial, SEEDS, 0.9, "mean") == (None, False)
    failed = cf.merge([event("trial_small", [0.95], seeds=SEEDS[:1], error="TrainingFailedError: boom"),
                       event("trial_mid", [0.92, 0.91, 0.93])], SEEDS)
    assert cf.state(failed["trial_small"], SEEDS, 0.9, "mean") == "failed"
    assert cf.pick_winner(cands, failed, SEEDS, 0.9, "mean")[0]["trial_id"] == "trial_mid"


def test_a_seed_measured_twice_counts_once_and_other_seeds_are_ignored():
    m = cf.merge([event("t", [0.8, 0.9]), event("t", [0.7, 0.6, 0.5], seeds=(1001, 1002, 7))], SEEDS)["t"]
    assert sorted((r["seed"], r["test_accuracy"]) for r in m.runs) == [(1000, 0.8), (1001, 0.9), (1002, 0.6)]
    assert cf.missing_seeds(m, SEEDS) == ()


def test_jobs_loop_over_seeds_and_spread_over_free_slots():
    todo = {"a": SEEDS, "b": SEEDS, "c": ()}
    one_slot = cf.plan_jobs(cf.CONFIRM, todo, "finetune", slots=1)
    assert [(j.trial_id, j.seeds) for j in one_slot] == [("a", SEEDS), ("b", SEEDS)]
    wide = cf.plan_jobs(cf.CONFIRM, todo, "finetune", slots=6)
    assert sorted((j.trial_id, j.seeds) for j in wide) == [
        ("a", (1000,)), ("a", (1001,)), ("a", (1002,)), ("b", (1000,)), ("b", (1001,)), ("b", (1002,))]
    # Train run names: stable for the same job (resume continues it), distinct across seed sets and modes
    assert len({j.name for j in wide}) == 6 and one_slot[0].name == cf.plan_jobs(
        cf.CONFIRM, {"a": SEEDS}, "finetune", 1)[0].name
    assert one_slot[0].name != cf.plan_jobs(cf.CONFIRM, {"a": SEEDS}, "pretrain", 1)[0].name
    assert set(cf.confirm_seeds(3, 0)).isdisjoint(cf.confirm_seeds(3, 1))
