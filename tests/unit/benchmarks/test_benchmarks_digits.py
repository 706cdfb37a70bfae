"""benchmarks/studies/digits_frontier.py: the arithmetic its tables rest on (seed-variance components,
search-minute estimate, the record store); the quick run end to end: tests/scenarios/benchmarks/."""
from __future__ import annotations

import math

import pytest

from benchmarks.studies import digits_frontier, digits_tables
from benchmarks.studies.digits_runs import seed_components


def test_seed_components_separate_pretraining_from_finetuning():
    # rows: pre-training seeds, columns: fine-tune seeds; only the checkpoint matters here
    only_pretrain = [[0.80, 0.80, 0.80], [0.90, 0.90, 0.90]]
    c = seed_components(only_pretrain)
    assert c["across_finetune"] == 0.0
    assert c["across_pretrain"] == pytest.approx(math.sqrt(0.005))
    only_finetune = [[0.80, 0.90], [0.80, 0.90], [0.80, 0.90]]
    c = seed_components(only_finetune)
    assert c["across_pretrain"] == 0.0 and c["across_finetune"] == pytest.approx(math.sqrt(0.005))


def test_search_minutes_counts_trials_and_confirmation():
    s = {"trials": 2, "confirm": 3, "confirm_seeds": 3}
    fixed, speed = digits_tables.TRIAL_FIXED_S, digits_tables.DDP_SPEEDUP
    got = digits_tables.search_minutes(60.0, 10.0, s)
    # 2 trials of pre-training + fine-tune, then one job per candidate (3) and one from scratch, each looping
    # over 3 fine-tune seeds: 4 fixed costs, 12 fine-tunes
    want = (2 * (fixed + 70.0 / speed) + 4 * fixed + 12 * 10.0 / speed) / 60
    assert got == pytest.approx(want)


def test_store_replaces_same_run_and_hides_changed_recipes(tmp_path):
    path = str(tmp_path / "s.json")
    rec = {"recipe": "a", "overrides": {"train.epochs": 5}, "fractions": {"labeled": 0.1}, "workers": 2,
           "kind": "simmim", "pretrain_seed": 0, "finetune_seed": 0, "test": 0.5}
    digits_frontier.store(path, [rec, {**rec, "finetune_seed": 1}])
    records = digits_frontier.store(path, [{**rec, "test": 0.7}])
    assert sorted(r["test"] for r in records) == [0.5, 0.7]  # seed 0 replaced, seed 1 kept
    assert len(digits_frontier.current(records, {"a": {"train.epochs": 5}})) == 2
    assert digits_frontier.current(records, {"a": {"train.epochs": 6}}) == []


def test_unit_seconds_times_the_finetune_epoch_itself_not_a_difference_of_evaluations(monkeypatch):
    """A stall in the 0-epoch evaluation (a shared machine's noise) must not make a fine-tune epoch cost nothing:
    a difference of two whole evaluations came out 0 in CI on the quick recipe."""
    import time

    from benchmarks.studies import digits_runs as dr
    from simmim_ray.engine import evaluate

    cfg = dr.run_config({**digits_frontier.QUICK["quick"], "eval.epochs": 10}, 0, 1)
    accuracies, calls = evaluate.accuracies, []

    def first_one_stalls(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)
        return accuracies(*args, **kwargs)

    monkeypatch.setattr(evaluate, "accuracies", first_one_stalls)
    got = dr.unit_seconds(cfg, dr.splits_of(cfg))
    assert len(calls) == 2
    assert got["eval_s"] >= 1.0
    assert 0 < got["finetune_epoch_s"] < 1.0
    assert got["epoch_s"] > 0 and got["proxy_s"] > 0
