"""The ledger read with its schema (search/record/ledger_schema.py): whatever its files hold, reading never raises or hangs,
returns exactly the events that pass the schema, warns once per line it skips, and the results table and report
built from what it returns do not raise either. Hypothesis damages valid ledgers; each failure seen in the field
has a test of its own. No Ray."""
from __future__ import annotations

import copy
import json
import os
import re
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger import ledger_with

from simmim_ray.metrics import DONE, EPOCH, FLOPS, PARAMS, PROXY_KNN, TEST_ACCURACY, VAL_ACCURACY, VAL_COUNT
from simmim_ray.search.record import ledger
from simmim_ray.search.record import ledger_schema
from simmim_ray.search.answer import report, tables
from simmim_ray.search.answer.answer import labeled_fraction
from simmim_ray.search.answer.confirm import confirm_seeds
from simmim_ray.search.answer.stage import no_answer_message
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.record.ledger import Ledger
from simmim_ray.search.settings import SearchSettings

S = SearchSettings(space_path="/nowhere/s.yaml", name="exp", root="/nowhere", target_accuracy=0.5, confirm=2,
                   confirm_seeds=2)
SEEDS = confirm_seeds(S.confirm_seeds, S.seed)
STREAMS = ("trial_a.jsonl", "trial_b.jsonl", "confirmation.jsonl", "baseline.jsonl", "search_started.jsonl")

# ---- events as their writers write them ---------------------------------------------------------------------
TIME = st.floats(0, 2e9)
ACC = st.floats(0, 1)
SIZE = st.integers(0, 10 ** 6)
TRIAL = st.sampled_from(["trial_a", "trial_b", "trial_c"])
REPORT = st.fixed_dictionaries({EPOCH: st.integers(0, 5), PARAMS: SIZE, FLOPS: SIZE}, optional={
    VAL_ACCURACY: ACC, VAL_COUNT: st.integers(0, 500), PROXY_KNN: ACC, DONE: st.booleans(), "loss": st.floats(0, 9),
    "checkpoint_path": st.sampled_from(["", "/x/checkpoint_1"]), "node_ids": st.text(max_size=4)})
FINAL = st.fixed_dictionaries({EPOCH: st.integers(0, 5), PARAMS: SIZE, FLOPS: SIZE, VAL_ACCURACY: ACC, DONE: st.just(True)})
RUN = st.fixed_dictionaries({"seed": st.sampled_from(SEEDS), VAL_ACCURACY: ACC, TEST_ACCURACY: ACC}, optional={
    "test_count": st.integers(0, 99), "seconds": st.floats(0, 9), "cpu_seconds": st.floats(0, 9),
    "pretrain_epochs": st.integers(0, 3)})
# every seed measured (so candidates confirm, or not), or some
RUNS = st.lists(st.tuples(ACC, ACC), min_size=len(SEEDS), max_size=len(SEEDS)).map(
    lambda accs: [{"seed": seed, VAL_ACCURACY: v, TEST_ACCURACY: t} for seed, (v, t) in zip(SEEDS, accs)]
) | st.lists(RUN, max_size=2)
JOB = {"trial_id": TRIAL, "job": st.just("confirm_x"), "seeds": st.just(list(SEEDS)), "runs": RUNS,
       "params": SIZE, "flops": SIZE, "error": st.sampled_from(["", "boom"]), "started": TIME, "wall_s": st.floats(0, 9),
       "gpu_seconds": st.just(0.0)}


