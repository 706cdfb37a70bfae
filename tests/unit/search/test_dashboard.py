"""What optuna-dashboard shows of a search's study, read from the dashboard itself (its WSGI app, the JSON its pages
draw from): the objective's name, the target and size metric, which trials are feasible, the answer badged
"Best Trial" (not a smaller trial below the target), and each epoch's proxy as a learning curve.

The searcher is driven as Tune would (suggest / on_trial_result / on_trial_complete), without Ray."""
from __future__ import annotations

import io
import json
import math
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from simmim_ray.search.searcher import INTERMEDIATE, ConstrainedOptunaSearch

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="the test extra installs optuna-dashboard")
optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.floor_smoke  # where the constraint is stored differs between Optuna 4 and 5

SPACE = {"model.embed_dim": optuna.distributions.IntDistribution(8, 64, step=8)}
TARGET = 0.9
# Tune trial id -> (params, per-epoch proxies, final result or None when the scheduler stopped it)
TRIALS = {
    "big_ok": ({"model.embed_dim": 64}, [0.5, 0.7, 0.8], {"params": 4000, "val_accuracy": 0.95}),
    "small_low": ({"model.embed_dim": 16}, [0.3, 0.4, 0.45], {"params": 500, "val_accuracy": 0.5}),
    "stopped": ({"model.embed_dim": 8}, [0.1], None),
}


def get(app, path: str) -> dict:
    environ: dict = {"PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2]}
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO(b"")
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    storage = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'study.db'}"
    s = ConstrainedOptunaSearch(SPACE, "params", TARGET, storage=storage, study_name="dash", seed=0,
                                points_to_evaluate=[p for p, _, _ in TRIALS.values()])
    numbers = {}
    for tid, (params, proxies, final) in TRIALS.items():
        assert s.suggest(tid) == params
        numbers[tid] = s.running[tid].number
        for epoch, proxy in enumerate(proxies, start=1):
            result = {"epoch": epoch, "proxy_knn": proxy, "params": (final or {"params": 50})["params"],
                      "done": False}
            s.on_trial_result(tid, result)
            s.on_trial_result(tid, result)  # a resumed trial reports an epoch again: stored once
        last = {"epoch": len(proxies), "proxy_knn": proxies[-1], "params": 50, "done": False}
        s.on_trial_complete(tid, {**last, **final, "done": True} if final else last)
    app = optuna_dashboard.wsgi(storage)
    (study,) = get(app, "/api/studies")["study_summaries"]
    detail = get(app, f"/api/studies/{study['study_id']}?after=0")
    return detail, {t["number"]: t for t in detail["trials"]}, numbers


def attrs(items: list[dict]) -> dict:
    return {a["key"]: a["value"] for a in items}


def test_the_objective_is_named_and_the_target_and_size_metric_are_on_the_study(dashboard):
    detail, _, _ = dashboard
    assert detail["objective_names"] == ["params"] and detail["directions"] == ["minimize"]
    study_attrs = attrs(detail["user_attrs"])
    assert float(study_attrs["target_accuracy"]) == TARGET and study_attrs["size_metric"] == "params"
    assert study_attrs["intermediate_values"] == INTERMEDIATE


def test_feasible_and_infeasible_trials_are_told_apart_and_the_answer_is_the_best_trial(dashboard):
    detail, trials, n = dashboard
    ok, low, stopped = trials[n["big_ok"]], trials[n["small_low"]], trials[n["stopped"]]
    # the dashboard's rule: feasible when every constraint is <= 0
    assert ok["constraints"] == [pytest.approx(TARGET - 0.95)] and all(c <= 0 for c in ok["constraints"])
    assert low["constraints"] == [pytest.approx(TARGET - 0.5)] and any(c > 0 for c in low["constraints"])
    assert stopped["constraints"] == [] and stopped["state"] == "Pruned"  # never measured: neither
    # the smaller trial missed the target: it must not be the best, whatever its size
    assert [t["number"] for t in detail["best_trials"]] == [n["big_ok"]]
    assert ok["values"] == [4000] and low["values"] == ["inf"]
    assert float(attrs(low["user_attrs"])["size"]) == 500  # its size is still shown
    assert "values" not in stopped  # its proxy is not shown as a size


def test_each_epochs_proxy_is_an_intermediate_value(dashboard):
    detail, trials, n = dashboard
    assert detail["has_intermediate_values"]
    for tid, (_, proxies, _) in TRIALS.items():
        got = trials[n[tid]]["intermediate_values"]
        assert [v["step"] for v in got] == list(range(1, len(proxies) + 1))
        assert [v["value"] for v in got] == [pytest.approx(1 - p) for p in proxies]
    assert not math.isinf(trials[n["big_ok"]]["values"][0])
