"""benchmarks/search_replay.py on a hand-made table: the ground truth, the compute accounting (every epoch, fine-tune
and confirmation; no answer from results that end after the budget), paired seeds with one fine-tune seed drawn
per trial, success judged against S*, the size scan, the report and its goal line, and the CLI's quick run.
No Ray cluster: the searches run in virtual time."""
from __future__ import annotations

import json
import math
import statistics

import optuna
import pytest

from benchmarks import replay_report as rep
from benchmarks import replay_table as rt
from benchmarks import search_replay as sr
from benchmarks.replay_methods import METHODS, Context, size_order
from benchmarks.search_sim import SimTrial

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS, TARGET = 6, 0.9
FT_CPU = (1.0, 2.0, 4.0)  # per fine-tune seed: a trial's cost says which seed it drew
EPOCH_CPU = 0.5


def make_table(overrides: dict | None = None) -> dict:
    """8 configurations: width {16, 32} x depth {1, 2} x mask {0.5, 0.75}; params = 10 * width * depth, so (16, 2)
    and (32, 1) tie at 320. Truth (mean test >= 0.9): feasible (16, 2, 0.5), (32, 1, 0.5), (32, 2, *): S* = 320.
    (16, 2, 0.75) looks feasible on validation with seed 1 only; (32, 1, 0.75) confirms on validation but is
    infeasible on test."""
    acc = {  # (width, depth, mask) -> (val per seed, test per seed)
        (16, 1, 0.5): ((0.80, 0.81, 0.82), (0.80, 0.80, 0.80)),
        (16, 1, 0.75): ((0.78, 0.79, 0.80), (0.78, 0.78, 0.78)),
        (16, 2, 0.5): ((0.95, 0.91, 0.93), (0.93, 0.93, 0.93)),
        (16, 2, 0.75): ((0.92, 0.85, 0.86), (0.85, 0.85, 0.85)),
        (32, 1, 0.5): ((0.94, 0.94, 0.94), (0.95, 0.95, 0.95)),
        (32, 1, 0.75): ((0.93, 0.93, 0.93), (0.88, 0.88, 0.88)),
        (32, 2, 0.5): ((0.96, 0.96, 0.96), (0.96, 0.96, 0.96)),
        (32, 2, 0.75): ((0.95, 0.95, 0.95), (0.95, 0.95, 0.95)),
    }
    configs = {}
    for (w, d, m), (vals, tests) in acc.items():
        point = {"model.embed_dim": w, "model.depth": d, "mask.ratio": m}
        proxy = (vals[0] - 0.5) * w * d / 64  # bigger and better configurations rank higher
        configs[json.dumps(point, sort_keys=True)] = {
            "point": point, "params": 10 * w * d, "flops": 100 * w * d,
            "epochs": [{"proxy_knn": proxy * e / EPOCHS, "loss": 1.0, "cpu_s": EPOCH_CPU * d}
                       for e in range(1, EPOCHS + 1)],
            "finetune": [{"seed": s, "val_accuracy": v, "test_accuracy": t, "cpu_s": c}
                         for s, v, t, c in zip((1, 2, 3), vals, tests, FT_CPU)]}
    table = {"space": "hand", "target_accuracy": TARGET, "size_metric": "params", "trials": 3, "grace_period": 2,
             "epochs": EPOCHS, "keys": ["model.embed_dim", "model.depth", "mask.ratio"], "recipe": {},
             "val_count": 400, "configs": configs}
    return {**table, **(overrides or {})}


@pytest.fixture
def table() -> rt.Table:
    return rt.from_dict(make_table())


def key(w, d, m) -> str:
    return json.dumps({"mask.ratio": m, "model.depth": d, "model.embed_dim": w}, sort_keys=True)


# ---- (a) ground truth --------------------------------------------------------------------------------------------
def test_truth_is_mean_test_accuracy(table):
    feasible = {k for k, r in table.rows.items() if table.feasible(r)}
    assert feasible == {key(16, 2, 0.5), key(32, 1, 0.5), key(32, 2, 0.5), key(32, 2, 0.75)}
    assert table.s_star == 320
    # (16, 2, 0.75) reaches the target with one seed on validation: the truth reads the mean on test
    assert not table.feasible(table.rows[key(16, 2, 0.75)])


