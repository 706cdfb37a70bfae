"""Results, report and export from a stored experiment directory (no Ray): a hand-made experiment whose ledger
holds a complete feasible trial, a complete infeasible one, a pruned one, an errored one and a still-running one."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import torch

from simmim_ray.config import Config
from simmim_ray.errors import NoFeasibleTrial
from simmim_ray.io.export import CHECKPOINT_FILE
from simmim_ray.metrics import EPOCH, FLOPS, PARAMS, PROXY_KNN, VAL_ACCURACY
from simmim_ray.models import build_simmim, count_params
from simmim_ray.search.answer import tables
from simmim_ray.search.record import ledger
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.settings import SearchSettings

TINY = {"model": {"img_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2}}


def write_outputs(exp: Experiment, target: float = 0.8) -> list[dict]:
    """What the answer stage writes without confirmation (--confirm 0): the tables, best/ of the smallest trial
    feasible on validation (answer.export), pareto.png; -> the rows."""
    from simmim_ray.search.answer import answer, report

    s = SearchSettings(space_path="x", name="exp", root="/r", target_accuracy=target, confirm=0)
    rows, _ = tables.write_tables(exp, target, s.size_metric)
    rep = report.build(s, rows, exp.ledger.events(), None)
    answer.export(exp, rows, rep)
    tables.plot_pareto(exp, rows, target, s.size_metric, tables.winner(rows, s.size_metric))
    return rows


def make_trial(exp: Experiment, name, params, results, end=None, ckpt_cfg=None):
    """Ledger events as the driver's Recorder writes them; with `ckpt_cfg`, a Train checkpoint of that model."""
    exp.ledger.append(ledger.TRIAL_STARTED, trial_id=name, config=params)
    for r in results:
        exp.ledger.append(ledger.TRIAL_RESULT, trial_id=name, result=r)
    if end:
        exp.ledger.append(ledger.TRIAL_ENDED, trial_id=name, metrics=results[-1] if results else {},
                          checkpoint_path="", **end)
    if ckpt_cfg is not None:
        cfg = Config.from_dict(ckpt_cfg)
        model = build_simmim(cfg)
        ck = os.path.join(exp.train_runs(), name, "checkpoint_2026-01-01_00-00-00.000000")
        os.makedirs(ck)
        torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 2}, os.path.join(ck, CHECKPOINT_FILE))
        with open(os.path.join(exp.train_runs(), name, "checkpoint_manager_snapshot.json"), "w") as f:
            f.write("{}")
        return count_params(model.encoder)
    return None


@pytest.fixture
def experiment(tmp_path):
    exp = Experiment(str(tmp_path / "exp"))
    exp.save_settings(SearchSettings(space_path="s.yaml", name="exp", root=str(tmp_path), target_accuracy=0.8))
    small = count_params(build_simmim(Config.from_dict(TINY)).encoder)
    make_trial(exp, "trial_a", {"model.embed_dim": 16}, [
        {EPOCH: 1, PROXY_KNN: 0.5, PARAMS: small, FLOPS: 10},
        {EPOCH: 2, PROXY_KNN: 0.6, VAL_ACCURACY: 0.85, PARAMS: small, FLOPS: 10, "done": True}],
        {"status": ledger.COMPLETE, "wall_s": 12.0, "epochs": 2, "error": ""}, ckpt_cfg=TINY)
    make_trial(exp, "trial_b", {"model.embed_dim": 64}, [
        {EPOCH: 2, VAL_ACCURACY: 0.95, PARAMS: 10 ** 6, FLOPS: 10 ** 7, "done": True}],
        {"status": ledger.COMPLETE, "wall_s": 20.0, "epochs": 2, "error": ""})
    make_trial(exp, "trial_c", {"model.embed_dim": 8}, [
        {EPOCH: 2, VAL_ACCURACY: 0.5, PARAMS: 100, FLOPS: 5, "done": True}],
        {"status": ledger.COMPLETE, "wall_s": 9.0, "epochs": 2, "error": ""})
    make_trial(exp, "trial_d", {"model.embed_dim": 32}, [{EPOCH: 1, PROXY_KNN: 0.99, PARAMS: 50, FLOPS: 1}],
               {"status": ledger.PRUNED, "wall_s": 5.0, "epochs": 1, "error": ""})
    make_trial(exp, "trial_e", {"model.embed_dim": 48}, [],
               {"status": ledger.ERROR, "wall_s": 1.0, "epochs": 0, "error": "NonFiniteLoss: non-finite loss"})
    make_trial(exp, "trial_f", {"model.embed_dim": 40}, [{EPOCH: 1, PROXY_KNN: 0.3, PARAMS: 70, FLOPS: 2}])
    return exp, small


