"""The ledger: events appended to one file per stream, merged oldest first; a line cut by a kill is skipped quietly,
any other damaged line with one warning naming the file, the line and the rule; an older experiment's trials.jsonl
is read as trial events; only regular files are read (a named pipe never hangs a reader) and a ledger/ that is no
directory of the experiment is refused. (tests/unit/search/test_ledger_schema.py: the schema, and ledgers
Hypothesis damages.)"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from simmim_ray.errors import UserError
from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search.record import ledger
from simmim_ray.search.record.ledger import Ledger


def test_events_go_to_their_stream_and_merge_oldest_first(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(ledger.SEARCH_STARTED, settings={"trials": 2}, inputs={}, resumed=False)
    led.append(ledger.TRIAL_STARTED, trial_id="trial_a", config={"model.depth": 1})
    led.append(ledger.TRIAL_STARTED, trial_id="trial_b", config={"model.depth": 2})
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": False})
    led.append(ledger.CONFIRMATION, trial_id="trial_a", seed=1, test_accuracy=0.9)
    # a trial's events share its file; other stages' events never share a file with the search's writer
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == [
        "confirmation.jsonl", "search_started.jsonl", "trial_a.jsonl", "trial_b.jsonl"]
    assert [e["event"] for e in led.events()] == [ledger.SEARCH_STARTED, ledger.TRIAL_STARTED, ledger.TRIAL_STARTED,
                                                  ledger.TRIAL_RESULT, ledger.CONFIRMATION]
    assert [e["event"] for e in led.events(trial_id="trial_a")] == [ledger.TRIAL_STARTED, ledger.TRIAL_RESULT,
                                                                    ledger.CONFIRMATION]
    assert [e["trial_id"] for e in led.events(ledger.TRIAL_STARTED)] == ["trial_a", "trial_b"]
    assert led.latest(ledger.CONFIRMATION, trial_id="trial_a")["seed"] == 1
    assert led.latest(ledger.TRIAL_ENDED) is None
    with pytest.raises(ValueError, match="needs a trial_id"):
        led.append(ledger.TRIAL_ENDED, status=ledger.COMPLETE)
    with pytest.raises(ValueError, match="event type must be a name"):
        led.append("bad type/../x")


def test_final_result_is_the_report_that_carries_done(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": False})
    assert led.final_result("trial_a") is None and led.final_result("trial_zz") is None
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 2, VAL_ACCURACY: 0.8, "done": True})
    assert led.final_result("trial_a") == {EPOCH: 2, VAL_ACCURACY: 0.8, "done": True}


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_event_kept(tmp_path):
    led = Ledger(str(tmp_path / "ledger"))
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1})
    path = tmp_path / "ledger" / "trial_a.jsonl"
    with open(path, "a") as f:  # the driver was killed mid-write: no newline at the end
        f.write('{"event": "trial_result", "time": 1, "trial_id": "trial_a", "result": {"ep')
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 2})  # the resumed driver's next event
    assert [e["result"][EPOCH] for e in led.events(ledger.TRIAL_RESULT)] == [1, 2]


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
    led.append(ledger.TRIAL_STARTED, trial_id="trial_a", config={})
    with open(tmp_path / "ledger" / "trial_a.jsonl", "a") as f:
        f.write(line + "\n")
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={})
    assert [e["event"] for e in led.events()] == [ledger.TRIAL_STARTED, ledger.TRIAL_RESULT]
    assert led.final_result("trial_a") is None  # one reader's warnings are told once, however often it reads
    assert warnings == [f"{tmp_path}/ledger/trial_a.jsonl line 2: {rule}; line skipped"]


def test_a_line_that_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    warnings = []
    led = Ledger(str(tmp_path / "ledger"), warn=warnings.append)
    led.append(ledger.TRIAL_STARTED, trial_id="trial_a", config={})
    with open(tmp_path / "ledger" / "trial_a.jsonl", "ab") as f:
        f.write(b"\xff\xfe{}\n")
    led.append(ledger.TRIAL_RESULT, trial_id="trial_a", result={EPOCH: 1, "done": True})
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
    assert [e["event"] for e in led.events()] == [ledger.TRIAL_STARTED, ledger.TRIAL_RESULT, ledger.TRIAL_ENDED]
    assert led.latest(ledger.TRIAL_ENDED)["checkpoint_path"] == "/c"
    assert led.final_result("trial_1")[VAL_ACCURACY] == 0.6  # a resumed old search never retrains it
    # the old search resumed by this version
    led.append(ledger.TRIAL_STARTED, trial_id="trial_3", config={"model.depth": 3})
    assert [e.get("trial_id") for e in led.events(ledger.TRIAL_STARTED)] == ["trial_1", "trial_3"]


def ledger_with(tmp_path, *lines: str) -> tuple[Ledger, list[str]]:
    """A ledger holding one valid trial, then `lines` appended to its file."""
    warnings = []
    led = Ledger(str(tmp_path / "ledger"), warn=warnings.append)
    led.append(ledger.TRIAL_STARTED, trial_id="trial_ab12", config={"model.depth": 2})
    with open(tmp_path / "ledger" / "trial_ab12.jsonl", "a") as f:
        f.write("".join(ln + "\n" for ln in lines))
    return led, warnings


def test_the_writer_writes_numbers_that_are_not_finite_as_null(tmp_path):
    """JSON has no NaN; the schema's numbers are finite: a trial's last grad norm of inf must not cost its end."""
    import numpy as np

    led = Ledger(str(tmp_path / "ledger"))
    led.append(ledger.TRIAL_ENDED, trial_id="trial_a", status=ledger.COMPLETE, metrics={
        VAL_ACCURACY: np.float32(0.5), "grad_norm": math.inf, "loss": math.nan, "images": np.int64(3)})
    assert b"NaN" not in (tmp_path / "ledger" / "trial_a.jsonl").read_bytes()
    (e,) = led.events()
    assert e["metrics"] == {VAL_ACCURACY: 0.5, "grad_norm": None, "loss": None, "images": 3}


def test_an_older_experiments_damaged_trials_jsonl_line_is_skipped(tmp_path):
    legacy = tmp_path / "trials.jsonl"
    legacy.write_text(json.dumps({"trial_id": "trial_1", "status": "complete", "result": [1]}) + "\n"
                      + json.dumps({"trial_id": "trial_2", "status": "complete", "result": {EPOCH: 1}}) + "\n")
    warnings = []
    led = Ledger(str(tmp_path / "ledger"), legacy=str(legacy), warn=warnings.append)
    assert [e["trial_id"] for e in led.events()] == ["trial_2", "trial_2"]
    assert warnings == [f"{legacy} line 1: `result` must be an object, but got [1]; line skipped"]


def test_files_that_are_not_regular_are_skipped_with_a_warning(tmp_path):
    led, warnings = ledger_with(tmp_path)
    (tmp_path / "ledger" / "x.jsonl").mkdir()  # was an OSError (IsADirectoryError)
    os.symlink("/dev/zero", tmp_path / "ledger" / "zero.jsonl")  # would never end
    (tmp_path / "ledger" / "notes.txt").write_text("not a stream")  # not named *.jsonl: not the ledger's
    assert [e["trial_id"] for e in led.events()] == ["trial_ab12"]
    assert warnings == [
        f"{tmp_path}/ledger/x.jsonl is a directory, but a ledger file must be a regular file; skipped",
        f"{tmp_path}/ledger/zero.jsonl is a symbolic link, but a ledger file must be a regular file; skipped"]


FIFO_SCRIPT = """
import os, sys
from simmim_ray.io import storage
from simmim_ray.search.record.ledger import Ledger
root = sys.argv[1]
os.mkfifo(os.path.join(root, "ledger", "x.jsonl"))
os.mkfifo(os.path.join(root, "ledger", "trial_p.jsonl"))
os.mkfifo(os.path.join(root, "trials.jsonl"))
seen = []
led = Ledger(os.path.join(root, "ledger"), legacy=os.path.join(root, "trials.jsonl"), warn=seen.append)
print(len(led.events()), led.final_result("trial_p"))
try:
    storage.read_bytes(os.path.join(root, "ledger", "x.jsonl"))  # a file swapped for a pipe after it was listed