def test_no_feasible_configuration_is_said():
    t = rt.from_dict(make_table({"target_accuracy": 0.99}))
    assert t.s_star is None
    runs = sr.run_all(t, ["size-scan"], [0], cap=1e9)
    body = rep.markdown(t, runs, ["size-scan"], [0], t.budget_1x(3, 3), "grid", None, 0.0)
    assert "no configuration is feasible" in body and "there is no S*" in body


def test_the_report_says_when_validation_cannot_reach_s_star():
    data = make_table()
    for k in (key(16, 2, 0.5), key(32, 1, 0.5), key(32, 1, 0.75)):  # size 320 never confirms on validation
        for f in data["configs"][k]["finetune"]:
            f["val_accuracy"] = 0.85
    t = rt.from_dict(data)
    body = rep.markdown(t, [], [], [], t.budget_1x(3, 3), "grid", None, 0.0)
    assert "S* = 320 params" in body and "confirms on validation (3-seed mean >= target) has 640 params (S*_val): no method" \
        in body


def test_a_partial_table_replays_its_largest_complete_subgrid():
    data = make_table()
    for k in (key(32, 2, 0.75), key(16, 1, 0.75)):  # mask 0.75 measured for (16, 2) only: holes
        del data["configs"][k]
    data["configs"][key(32, 1, 0.75)]["epochs"].pop()  # a row still being measured is no row
    t = rt.from_dict(data)
    assert len(t.rows) == 5
    grid = rt.complete_subgrid(t)
    assert grid == {"model.embed_dim": [16, 32], "model.depth": [1, 2], "mask.ratio": [0.5]}
    sub = t.restrict(grid)
    assert len(sub.rows) == 4 and key(16, 2, 0.75) not in sub.rows
    space = rt.optuna_space(sub)  # the searcher can propose exactly the sub-grid
    assert space["mask.ratio"].choices == (0.5,)
    assert (space["model.embed_dim"].low, space["model.embed_dim"].high, space["model.embed_dim"].step) == (16, 32, 16)
    assert (space["model.depth"].low, space["model.depth"].high, space["model.depth"].step) == (1, 2, 1)


# ---- (b) compute accounting ---------------------------------------------------------------------------------------
def test_budget_is_trials_full_trials_plus_confirmation(table):
    full = statistics.median(EPOCHS * EPOCH_CPU * d + statistics.fmean(FT_CPU) for d in (1, 1, 1, 1, 2, 2, 2, 2))
    assert table.budget_1x(3, 3) == pytest.approx(3 * full + 3 * 3 * statistics.median(FT_CPU))


def test_a_trial_costs_its_epochs_and_its_drawn_finetune(table):
    run = sr.replay(table, "random+fifo", seed=3, cap=40.0)  # the 8 configurations cost 54 CPU s in all
    assert len(run.trials) == len({t.key for t in run.trials}) < 8  # the cap ended it; none ran twice
    for t in run.trials:  # one trial at a time: a trial's cost is the search compute between its start and end
        if t.outcome == "cut":
            continue
        row = table.rows[t.key]
        drawn = next(f for f in row.finetunes if f.seed == t.ft_seed)
        assert t.outcome == "finished" and t.end - t.start == pytest.approx(sum(row.epoch_cpu_s) + drawn.cpu_s)
    last = run.trials[-1]
    assert last.outcome == "cut" or last.end >= 40.0
    assert all(t.end < 40.0 for t in run.trials[:-1])


def test_asha_stops_trials_at_the_grace_period_and_they_cost_only_those_epochs(table):
    run = sr.replay(table, "tpe+asha (0.1)", seed=0, cap=80.0)
    pruned = [t for t in run.trials if t.outcome == "pruned"]
    assert pruned and all(t.epochs == 2 for t in pruned)
    for t in pruned:
        assert t.end - t.start == pytest.approx(2 * EPOCH_CPU * table.rows[t.key].point["model.depth"])