def event(kind: str, **fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({"event": st.just(kind), "time": TIME, **fields})


VALID = st.one_of(
    event(ledger.SEARCH_STARTED, settings=st.just(S.to_dict()), inputs=st.just({"s.yaml": "ab12"}),
          resumed=st.booleans()),
    event(ledger.TRIAL_STARTED, trial_id=TRIAL, config=st.fixed_dictionaries({"model.depth": st.integers(1, 4),
                                                                          "loss.type": st.just("l1")})),
    event(ledger.TRIAL_RESULT, trial_id=TRIAL, result=REPORT),
    event(ledger.TRIAL_ENDED, trial_id=TRIAL, status=st.sampled_from((ledger.COMPLETE, *ledger.STATUSES)), metrics=FINAL,
          checkpoint_path=st.just(""), error=st.just(""), epochs=st.integers(0, 5), wall_s=st.floats(0, 99)),
    event(ledger.CONFIRMATION, mode=st.sampled_from(["finetune", "pretrain"]), **JOB),
    event(ledger.BASELINE, name=st.just("scratch"), mode=st.just("scratch"), **JOB),
    event(ledger.BASELINE, name=st.just("pixel_logreg"), test_accuracy=st.none() | ACC, test_count=st.integers(0, 99),
          labeled_images=st.integers(0, 99), labeled_fraction=st.floats(0.01, 1)),
)
# what a hand edit, a bug or a damaged disk could leave instead: any JSON, with the values that broke readers
GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300, max_value=10 ** 400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) | st.sampled_from(["x", "0.9", "trial_a"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
RAW = st.sampled_from([b"not json", b"[1, 2]", b"\xff\xfe{}", b'{"event": "x", "time": ' + b"9" * 5000 + b"}",
                       b"[" * 100_000 + b"]" * 100_000, b'{"event": "trial_result", "time": 1, "trial_id": "t'])


def paths(value, prefix=()) -> list[tuple]:
    """Every place inside a JSON value: the keys and indices leading to it."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, prefix + (i,))
    return out


@st.composite
def damaged(draw, events: st.SearchStrategy) -> bytes:
    """One line of a ledger file: an event of `events`, as it is or damaged at one place (a field dropped or given
    any value), or raw bytes that are no event at all."""
    how = draw(st.sampled_from(["valid", "valid", "valid", "replace", "drop", "raw"]))
    if how == "raw":
        return draw(RAW)
    e = copy.deepcopy(draw(events))  # st.just hands out one object: damage a copy
    if how != "valid":
        where = draw(st.sampled_from(paths(e)))
        if not where:
            e = draw(GARBAGE)
        else:
            parent = e
            for k in where[:-1]:
                parent = parent[k]
            if how == "drop" and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = draw(GARBAGE)
    return json.dumps(e, allow_nan=True).encode()


@st.composite
def story(draw) -> dict[str, list[dict]]:
    """A search that got somewhere: a feasible trial, its confirmation and baselines (random events rarely line up
    into a confirmed or refuted answer)."""
    val, tests, scratch = draw(st.floats(0.5, 1)), draw(RUNS), draw(RUNS)
    job = {"trial_id": "trial_a", "seeds": list(SEEDS), "error": "", "started": 1.0, "wall_s": 1.0}
    return {
        "trial_a.jsonl": [
            {"event": ledger.TRIAL_STARTED, "time": 1, "trial_id": "trial_a", "config": {"model.depth": 2}},
            {"event": ledger.TRIAL_ENDED, "time": 2, "trial_id": "trial_a", "status": ledger.COMPLETE,
             "metrics": {VAL_ACCURACY: val, PARAMS: 10, FLOPS: 20, DONE: True}}],
        "confirmation.jsonl": [{"event": ledger.CONFIRMATION, "time": 3, "mode": "finetune", "runs": tests, **job}],
        "baseline.jsonl": [
            {"event": ledger.BASELINE, "time": 4, "name": "scratch", "mode": "scratch", "runs": scratch, **job},
            {"event": ledger.BASELINE, "time": 5, "name": "pixel_logreg", "test_accuracy": 0.5, "test_count": 9,
             "labeled_images": 9, "labeled_fraction": 0.1}]}


@st.composite
def ledger_files(draw) -> dict[str, list[bytes]]:
    files: dict[str, list[bytes]] = {name: [] for name in STREAMS}
    if draw(st.booleans()):
        for name, events in draw(story()).items():
            files[name] += [draw(damaged(st.just(e))) for e in events]
    for name in STREAMS:
        files[name] += draw(st.lists(damaged(VALID), max_size=4))
    return files


def passes(raw: bytes) -> bool:
    """Independent of the reader: the line parses as JSON and the schema accepts it."""
    try:
        return ledger_schema.problem(json.loads(raw.decode("utf-8"))) is None
    except (ValueError, RecursionError):
        return False


@given(st.lists(VALID, max_size=5))
@settings(max_examples=60, deadline=None)
def test_the_schema_accepts_every_event_its_writers_write(events):
    for e in events:
        assert ledger_schema.problem(e) is None, e


@given(files=ledger_files())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_a_damaged_ledger_reads_as_its_valid_events_and_reports_without_raising(files):
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "ledger"))
        kept, skipped = [], set()
        for name, lines in files.items():
            with open(os.path.join(root, "ledger", name), "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
            kept += [json.loads(raw) for raw in lines if passes(raw)]
            skipped |= {(name, n) for n, raw in enumerate(lines, 1) if not passes(raw)}
        warnings = []
        exp = Experiment(root)
        exp.ledger = Ledger(exp.path("ledger"), warn=warnings.append)
        events = exp.ledger.events()
        assert all(ledger_schema.problem(e) is None for e in events)
        assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, kept))  # every valid event, no other
        told = {(m[1], int(m[2])) for w in warnings
                if (m := re.match(rf"{re.escape(root)}/ledger/(\S+) line (\d+): .*; line skipped$", w))}
        assert len(told) == len(warnings) and told <= skipped  # one warning per skipped line, naming it
        rows, _ = tables.trial_rows(events)
        tables.mark_feasible(rows, S.target_accuracy)
        rep = report.build(S, rows, events, labeled_fraction(exp, S))
        assert report.format_text(rep, S) and json.dumps(rep, default=str)
        assert no_answer_message(S, exp, rows, rep)  # what a search that found no answer ends with
        tables.write_tables(exp, S.target_accuracy, S.size_metric)


# ---- the failures seen in the field, one by one ----------------------------------------------------------------
@pytest.mark.parametrize("line, rule", [
    ('{"event": "trial_result", "time": "x", "trial_id": "trial_ab12", "result": {}}',
     "`time` must be a number >= 0, but got 'x'"),  # was a TypeError when the streams were merged
    ('{"event": "trial_result", "time": 1, "trial_id": "trial_ab12", "result": [1, 2]}',
     "`result` must be an object, but got [1, 2]"),  # was an AttributeError
    ('{"event": "trial_ended", "time": 1, "trial_id": "trial_ab12", "status": "complete", '
     '"metrics": {"val_accuracy": "0.9"}}',
     "`metrics.val_accuracy` must be a number in [0, 1] or null, but got '0.9'"),  # a metric that is a string
    ('{"event": "trial_result", "time": 1, "trial_id": "trial_ab12", "result": {"loss": NaN}}',
     "`result.loss` must be a finite number or null, but got nan"),
    ('{"event": "trial_result", "time": 1e999, "trial_id": "trial_ab12", "result": {}}',
     "`time` must be a number >= 0, but got inf"),
    ('{"event": "trial_result", "time": 1, "trial_id": "../../etc", "result": {}}',
     "`trial_id` must be a trial name (1-128 letters, digits, _ . -, not starting with .), but got '../../etc'"),
    ('{"event": "trial_result", "time": ' + "9" * 5000 + ', "trial_id": "trial_ab12", "result": {}}',
     "a ledger line must be an event (a JSON object), but it is not JSON Python reads (Exceeds the limit "
     "(4300 digits) for integer string conversion)"),
    ('{"event": "x", "time": 1, "deep": ' + "[" * 40 + "]" * 40 + "}",
     "`deep` must be nested at most 32 deep"),
])
def test_a_malformed_event_is_skipped_with_one_warning_naming_file_line_and_rule(tmp_path, line, rule):
    led, warnings = ledger_with(tmp_path, line)
    assert [e["event"] for e in led.events()] == [ledger.TRIAL_STARTED]
    assert warnings == [f"{tmp_path}/ledger/trial_ab12.jsonl line 2: {rule}; line skipped"]


def test_a_confirmation_without_trial_id_is_skipped_and_the_report_built(tmp_path):
    """Was a KeyError in confirm.merge."""
    warnings = []
    exp = Experiment(str(tmp_path / "exp"))
    exp.ledger = Ledger(exp.path("ledger"), warn=warnings.append)
    exp.ledger.append(ledger.CONFIRMATION, mode="finetune", seeds=list(SEEDS), runs=[], error="")
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_a", status=ledger.COMPLETE, metrics={
        VAL_ACCURACY: 0.9, PARAMS: 10, FLOPS: 10})
    rows, _ = tables.trial_rows(exp.ledger.events())
    tables.mark_feasible(rows, S.target_accuracy)
    rep = report.build(S, rows, exp.ledger.events(), None)
    assert rep["answer"] == report.PENDING and rep["confirmation"]["compute"]["jobs"] == 0
    assert warnings == [f"{exp.path('ledger')}/confirmation.jsonl line 1: `trial_id` is required, but missing; "
                        f"line skipped"]


def test_a_complete_trial_without_its_size_is_listed_but_never_ranked(tmp_path):
    exp = Experiment(str(tmp_path / "exp"))
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_a", status=ledger.COMPLETE, metrics={VAL_ACCURACY: 0.9, PARAMS: 9})
    rows, _ = tables.trial_rows(exp.ledger.events())
    tables.mark_feasible(rows, S.target_accuracy)
    # a winner is reported with both sizes: one without its flops is never feasible
    assert rows[0]["feasible"] is False and tables.pareto_front(rows, FLOPS) == []
    assert [r["trial_id"] for r in tables.pareto_front(rows, PARAMS)] == ["trial_a"]
    assert "Answer: none" in report.format_text(report.build(S, rows, exp.ledger.events(), None), S)
