"""Results, report and export from a stored experiment directory (no Ray): a hand-made experiment with a
complete feasible trial, a complete infeasible one, a pruned one, an errored one and a still-running one."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import torch

from simmim_ray.config import Config
from simmim_ray.errors import NoFeasibleTrial
from simmim_ray.models import build_simmim, count_params

TINY = {"model": {"img_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2}}


def make_trial(exp, name, params, results, event=None, ckpt_cfg=None):
    d = exp / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(params))
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    if event:
        with open(exp / "trials.jsonl", "a") as f:
            f.write(json.dumps({"trial_id": name, **event}) + "\n")
    if ckpt_cfg is not None:
        cfg = Config.from_dict(ckpt_cfg)
        model = build_simmim(cfg)
        ck = exp / "train_runs" / name / "checkpoint_2026-01-01_00-00-00.000000"
        ck.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 2}, ck / "state.pt")
        (exp / "train_runs" / name / "checkpoint_manager_snapshot.json").write_text("{}")
        return count_params(model.encoder)
    return None


@pytest.fixture
def experiment(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "settings.json").write_text(json.dumps({"target_accuracy": 0.8, "size_metric": "params"}))
    small = make_trial(exp, "trial_a", {"model.embed_dim": 16}, [
        {"epoch": 1, "proxy_knn": 0.5, "params": 0, "flops": 10},
        {"epoch": 2, "proxy_knn": 0.6, "val_accuracy": 0.85, "params": 0, "flops": 10, "done": True}],
        {"status": "complete", "wall_s": 12.0, "epochs": 2, "error": ""}, ckpt_cfg=TINY)
    # rewrite trial_a's size with the real parameter count of its checkpoint
    lines = (exp / "trial_a" / "result.json").read_text().replace('"params": 0', f'"params": {small}')
    (exp / "trial_a" / "result.json").write_text(lines)
    make_trial(exp, "trial_b", {"model.embed_dim": 64}, [
        {"epoch": 2, "val_accuracy": 0.95, "params": 10 ** 6, "flops": 10 ** 7, "done": True}],
        {"status": "complete", "wall_s": 20.0, "epochs": 2, "error": ""})
    make_trial(exp, "trial_c", {"model.embed_dim": 8}, [
        {"epoch": 2, "val_accuracy": 0.5, "params": 100, "flops": 5, "done": True}],
        {"status": "complete", "wall_s": 9.0, "epochs": 2, "error": ""})
    make_trial(exp, "trial_d", {"model.embed_dim": 32}, [{"epoch": 1, "proxy_knn": 0.99, "params": 50, "flops": 1}],
               {"status": "pruned", "wall_s": 5.0, "epochs": 1, "error": ""})
    make_trial(exp, "trial_e", {"model.embed_dim": 48}, [],
               {"status": "error", "wall_s": 1.0, "epochs": 0, "error": "NonFiniteLoss: non-finite loss"})
    make_trial(exp, "trial_f", {"model.embed_dim": 40}, [{"epoch": 1, "proxy_knn": 0.3, "params": 70, "flops": 2}])
    return exp, small


def test_results_table_statuses_and_winner(experiment):
    from simmim_ray.search import results

    exp, small = experiment
    rows = results.write_outputs(str(exp), 0.8, "params")
    table = pq.read_table(str(exp / "results.parquet"))
    assert {"trial_id", "status", "model.embed_dim", "val_accuracy", "params", "flops", "feasible", "epochs",
            "wall_s", "error"} <= set(table.column_names)
    by = {r["trial_id"]: r for r in table.to_pylist()}
    assert [by[t]["status"] for t in "abcdef" for t in [f"trial_{t}"]] == [
        "complete", "complete", "complete", "pruned", "error", "running"]
    assert by["trial_e"]["error"].startswith("NonFiniteLoss")
    # the pruned trial's high proxy is not an accuracy and never makes it feasible
    assert by["trial_d"]["val_accuracy"] is None and not by["trial_d"]["feasible"]
    assert [by[f"trial_{t}"]["feasible"] for t in "abc"] == [True, True, False]
    assert results.winner(rows, "params")["trial_id"] == "trial_a"
    assert [r["trial_id"] for r in results.pareto_front(rows, "params")] == ["trial_c", "trial_a", "trial_b"]
    history = pq.read_table(str(exp / "history.parquet")).to_pylist()
    assert sorted((h["trial_id"], h["epoch"]) for h in history if h["trial_id"] == "trial_a") == [
        ("trial_a", 1), ("trial_a", 2)]
    assert (exp / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_best_export_loads_with_one_call(experiment):
    from simmim_ray.export import load_encoder
    from simmim_ray.search import results

    exp, small = experiment
    results.write_outputs(str(exp), 0.8, "params")
    enc = load_encoder(str(exp / "best"))
    assert count_params(enc) == small
    out = enc(torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, 16, 4, 4)
    assert json.loads((exp / "best" / "metrics.json").read_text())["trial_id"] == "trial_a"


def test_report_text_and_json(experiment, capsys):
    from simmim_ray.cli import main

    exp, _ = experiment
    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "Winner: trial_a" in out and "1 error" in out and "1 pruned" in out and "1 running" in out
    assert main(["report", str(exp), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["winner"]["trial_id"] == "trial_a"
    assert [r["trial_id"] for r in data["pareto_front"]] == ["trial_c", "trial_a", "trial_b"]


def test_no_feasible_trial_still_writes_report_and_says_best(experiment, capsys):
    from simmim_ray.search.driver import finish
    from simmim_ray.search.settings import SearchSettings

    exp, _ = experiment
    s = SearchSettings(space_path="x", name="exp", storage=str(exp.parent), trials=6, target_accuracy=0.99)
    with pytest.raises(NoFeasibleTrial) as e:
        finish(s, str(exp))
    assert "best was 0.9500 by trial_b" in str(e.value)
    assert (exp / "results.parquet").exists() and (exp / "pareto.png").exists()
    assert not os.path.exists(exp / "best")
    assert "No trial reached the target" in capsys.readouterr().out


def test_report_rejects_a_non_experiment(tmp_path, capsys):
    from simmim_ray.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


def test_a_trial_tune_never_saved_keeps_its_row_from_its_event(experiment):
    """A trial that ended after Tune's last state save before a driver kill has no Tune files in the experiment;
    its final event in trials.jsonl (config + last result, as ProgressPrinter logs it) still gives its row. A
    trial whose Tune copy predates its final report gets the event's final result."""
    from simmim_ray.search import results

    exp, small = experiment
    final = {"epoch": 2, "val_accuracy": 0.9, "params": 50_000, "flops": 7, "checkpoint_path": "/ck/g"}
    with open(exp / "trials.jsonl", "a") as f:
        f.write(json.dumps({"trial_id": "trial_g", "status": "complete", "wall_s": 8.0, "epochs": 2, "error": "",
                            "config": {"model.embed_dim": 24}, "result": final}) + "\n")
        f.write(json.dumps({"trial_id": "trial_f", "status": "complete", "wall_s": 9.0, "epochs": 2, "error": "",
                            "config": {"model.embed_dim": 40}, "result": {**final, "val_accuracy": 0.7}}) + "\n")
    hist = exp / "train_runs" / "trial_g" / "history.jsonl"
    hist.parent.mkdir(parents=True)
    hist.write_text("".join(json.dumps({"epoch": e, "proxy_knn": 0.1 * e}) + "\n" for e in (1, 2)))
    rows = results.write_outputs(str(exp), 0.8, "params")
    by = {r["trial_id"]: r for r in pq.read_table(str(exp / "results.parquet")).to_pylist()}
    assert len(by) == 7
    g = by["trial_g"]
    assert (g["status"], g["val_accuracy"], g["params"], g["model.embed_dim"], g["feasible"], g["epochs"],
            g["wall_s"], g["checkpoint_path"]) == ("complete", 0.9, 50_000, 24, True, 2, 8.0, "/ck/g")
    assert (by["trial_f"]["status"], by["trial_f"]["val_accuracy"]) == ("complete", 0.7)
    history = pq.read_table(str(exp / "history.parquet")).to_pylist()
    assert sorted(h["epoch"] for h in history if h["trial_id"] == "trial_g") == [1, 2]
    assert results.winner(rows, "params")["trial_id"] == "trial_a"  # still the smallest feasible
