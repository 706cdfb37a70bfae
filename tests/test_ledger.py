"""The ledger: events appended to one file per stream, merged oldest first; a line cut by a kill is skipped quietly,
any other damaged line with one warning naming the file, the line and the rule; an older experiment's trials.jsonl
is read as trial events. (tests/test_ledger_schema.py: the schema, and ledgers Hypothesis damages.)"""
from __future__ import annotations

import json

import pytest

from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search import ledger as lg
from simmim_ray.search.ledger import Ledger


def test_events_go_to_their_stream_and_merge_oldest_first(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(lg.SEARCH_STARTED, settings={"trials": 2}, inputs={}, resumed=False)
    led.append(lg.TRIAL_STARTED, trial_id="trial_a", config={"model.depth": 1})
    led.append(lg.TRIAL_STARTED, trial_id="trial_b", config={"model.depth": 2})
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
    ("garbage that is not json", "a ledger line must be an event (a JSON object), but got 'garbage that is not json'"),
    ("[1, 2]", "must be an event (a JSON object), but got [1, 2]"),
    ('{"trial_id": "trial_a"}', "`event` is required, but missing"),
    ('{"event": "trial_result", "time": "x", "trial_id": "trial_a", "result": {}}',
     "`time` must be a number >= 0, but got 'x'"),
])
def test_a_damaged_line_is_skipped_with_one_warning_naming_file_line_and_rule(tmp_path, line, rule):
    """It used to refuse the whole ledger (so one hand-edited line hid every result); now that line's event is
    skipped, and the events around it are kept."""
    warnings = []
    led = Ledger(str(tmp_path / "ledger"), warn=warnings.append)
    led.append(lg.TRIAL_STARTED, trial_id="trial_a", config={})
    with open(tmp_path / "ledger" / "trial_a.jsonl", "a") as f:
        f.write(line + "\n")
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={})
    assert [e["event"] for e in led.events()] == [lg.TRIAL_STARTED, lg.TRIAL_RESULT]
    assert led.final_result("trial_a") is None  # one reader's warnings are told once, however often it reads
    assert warnings == [f"{tmp_path}/ledger/trial_a.jsonl line 2: {rule}; line skipped"]


def test_a_line_that_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    warnings = []
    led = Ledger(str(tmp_path / "ledger"), warn=warnings.append)
    led.append(lg.TRIAL_STARTED, trial_id="trial_a", config={})
    with open(tmp_path / "ledger" / "trial_a.jsonl", "ab") as f:
        f.write(b"\xff\xfe{}\n")
    led.append(lg.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": True})
    assert led.final_result("trial_a") == {EPOCH: 1, "done": True}
    assert warnings == [f"{tmp_path}/ledger/trial_a.jsonl line 2: a ledger line must be UTF-8 JSON, but byte 0 is "
                        f"not UTF-8; line skipped"]


def test_an_older_experiments_trials_jsonl_reads_as_trial_events(tmp_path):
    legacy = tmp_path / "trials.jsonl"
    legacy.write_text(json.dumps({"trial_id": "trial_1", "status": "complete", "wall_s": 8.0, "epochs": 2,
                                  "error": "", "config": {"model.depth": 1},
                                  "result": {EPOCH: 2, VAL_ACCURACY: 0.6, "done": True, "checkpoint_path": "/c"}})
                      + "\n" + '{"trial_id": "trial_2", "sta')  # cut by a kill
    led = Ledger(str(tmp_path / "ledger"), legacy=str(legacy))
    assert [e["event"] for e in led.events()] == [lg.TRIAL_STARTED, lg.TRIAL_RESULT, lg.TRIAL_ENDED]
    assert led.latest(lg.TRIAL_ENDED)["checkpoint_path"] == "/c"
    assert led.final_result("trial_1")[VAL_ACCURACY] == 0.6  # a resumed old search never retrains it
    led.append(lg.TRIAL_STARTED, trial_id="trial_3", config={"model.depth": 3})  # the old search resumed by this version
    assert [e.get("trial_id") for e in led.events(lg.TRIAL_STARTED)] == ["trial_1", "trial_3"]
