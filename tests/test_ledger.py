"""The ledger: events appended to one file per stream, merged oldest first; a line cut by a kill is skipped, any
other damage is one line naming the file; an older experiment's trials.jsonl is read as trial events."""
from __future__ import annotations

import json

import pytest

from simmim_ray.errors import UserError
from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search import ledger as lg
from simmim_ray.search.ledger import Ledger


def test_events_go_to_their_stream_and_merge_oldest_first(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(lg.SEARCH_STARTED, settings={"trials": 2}, inputs={}, resumed=False)
    led.append(lg.TRIAL_STARTED, trial_id="trial_a", config={"x": 1})
    led.append(lg.TRIAL_STARTED, trial_id="trial_b", config={"x": 2})
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": False})
    led.append(lg.CONFIRMATION, trial_id="trial_a", seed=1, test_accuracy=0.9)
    # a trial's events share its file; other stages' events never share a file with the search's writer
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == [
        "confirmation.jsonl", "search_started.jsonl", "trial_a.jsonl", "trial_b.jsonl"]
    assert [e["event"] for e in led.events()] == [lg.SEARCH_STARTED, lg.TRIAL_STARTED, lg.TRIAL_STARTED,
                                                  lg.TRIAL_RESULT, lg.CONFIRMATION]
    assert [e["event"] for e in led.events(trial_id="trial_a")] == [lg.TRIAL_STARTED, lg.TRIAL_RESULT,
                                                                    lg.CONFIRMATION]
    assert [e["trial_id"] for e in led.events(lg.TRIAL_STARTED)] == ["trial_a", "trial_b"]
    assert led.latest(lg.CONFIRMATION, trial_id="trial_a")["seed"] == 1
    assert led.latest(lg.TRIAL_ENDED) is None
    with pytest.raises(ValueError, match="needs a trial_id"):
        led.append(lg.TRIAL_ENDED, status=lg.COMPLETE)
    with pytest.raises(ValueError, match="event type must be a name"):
        led.append("bad type/../x")


def test_final_result_is_the_report_that_carries_done(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": False})
    assert led.final_result("trial_a") is None and led.final_result("trial_zz") is None
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 2, VAL_ACCURACY: 0.8, "done": True})
    assert led.final_result("trial_a") == {EPOCH: 2, VAL_ACCURACY: 0.8, "done": True}


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_event_kept(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1})
    path = tmp_path / "ledger" / "trial_a.jsonl"
    with open(path, "a") as f:  # the driver was killed mid-write: no newline at the end
        f.write('{"event": "trial_result", "time": 1, "trial_id": "trial_a", "result": {"ep')
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 2})  # the resumed driver's next event
    assert [e["result"][EPOCH] for e in led.events(lg.TRIAL_RESULT)] == [1, 2]


@pytest.mark.parametrize("line, rule", [
    ("garbage that is not json", "every line must be a ledger event"),
    ("[1, 2]", "JSON object with an `event` name"),
    ('{"trial_id": "trial_a"}', "JSON object with an `event` name"),
])
def test_a_damaged_ledger_is_refused_in_one_line_naming_the_file(tmp_path, line, rule):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(lg.TRIAL_STARTED, trial_id="trial_a", config={})
    with open(tmp_path / "ledger" / "trial_a.jsonl", "a") as f:
        f.write(line + "\n")
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={})
    with pytest.raises(UserError) as e:
        led.events()
    assert str(e.value).startswith(f"{tmp_path}/ledger/trial_a.jsonl line 2: ") and rule in str(e.value)
    assert "\n" not in str(e.value)
    (tmp_path / "ledger" / "trial_a.jsonl").write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(UserError, match="must be UTF-8"):
        led.final_result("trial_a")


def test_an_older_experiments_trials_jsonl_reads_as_trial_events(tmp_path):
    legacy = tmp_path / "trials.jsonl"
    legacy.write_text(json.dumps({"trial_id": "trial_1", "status": "complete", "wall_s": 8.0, "epochs": 2,
                                  "error": "", "config": {"x": 1},
                                  "result": {EPOCH: 2, VAL_ACCURACY: 0.6, "done": True, "checkpoint_path": "/c"}})
                      + "\n" + '{"trial_id": "trial_2", "sta')  # cut by a kill
    led = Ledger(str(tmp_path / "ledger"), legacy=str(legacy))
    assert [e["event"] for e in led.events()] == [lg.TRIAL_STARTED, lg.TRIAL_RESULT, lg.TRIAL_ENDED]
    assert led.latest(lg.TRIAL_ENDED)["checkpoint_path"] == "/c"
    assert led.final_result("trial_1")[VAL_ACCURACY] == 0.6  # a resumed old search never retrains it
    led.append(lg.TRIAL_STARTED, trial_id="trial_3", config={"x": 3})  # the old search resumed by this version
    assert [e.get("trial_id") for e in led.events(lg.TRIAL_STARTED)] == ["trial_1", "trial_3"]