except storage.NotRegularFile as e:
    print("refused:", e)
print(*seen, sep="\\n")
"""


def test_a_named_pipe_named_like_a_ledger_file_never_hangs_the_reader(tmp_path):
    """It used to block the report forever; a subprocess with a timeout: a hang fails the test, not the suite."""
    ledger_with(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    p = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "1 None"  # trial_ab12's start; the pipes give nothing
    assert lines[1] == f"refused: {tmp_path}/ledger/x.jsonl is a named pipe, not a regular file"
    assert sorted(lines[2:]) == sorted([
        f"{tmp_path}/ledger/trial_p.jsonl is a named pipe, but a ledger file must be a regular file; skipped",
        f"{tmp_path}/ledger/x.jsonl is a named pipe, but a ledger file must be a regular file; skipped",
        f"{tmp_path}/trials.jsonl cannot be read ({tmp_path}/trials.jsonl is a named pipe, not a regular file); "
        f"its events are skipped",
        f"{tmp_path}/ledger/trial_p.jsonl cannot be read ({tmp_path}/ledger/trial_p.jsonl is a named pipe, not a "
        f"regular file); its events are skipped"])


def test_a_ledger_that_is_a_file_or_a_dangling_link_is_refused_in_one_line(tmp_path):
    (tmp_path / "ledger").write_text("")
    with pytest.raises(UserError, match=r"ledger' is a regular file; the ledger must be a directory of the exp"):
        Ledger(str(tmp_path / "ledger")).events()
    os.remove(tmp_path / "ledger")
    os.symlink(tmp_path / "gone", tmp_path / "ledger")
    with pytest.raises(UserError, match=r"ledger' links to '.*gone', which does not exist"):
        Ledger(str(tmp_path / "ledger")).trial_events("trial_a")