def trial(i, k, table, val, end) -> SimTrial:
    row = table.rows[k]
    t = SimTrial(f"t{i}", dict(row.point), row.trace(val, 0.0), outcome="finished", val_accuracy=val)
    t.compute_at_end = end
    return t


def test_service_confirms_the_k_smallest_and_counts_all_of_them(table):
    ts = [trial(0, key(32, 2, 0.5), table, 0.96, 10.0), trial(1, key(16, 1, 0.5), table, 0.85, 20.0),
          trial(2, key(16, 2, 0.75), table, 0.92, 30.0), trial(3, key(32, 1, 0.5), table, 0.94, 40.0),
          trial(4, key(32, 2, 0.75), table, 0.95, 50.0), trial(5, key(16, 2, 0.75), table, 0.92, 35.0)]
    ms = sr.service_moments(table, ts, k=3)
    confirm = sum(FT_CPU)  # 3 seeds of one candidate
    # after trial 0: one candidate; after 2: (16,2,.75) fails confirmation on validation, (32,2,.5) wins; its
    # repeat (trial 5) is the same candidate; after 3: (32,1,.5), as small, confirms
    assert [(m.search, m.at, m.key) for m in ms] == [
        (10.0, 10.0 + confirm, key(32, 2, 0.5)), (30.0, 30.0 + 2 * confirm, key(32, 2, 0.5)),
        (35.0, 35.0 + 2 * confirm, key(32, 2, 0.5)), (40.0, 40.0 + 3 * confirm, key(32, 1, 0.5)),
        (50.0, 50.0 + 3 * confirm, key(32, 1, 0.5))]


def test_the_answer_at_a_compute_uses_only_what_ended_with_room_to_confirm(table):
    ms = (sr.Moment(10.0, 17.0, "a"), sr.Moment(30.0, 44.0, "b"), sr.Moment(40.0, 61.0, "c"),
          sr.Moment(50.0, 58.0, "d"))
    run = sr.Run(0, "x", (), ms, math.inf)
    assert run.answer_at(16.9) is None and run.answer_at(17.0) == "a"
    assert run.answer_at(50.0) == "b"  # c's search ended by then, but its confirmation would not have
    assert run.answer_at(60.0) == "d"  # the latest stop whose confirmation fits, not the first
    assert run.spent_at(100.0) == 100.0 and sr.Run(0, "x", (), ms, 70.0).spent_at(100.0) == 70.0
    for method in ("random+fifo", "tpe+asha (0.1)"):  # on a real replay, at every compute
        real = sr.replay(table, method, seed=1, cap=80.0)
        for c in range(0, 80):
            k = real.answer_at(float(c))
            if k is not None:
                row = table.rows[k]
                assert any(t.key == k and t.outcome == "finished" and t.end + sr.confirm_cost(row) <= c
                           for t in real.trials)


# ---- (c) paired seeds, one fine-tune seed per trial ----------------------------------------------------------------
def test_every_method_draws_the_same_seed_for_a_configuration_in_a_seed(table):
    runs = sr.run_all(table, ["random+fifo", "size-scan", "tpe+asha (0.1)"], list(range(6)), cap=80.0)
    drawn: dict[tuple, set] = {}
    methods: dict[tuple, set] = {}
    for r in runs:
        for t in r.trials:
            drawn.setdefault((r.seed, t.key), set()).add(t.ft_seed)
            methods.setdefault((r.seed, t.key), set()).add(r.method)
    assert all(len(s) == 1 for s in drawn.values())
    assert sum(len(m) == 3 for m in methods.values()) >= 6  # the check is not vacuous: pairs all three ran
    # ... and across seeds the draws differ, over all three seeds
    per_seed = [rt.draw(s, key(16, 2, 0.5), 3) for s in range(300)]
    assert set(per_seed) == {0, 1, 2} and all(80 < per_seed.count(i) < 120 for i in range(3))


