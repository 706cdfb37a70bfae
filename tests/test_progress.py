"""The search driver's per-trial records: trials.jsonl events (what a results row needs) and the study copy."""
from __future__ import annotations

import json
from types import SimpleNamespace


def test_progress_event_carries_what_a_row_needs(tmp_path, capsys):
    from simmim_ray.search import results
    from simmim_ray.search.progress import ProgressPrinter

    class Trial:  # what ProgressPrinter reads of a Tune trial
        trial_id = "abc_1"
        config = {"model.embed_dim": 24}
        last_result = {"epoch": 2, "val_accuracy": 0.75, "params": 123, "flops": 9, "done": True,
                       "checkpoint_path": "/ck", "time_total_s": 3.0, "hostname": "h"}

        def __str__(self):
            return "trial_1"

    space = SimpleNamespace(keys=lambda: ["model.embed_dim"])
    settings = SimpleNamespace(target_accuracy=0.5, size_metric="params", trials=2, asha_metric="proxy_knn")
    trial = Trial()
    (tmp_path / "settings.json").write_text("{}")
    # an earlier driver of this (resumed) search finished trial_0; the progress count goes on from it
    (tmp_path / "trials.jsonl").write_text(json.dumps({"trial_id": "trial_0", "status": "pruned"}) + "\n")
    ProgressPrinter(space, settings, str(tmp_path)).on_trial_complete(0, [], trial)
    assert capsys.readouterr().out.startswith("[2/2] trial_1 complete embed_dim=24 | acc=0.750 params=123")
    ev = [json.loads(ln) for ln in (tmp_path / "trials.jsonl").read_text().splitlines()][-1]
    assert ev["config"] == {"model.embed_dim": 24} and "hostname" not in ev["result"]
    row = {r["trial_id"]: r for r in results.load_trials(str(tmp_path))[0]}["trial_1"]
    assert (row["trial_id"], row["status"], row["val_accuracy"], row["params"], row["checkpoint_path"]) == (
        "trial_1", "complete", 0.75, 123, "/ck")


def test_study_backup_copies_the_study_and_survives_a_failed_copy(tmp_path, monkeypatch, capsys):
    from simmim_ray.search import study_store
    from simmim_ray.search.progress import StudyBackup

    copies = []
    monkeypatch.setattr(study_store, "upload_study", lambda s, exp: copies.append(exp))
    backup = StudyBackup(None, "s3://b/exp")
    backup.on_trial_complete(0, [], None)
    backup.on_trial_error(0, [], None)
    assert copies == ["s3://b/exp", "s3://b/exp"]

    def fail(s, exp):
        raise OSError("connection reset")

    monkeypatch.setattr(study_store, "upload_study", fail)
    backup.on_trial_complete(0, [], None)  # the search goes on
    assert "could not copy the study to s3://b/exp/study.db: connection reset" in capsys.readouterr().out
