"""The answer as search/answer/report.py derives it from ledger-like events (no Ray, no torch): the `--json` contract, what
the text says about how the winner was chosen, and that test numbers are reported but never choose."""
from __future__ import annotations

import dataclasses
import random

import pytest

from simmim_ray.metrics import CONFIRM_VAL_SEED_FIELDS, TEST_SEED_FIELDS
from simmim_ray.search.answer import confirm
from simmim_ray.search.record import ledger
from simmim_ray.search.answer import report
from simmim_ray.search.settings import SearchSettings

S = SearchSettings(space_path="s.yaml", name="exp", root="/nowhere", target_accuracy=0.9, confirm=3,
                   confirm_seeds=3)
SEEDS = confirm.confirm_seeds(3, S.seed)


def row(t: str, params: int, val: float) -> dict:
    return {"trial_id": t, "status": ledger.COMPLETE, "params": params, "flops": 10 * params, "val_accuracy": val,
            "val_accuracy_low": val - 0.03, "val_accuracy_high": val + 0.03, "val_count": 300,
            "feasible": val >= 0.9, "model.embed_dim": params // 100}


# all three feasible in the search; trial_small is its validation winner
ROWS = [row("trial_small", 1000, 0.93), row("trial_mid", 5000, 0.92), row("trial_big", 9000, 0.96)]


def confirmation(t: str, val: list[float], test: list[float]) -> dict:
    return {"event": ledger.CONFIRMATION, "time": 100.0, "started": 90.0, "trial_id": t, "mode": "finetune",
            "seeds": list(SEEDS), "error": "", "wall_s": 10.0,
            "runs": [{"seed": s, "val_accuracy": v, "val_count": 300, "test_accuracy": a, "test_count": 300,
                      "cpu_seconds": 1.0} for s, v, a in zip(SEEDS, val, test)]}


# trial_small misses the target on validation with fresh seeds though its test is near perfect; trial_mid meets it on
# validation though its test mean is 0.81; trial_big is not measured (not needed)
EVENTS = [confirmation("trial_small", [0.85, 0.86, 0.87], [0.99, 0.98, 1.0]),
          confirmation("trial_mid", [0.91, 0.92, 0.93], [0.80, 0.81, 0.82])]


def decided(rep: dict) -> tuple:
    c = rep["confirmation"]["candidates"]
    return (rep["answer"], rep["winner"] and rep["winner"]["trial_id"],
            rep["best_confirmed"] and rep["best_confirmed"]["trial_id"], [e["state"] for e in c],
            [e["confirm_val_accuracy_per_seed"] for e in c], rep["selected_on"], rep["selection_rule"])


def test_winner_is_chosen_on_validation_and_its_test_is_reported():
    rep = report.build(S, ROWS, EVENTS, 0.1)
    w = rep["winner"]
    assert (rep["answer"], w["trial_id"], w["confirmed"]) == ("confirmed", "trial_mid", True)
    assert [e["state"] for e in rep["confirmation"]["candidates"]] == ["below target", "confirmed", "not needed"]
    assert w["confirm_val_accuracy_per_seed"] == [0.91, 0.92, 0.93]
    assert w["confirm_val_accuracy_mean"] == pytest.approx(0.92) and w["confirm_val_accuracy_std"] == pytest.approx(
        0.01)
    assert w["confirm_val_accuracy_ci95"][0] < 0.92 < w["confirm_val_accuracy_ci95"][1]
    assert w["test_accuracy_per_seed"] == [0.80, 0.81, 0.82] and w["test_accuracy_mean"] == pytest.approx(0.81)
    assert w["val_accuracy"] == 0.92  # the search's own measurement stays beside the fresh seeds
    assert rep["selected_on"] == "validation"
    assert rep["selection_rule"] == ("the smallest of the (up to) 3 smallest trials feasible on validation (params) "
                                     "whose validation mean over 3 fresh seeds >= 0.9; test measured in the same runs, "
                                     "reported, never used to choose")
    # every candidate carries both summaries; one not measured, null (and no seeds)
    big = rep["confirmation"]["candidates"][2]
    assert {k: big[k] for k in CONFIRM_VAL_SEED_FIELDS + TEST_SEED_FIELDS} == {
        **{k: None for k in CONFIRM_VAL_SEED_FIELDS + TEST_SEED_FIELDS},
        "confirm_val_accuracy_per_seed": [], "test_accuracy_per_seed": []}
    text = report.format_text(rep, S)
    assert f"Chosen on validation: {rep['selection_rule']}" in text
    assert "Winner: trial_mid confirmed on validation 0.920 ± 0.010" in text
    assert "test 0.810 ± 0.010" in text and "(per seed 0.800, 0.810, 0.820), reported only" in text
    small = [ln for ln in text.splitlines() if ln.startswith("  trial_small")][-1]  # its confirmation row
    assert "0.860 ± 0.010" in small and "0.990 ± 0.010" in small and small.endswith("below target")


def test_permuting_every_test_number_changes_no_decision():
    tests = [r["test_accuracy"] for e in EVENTS for r in e["runs"]]
    for shuffled in (random.Random(1).sample(tests, len(tests)), [1.0 - a for a in tests]):
        pool = iter(shuffled)
        events = [{**e, "runs": [{**r, "test_accuracy": next(pool)} for r in e["runs"]]} for e in EVENTS]
        assert decided(report.build(S, ROWS, events, 0.1)) == decided(report.build(S, ROWS, EVENTS, 0.1))


def test_with_none_confirmed_the_best_named_is_the_best_on_validation():
    events = [EVENTS[0], confirmation("trial_mid", [0.86, 0.87, 0.88], [0.95, 0.96, 0.97]),
              confirmation("trial_big", [0.87, 0.88, 0.89], [0.50, 0.52, 0.54])]
    rep = report.build(S, ROWS, events, 0.1)
    # by test, trial_small (0.99) would be named; by validation trial_big (0.88) is
    assert (rep["answer"], rep["winner"], rep["best_confirmed"]["trial_id"]) == ("none confirmed", None, "trial_big")
    assert "best trial_big: validation 0.880 ± 0.010, test 0.520 ± 0.020 at 9,000 params" in rep["summary"]
    assert "Answer: none (no candidate met the target on validation with fresh seeds)" in report.format_text(rep, S)


def test_lower_bound_is_held_against_the_validation_interval():
    s = dataclasses.replace(S, feasibility="lower-bound")
    # trial_mid's validation interval reaches below 0.9 (3 seeds, std 0.01: lower end about 0.895)
    events = [*EVENTS, confirmation("trial_big", [0.95, 0.95, 0.96], [0.10, 0.10, 0.10])]
    rep = report.build(s, ROWS, events, 0.1)
    assert rep["winner"]["trial_id"] == "trial_big"
    assert [e["state"] for e in rep["confirmation"]["candidates"]] == ["below target", "below target", "confirmed"]
    assert "validation lower end of the 95% t-interval over 3 fresh seeds >= 0.9" in rep["selection_rule"]
    assert "confirmed when the validation lower end of the 95% t-interval >= 0.9" in report.format_text(rep, s)


def test_without_confirmation_the_rule_says_one_seed_and_no_test():
    s = dataclasses.replace(S, confirm=0)
    rep = report.build(s, ROWS, [], 0.1)
    w = rep["winner"]
    assert (rep["answer"], w["trial_id"], w["confirmed"]) == ("unconfirmed", "trial_small", False)
    assert w["confirm_val_accuracy_mean"] is None and w["test_accuracy_mean"] is None
    assert rep["selected_on"] == "validation" and "one seed" in rep["selection_rule"]
    assert "Chosen on validation: the smallest trial (params) whose validation accuracy in the search (one seed) " \
           ">= 0.9; --confirm 0: nothing re-measured, no test" in report.format_text(rep, s)
