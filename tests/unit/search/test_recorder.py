"""The driver's Tune callback: the ledger's trial events, the study copy before a trial's end, progress lines,
and the experiment found where it is now after Tune restored the callback from a moved or copied experiment."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

from simmim_ray.metrics import EPOCH, PARAMS, PROXY_KNN, VAL_ACCURACY
from simmim_ray.search.record import ledger
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.settings import SearchSettings


class Trial:  # what the Recorder reads of a Tune trial
    def __init__(self, name: str, config: dict, exp_path: str | None = None) -> None:
        self.trial_id, self.name, self.config = name.removeprefix("trial_"), name, config
        self.last_result: dict = {}
        self.error_file = None
        if exp_path:
            self.storage = SimpleNamespace(experiment_fs_path=exp_path)

    def __str__(self) -> str:
        return self.name


def make_exp(path, **kw) -> Experiment:
    exp = Experiment(str(path))
    exp.save_settings(SearchSettings(space_path="s", name="n", root=str(path.parent), trials=3,
                                     target_accuracy=0.5, **kw))
    return exp


def test_trial_events_carry_what_a_row_needs(tmp_path, capsys):
    from simmim_ray.search.answer import tables
    from simmim_ray.search.record.recorder import Recorder

    exp = make_exp(tmp_path / "exp")
    # an earlier driver of this (resumed) search ended trial_0; the progress count goes on from it
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_0", status=ledger.PRUNED, metrics={}, checkpoint_path="",
                      error="", epochs=1, wall_s=1.0)
    rec, t = Recorder(exp.uri), Trial("trial_1", {"model.embed_dim": 24})
    rec.on_trial_start(0, [], t)
    first = {EPOCH: 1, PROXY_KNN: 0.3, "done": False, "hostname": "h", "pid": 7, "time_total_s": 1.0}
    rec.on_trial_result(0, [], t, first)
    t.last_result = {EPOCH: 2, VAL_ACCURACY: 0.75, PARAMS: 123, "done": True, "checkpoint_path": "/ck",
                     "time_total_s": 3.0, "hostname": "h", "config": {"x": 1}}
    rec.on_trial_result(0, [], t, t.last_result)
    rec.on_trial_complete(0, [], t)
    assert capsys.readouterr().out.startswith("[2/3] trial_1 complete embed_dim=24 | acc=0.750 params=123")
    events = exp.ledger.events(trial_id="trial_1")
    assert [e["event"] for e in events] == [ledger.TRIAL_STARTED, ledger.TRIAL_RESULT, ledger.TRIAL_RESULT,
                                            ledger.TRIAL_ENDED]
    assert events[0]["config"] == {"model.embed_dim": 24}
    assert events[1]["result"] == {EPOCH: 1, PROXY_KNN: 0.3, "done": False, "time_total_s": 1.0}  # Tune's noise off
    assert exp.ledger.final_result("trial_1")[VAL_ACCURACY] == 0.75
    row = {r["trial_id"]: r for r in tables.load_trials(exp)[0]}["trial_1"]
    assert (row["status"], row[VAL_ACCURACY], row[PARAMS], row["checkpoint_path"], row["epochs"]) == (
        "complete", 0.75, 123, "/ck", 2)


def test_pruned_and_errored_trials_end_with_their_status(tmp_path, capsys):
    from simmim_ray.search.record.recorder import Recorder

    exp = make_exp(tmp_path / "exp")
    rec = Recorder(exp.uri)
    pruned, errored = Trial("trial_p", {"model.depth": 1}), Trial("trial_e", {"model.depth": 2})
    pruned.last_result = {EPOCH: 1, PROXY_KNN: 0.1, "done": False}  # stopped by ASHA: no final accuracy
    (tmp_path / "error.txt").write_text("Traceback\nsimmim_ray.engine.NonFiniteLoss: non-finite loss\n")
    errored.error_file = str(tmp_path / "error.txt")
    rec.on_trial_complete(0, [], pruned)
    rec.on_trial_error(0, [], errored)
    ends = {e["trial_id"]: e for e in exp.ledger.events(ledger.TRIAL_ENDED)}
    assert ends["trial_p"]["status"] == ledger.PRUNED and ends["trial_e"]["status"] == ledger.ERROR
    assert ends["trial_e"]["error"] == "simmim_ray.engine.NonFiniteLoss: non-finite loss"
    assert "[2/3] trial_e error" in capsys.readouterr().out


def test_a_restored_recorder_writes_where_the_experiment_is_now(tmp_path):
    """Tune pickles its callbacks into the experiment and restores them from there: resuming a copy must write
    the copy's ledger, never the original's (Tune's restored trials know the new location)."""
    from simmim_ray.search.record.recorder import Recorder

    original = make_exp(tmp_path / "original")
    restored = pickle.loads(pickle.dumps(Recorder(original.uri)))
    copy = make_exp(tmp_path / "copy")
    t = Trial("trial_1", {"model.depth": 1}, exp_path=str(tmp_path / "copy"))
    restored.on_trial_start(0, [], t)
    assert [e["trial_id"] for e in copy.ledger.events(ledger.TRIAL_STARTED)] == ["trial_1"]
    assert original.ledger.events() == []


def test_trials_earlier_drivers_started_and_this_search_never_continued_are_ended(tmp_path):
    """Tune had not saved them when their driver died: one recorded its final result (complete), one did not
    (interrupted); a trial this search ran, or one already ended, is left alone."""
    from simmim_ray.search.record.recorder import Recorder

    exp = make_exp(tmp_path / "exp")
    for name in ("trial_done", "trial_cut", "trial_ran", "trial_old"):
        exp.ledger.append(ledger.TRIAL_STARTED, trial_id=name, config={})
    exp.ledger.append(ledger.TRIAL_RESULT, trial_id="trial_done", result={EPOCH: 2, VAL_ACCURACY: 0.7, "done": True})
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_old", status=ledger.PRUNED, metrics={}, checkpoint_path="",
                      error="", epochs=1, wall_s=1.0)
    Recorder(exp.uri).on_experiment_end(trials=[Trial("trial_ran", {})])
    ends = {e["trial_id"]: e for e in exp.ledger.events(ledger.TRIAL_ENDED)}
    assert (ends["trial_done"]["status"], ends["trial_done"]["metrics"][VAL_ACCURACY]) == (ledger.COMPLETE, 0.7)
    assert ends["trial_cut"]["status"] == ledger.INTERRUPTED and "driver was killed" in ends["trial_cut"]["error"]
    assert "trial_ran" not in ends and ends["trial_old"]["status"] == ledger.PRUNED
    Recorder(exp.uri).on_experiment_end(trials=[])  # nothing says where the experiment is now: no writes
    assert len(exp.ledger.events(ledger.TRIAL_ENDED)) == 3