def test_a_trial_reports_its_drawn_seed_alone_unless_the_method_remeasures(table):
    plain = sr.tracer(table, METHODS["random+fifo"], seed=5)
    p = {"model.embed_dim": 16, "model.depth": 2, "mask.ratio": 0.5}
    tr = plain(p)
    drawn = next(f for f in table.rows[key(16, 2, 0.5)].finetunes if f.seed == tr["ft_seed"])
    assert tr["final"] == {"val_accuracy": drawn.val_accuracy, "cpu_s": drawn.cpu_s}
    remeasured = sr.tracer(table, METHODS["default"], seed=5)(p)  # its re-measure option; no searcher needed
    fts = table.rows[key(16, 2, 0.5)].finetunes
    if abs(drawn.val_accuracy - TARGET) <= 2 * math.sqrt(drawn.val_accuracy * (1 - drawn.val_accuracy) / 400):
        assert remeasured["final"]["val_accuracy"] == pytest.approx(statistics.fmean(f.val_accuracy for f in fts))
        assert remeasured["final"]["cpu_s"] == pytest.approx(sum(FT_CPU))
    far = sr.tracer(table, METHODS["default"], seed=5)({"model.embed_dim": 16, "model.depth": 1, "mask.ratio": 0.75})
    assert far["final"]["cpu_s"] in FT_CPU  # 0.78-0.80 is more than 2 standard errors below 0.9: one seed


def test_a_registered_method_runs_and_pays_for_its_remeasures(table, monkeypatch):
    """What plugging in the new default takes: one Method entry; here re-measuring every finished trial."""
    from ray.tune.schedulers import FIFOScheduler

    from benchmarks.replay_methods import Method, _optuna

    monkeypatch.setitem(METHODS, "always", Method("always", "test", lambda ctx: _optuna(ctx, "random"),
                                                  lambda ctx: FIFOScheduler(), remeasure=lambda v, t, n: True))
    run = sr.replay(table, "always", seed=2, cap=80.0)
    done = [t for t in run.trials if t.outcome == "finished"]
    assert done
    for t in done:  # the drawn seed and the 2 others, each once
        assert t.end - t.start == pytest.approx(sum(table.rows[t.key].epoch_cpu_s) + sum(FT_CPU))


def test_success_is_the_feasible_answer_of_size_s_star(table):
    def at(k):
        return rep.outcome(table, sr.Run(0, "x", (), (sr.Moment(0.0, 0.0, k),) if k else (), math.inf), 1.0)

    ok, larger, infeasible, none = (at(key(16, 2, 0.5)), at(key(32, 2, 0.5)), at(key(32, 1, 0.75)), at(None))
    assert ok.success and ok.log2 == 0
    assert not larger.success and larger.feasible and larger.log2 == 1.0
    assert not infeasible.success and infeasible.feasible is False and infeasible.size == table.s_star
    assert none.size is None and none.log2 == math.inf
    runs = [sr.Run(i, "m", (), (sr.Moment(0.0, 0.0, k),) if k else (), math.inf)
            for i, k in enumerate([key(16, 2, 0.5), key(32, 2, 0.5), key(32, 1, 0.75), None])]
    c = rep.cell(table, runs, "m", 1.0, budget=1.0)
    assert (c.n, c.successes, c.answers, c.larger, c.infeasible) == (4, 1, 3, 1, 1)
    assert c.median_log2 == 0.5 and c.infeasible_share == pytest.approx(1 / 3)