def test_results_table_statuses_and_winner(experiment):
    exp, small = experiment
    rows = write_outputs(exp)
    table = pq.read_table(exp.path("results.parquet"))
    assert {"trial_id", "status", "model.embed_dim", "val_accuracy", "params", "flops", "feasible", "epochs",
            "wall_s", "error"} <= set(table.column_names)
    by = {r["trial_id"]: r for r in table.to_pylist()}
    assert [by[t]["status"] for t in "abcdef" for t in [f"trial_{t}"]] == [
        "complete", "complete", "complete", "pruned", "error", "running"]
    assert by["trial_e"]["error"].startswith("NonFiniteLoss")
    # the pruned trial's high proxy is not an accuracy and never makes it feasible
    assert by["trial_d"]["val_accuracy"] is None and not by["trial_d"]["feasible"]
    assert [by[f"trial_{t}"]["feasible"] for t in "abc"] == [True, True, False]
    assert tables.winner(rows, "params")["trial_id"] == "trial_a"
    assert [r["trial_id"] for r in tables.pareto_front(rows, "params")] == ["trial_c", "trial_a", "trial_b"]
    history = pq.read_table(exp.path("history.parquet")).to_pylist()
    assert sorted((h["trial_id"], h["epoch"]) for h in history if h["trial_id"] == "trial_a") == [
        ("trial_a", 1), ("trial_a", 2)]
    assert open(exp.path("pareto.png"), "rb").read(4) == b"\x89PNG"


def test_best_export_loads_with_one_call(experiment):
    from simmim_ray.io.export import load_encoder
    exp, small = experiment
    write_outputs(exp)
    enc = load_encoder(exp.path("best"))
    assert count_params(enc) == small
    out = enc(torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, 16, 4, 4)
    assert json.loads(open(exp.path("best", "metrics.json")).read())["trial_id"] == "trial_a"