def test_object_store_study_is_copied_before_the_end_is_recorded(tmp_path, monkeypatch, capsys):
    from simmim_ray.search.record import recorder
    from simmim_ray.search.record.recorder import Recorder, rebased

    exp = make_exp(tmp_path / "exp")
    rec = Recorder(exp.uri)
    seen = []
    monkeypatch.setattr(recorder, "study_in_cache", lambda s, e: True)
    monkeypatch.setattr(Experiment, "upload_study",
                        lambda self: seen.append(len(self.ledger.events(ledger.TRIAL_ENDED))))
    t = Trial("trial_1", {"model.depth": 1})
    t.last_result = {EPOCH: 1, "done": False}
    rec.on_trial_complete(0, [], t)
    assert seen == [0]  # the copy came before the trial's end was recorded

    def fail(self):
        raise OSError("connection reset")

    monkeypatch.setattr(Experiment, "upload_study", fail)
    rec.on_trial_error(0, [], Trial("trial_2", {"model.depth": 2}))  # the search goes on
    assert "could not copy the study to" in capsys.readouterr().out and len(exp.ledger.events(ledger.TRIAL_ENDED)) == 2
    assert rebased("s3://b/old/exp?endpoint_override=h:1&scheme=http", "b/new/exp") == \
        "s3://b/new/exp?endpoint_override=h:1&scheme=http"
    assert rebased("/old/exp", "/new/exp") == "/new/exp"