# ---- (e) the size scan -------------------------------------------------------------------------------------------
def test_size_scan_tries_sizes_in_order_and_stops_at_the_first_confirmed(table):
    orders = {tuple(json.dumps(p, sort_keys=True) for p in size_order(table, s)) for s in range(10)}
    assert len(orders) > 1  # ties in a seeded order
    for s in range(10):
        run = sr.replay(table, "size-scan", seed=s, cap=1e9)
        sizes = [table.rows[t.key].size("params") for t in run.trials]
        assert sizes == sorted(sizes) and all(t.outcome == "finished" for t in run.trials)
        answer = run.answer_at(run.end)
        assert run.trials[-1].key == answer  # nothing started after the first confirmed
        assert answer in (key(16, 2, 0.5), key(32, 1, 0.5), key(32, 1, 0.75))  # the first size-320 one confirmed
        # the confirmation is part of the trial that found it
        last = run.trials[-1]
        drawn = next(f for f in table.rows[last.key].finetunes if f.seed == last.ft_seed)
        assert last.end - last.start == pytest.approx(sum(table.rows[last.key].epoch_cpu_s) + drawn.cpu_s
                                                      + sum(FT_CPU))


def test_the_baseline_is_todays_two_objective_searcher(table):
    ctx = Context(table, 0)
    searcher = METHODS["tpe+asha (0.1)"].searcher(ctx)
    assert [d.name for d in searcher.study.directions] == ["MINIMIZE", "MAXIMIZE"]
    sched = METHODS["tpe+asha (0.1)"].scheduler(ctx)
    assert sched._reduction_factor == 3 and [r for r, _ in sched._brackets[0]._rungs] == [EPOCHS, 2]
    new = METHODS["default"].searcher(ctx)
    assert METHODS["default"].ready and [d.name for d in new.study.directions] == ["MINIMIZE"]
    assert new.size_of is not None and type(METHODS["default"].scheduler(ctx)).__name__ == "ConstraintStopper"


# ---- (f) the report and the goal line ----------------------------------------------------------------------------
def cells(d1, d1_inf, d1_log2, d05, scan1) -> list[rep.Cell]:
    def c(m, x, rate, inf=0, log2=0.0):
        return rep.Cell(m, x, 100, round(100 * rate), log2, 100, 0, inf, x)
    return [c("default", 1.0, d1, d1_inf, d1_log2), c("default", 0.5, d05), c("size-scan", 1.0, scan1)]


def test_goal_line():
    assert "**met**" in rep.goal(cells(0.85, 5, 0.0, 0.6, 0.6), 50)
    for bad in (cells(0.79, 0, 0.0, 0.9, 0.5), cells(0.9, 6, 0.0, 0.9, 0.5), cells(0.9, 0, 0.5, 0.9, 0.5),
                cells(0.9, 0, 0.0, 0.59, 0.6)):
        assert "**NOT met**" in rep.goal(bad, 50)
    assert "not judged (49 seeds)" in rep.goal(cells(0.9, 0, 0.0, 0.9, 0.5), 49)
    assert "not judged (not run: default)" in rep.goal(cells(0.9, 0, 0.0, 0.9, 0.5)[2:], 50)


def test_quick_cli_writes_the_section_and_the_plot(tmp_path, monkeypatch):
    from benchmarks import common

    path = tmp_path / "table.json"
    path.write_text(json.dumps(make_table()))
    results, png = tmp_path / "RESULTS.md", tmp_path / "replay.png"
    assert sr.main(["--table", str(path), "--quick", "--results", str(results), "--png", str(png)]) == 0
    body = results.read_text()
    assert "## search_replay (--quick)" in body and "![success rate against compute](replay.png)" in body
    assert png.stat().st_size > 1000
    rows = [ln for ln in body.splitlines() if ln.startswith("| ") and "x |" in ln and "/" in ln]
    assert len(rows) == 5 * 3  # 5 methods x 3 budgets
    assert "S* = 320 params" in body and f"{sr.QUICK_SEEDS} paired replay seeds" in body
    assert "confirms on validation (3-seed mean >= target) has 320 params (S*_val) too" in body
    assert "Goal (issue 21)" in body and "not judged" in body
    # without --results a quick run writes no section
    monkeypatch.setattr(common, "RESULTS", tmp_path / "default_RESULTS.md")
    assert sr.main(["--table", str(path), "--quick", "--seeds", "1", "--methods", "size-scan"]) == 0
    assert not (tmp_path / "default_RESULTS.md").exists()