def test_report_text_and_json(experiment, capsys):
    from simmim_ray.cli import main

    exp, _ = experiment
    assert main(["report", exp.uri]) == 0
    out = capsys.readouterr().out
    # feasible on validation, not yet confirmed on test: no winner yet (tests/unit/search/test_answer.py: the
    # answer itself)
    assert "Answer: pending" in out and "1 error" in out and "1 pruned" in out and "1 running" in out
    assert main(["report", exp.uri, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["winner"] is None and data["answer"] == "pending"
    assert [c["trial_id"] for c in data["confirmation"]["candidates"]] == ["trial_a", "trial_b"]
    assert [r["trial_id"] for r in data["pareto_front"]] == ["trial_c", "trial_a", "trial_b"]


def test_no_feasible_trial_still_writes_report_and_says_best(experiment, capsys):
    from simmim_ray.search.answer.stage import run_answer_stage

    exp, _ = experiment
    s = SearchSettings(space_path="x", name="exp", root="/r", trials=6, target_accuracy=0.99)
    with pytest.raises(NoFeasibleTrial) as e:
        run_answer_stage(s, exp)
    assert "best was 0.9500 by trial_b" in str(e.value)
    assert os.path.exists(exp.path("results.parquet")) and os.path.exists(exp.path("pareto.png"))
    assert not os.path.exists(exp.path("best"))
    assert "No trial reached the target" in capsys.readouterr().out


def test_report_rejects_a_non_experiment(tmp_path, capsys):
    from simmim_ray.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


def test_rows_from_a_ledger_cut_by_driver_kills(experiment):
    """What a killed and resumed driver leaves in the ledger: a final result without the trial's end (the kill
    came between them), a trial ended twice (errored when its driver died, completed after the resume), and an
    epoch reported twice (a restarted worker group). Each gives one row, the completed answer wins, and history
    keeps one row per epoch, the latest report."""
    exp, small = experiment
    final = {EPOCH: 2, VAL_ACCURACY: 0.9, PARAMS: 50_000, FLOPS: 7, "done": True, "checkpoint_path": "/ck/g"}
    make_trial(exp, "trial_g", {"model.embed_dim": 24}, [{EPOCH: 1, PROXY_KNN: 0.1}, final])
    make_trial(exp, "trial_h", {"model.embed_dim": 56}, [{EPOCH: 1, PROXY_KNN: 0.2}],
               {"status": ledger.ERROR, "wall_s": 3.0, "epochs": 1, "error": "RayActorError: died"})
    for r in ({EPOCH: 1, PROXY_KNN: 0.4}, {EPOCH: 2, VAL_ACCURACY: 0.7, PARAMS: 9, FLOPS: 1, "done": True}):
        exp.ledger.append(ledger.TRIAL_RESULT, trial_id="trial_h", result=r)
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_h", status=ledger.COMPLETE, metrics=r, checkpoint_path="",
                      error="", epochs=2, wall_s=4.0)
    rows = write_outputs(exp)
    by = {r["trial_id"]: r for r in pq.read_table(exp.path("results.parquet")).to_pylist()}
    assert len(by) == 8
    g, h = by["trial_g"], by["trial_h"]
    assert (g["status"], g[VAL_ACCURACY], g[PARAMS], g["model.embed_dim"], g["feasible"], g["epochs"],
            g["checkpoint_path"]) == ("complete", 0.9, 50_000, 24, True, 2, "/ck/g")
    assert (h["status"], h[VAL_ACCURACY], h["error"], h["wall_s"]) == ("complete", 0.7, "", 4.0)
    history = pq.read_table(exp.path("history.parquet")).to_pylist()
    assert sorted((x[EPOCH], x[PROXY_KNN]) for x in history if x["trial_id"] == "trial_h") == [(1, 0.4), (2, None)]
    assert sorted(x[EPOCH] for x in history if x["trial_id"] == "trial_g") == [1, 2]
    assert tables.winner(rows, "params")["trial_id"] == "trial_a"  # still the smallest feasible


def test_an_experiment_from_before_the_ledger_still_reports(tmp_path, capsys):
    """settings.json with the old key names and trials.jsonl (one line per ended trial) instead of ledger/."""
    from simmim_ray.cli import main

    exp = tmp_path / "old"
    exp.mkdir()
    (exp / "settings.json").write_text(json.dumps({"space_path": "/s/digits_quick.yaml", "name": "old",
                                                   "storage": str(tmp_path), "trials": 2, "target_accuracy": 0.5,
                                                   "study_storage": ""}))
    (exp / "trials.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"trial_id": "trial_1", "status": "complete", "wall_s": 8.0, "epochs": 2, "error": "",
         "config": {"model.embed_dim": 24}, "result": {EPOCH: 2, VAL_ACCURACY: 0.6, PARAMS: 500, FLOPS: 9}},
        {"trial_id": "trial_2", "status": "pruned", "wall_s": 3.0, "epochs": 1, "error": "",
         "config": {"model.embed_dim": 32}, "result": {EPOCH: 1, PROXY_KNN: 0.2, PARAMS: 900, FLOPS: 9}}]))
    assert main(["report", str(exp), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["winner"]["trial_id"] == "trial_1" and data["status_counts"] == {"complete": 1, "pruned": 1}
