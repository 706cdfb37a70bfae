"""The search's status line (search/status_line.py): what it says, redrawn in place on a TTY, plain and rare in a
log, and fed by the driver's Tune callback."""
from __future__ import annotations

import io

from simmim_ray.search.record.ledger import COMPLETE, ERROR, PRUNED
from simmim_ray.search.status_line import ERASE, Status, StatusLine, format_status


def status(**kw) -> Status:
    return Status(trials=20, size_metric="params", target=0.9, started=1000.0, **kw)


def test_status_says_running_done_budget_best_and_time():
    st = status(budget=(480.0, "epochs"))
    st.start("trial_a", 1000.0)
    st.start("trial_b", 1000.0)
    st.start("trial_c", 1000.0)
    st.end("trial_a", COMPLETE, 20, 50.0, 0.95, 138368.0)  # feasible
    st.end("trial_b", PRUNED, 4, 10.0, None, 90000.0)
    st.start("trial_d", 1060.0)
    st.epoch("trial_c", 12)
    st.epoch("trial_d", 4)
    assert format_status(st, 1120.0) == (
        "running 2 | done 2/20 (1 pruned, 1 feasible) | budget 40/480 epochs (8%) | best feasible params 138,368 "
        "(trial_a) | 2m00s elapsed, ETA 22m00s")  # 40 epochs in 120 s: 440 more take 1320 s


def test_an_infeasible_or_smaller_later_trial_and_failures():
    st = status()
    st.end("trial_a", COMPLETE, 20, 50.0, 0.95, 200000.0)
    st.end("trial_b", COMPLETE, 20, 50.0, 0.80, 1000.0)  # below target: never the best
    st.end("trial_c", COMPLETE, 20, 50.0, 0.91, 150000.0)
    st.end("trial_d", ERROR, 2, 5.0, None, None)
    line = format_status(st, 1100.0)
    assert "done 4/20 (0 pruned, 2 feasible, 1 failed)" in line
    assert "best feasible params 150,000 (trial_c)" in line and "budget" not in line
    assert line.endswith("1m40s elapsed, ETA 6m40s")  # 4 trials in 100 s, 16 left


def test_seconds_budget_counts_running_trials_wall_time_and_resumed_pace():
    st = status(budget=(900.0, "s"))
    st.end("trial_old", COMPLETE, 20, 300.0, 0.5, 1.0)  # an earlier driver's
    st.resumed()
    assert "no feasible trial yet" in format_status(st, 1000.0)
    st.start("trial_new", 1000.0)
    line = format_status(st, 1150.0)
    assert "budget 7m30s/15m00s (50%)" in line
    assert line.endswith("2m30s elapsed, ETA 7m30s")  # this driver spent 150 s in 150 s; 450 s left at that pace


def test_tty_redraws_one_line_and_keeps_trial_lines_above_it():
    out = io.StringIO()
    bar = StatusLine(status(), out=out, tty=True)
    bar.refresh(now=1001.0)
    bar.refresh(now=1001.5)  # within the redraw period: nothing
    bar.line("[1/20] trial_a complete ...")
    bar.close()
    text = out.getvalue()
    assert text.startswith(ERASE + "running 0 | done 0/20")
    assert text.count(ERASE + "running") == 2  # once before the trial line, once redrawn under it
    assert ERASE + "[1/20] trial_a complete ...\n" in text  # the status erased, the line printed in its place
    assert text.endswith(ERASE) and "\n" not in text.split("[1/20] trial_a complete ...\n")[1]


def test_plain_mode_writes_whole_lines_rarely_and_only_on_change():
    out = io.StringIO()
    st = status()
    bar = StatusLine(st, out=out, tty=False, period_s=60.0)
    bar._last_time = 1000.0
    bar.refresh(now=1030.0)  # too soon
    assert out.getvalue() == ""
    bar.refresh(now=1061.0)
    bar.refresh(now=1200.0)  # only the clock moved: no repeat
    st.end("trial_a", PRUNED, 2, 5.0, None, None)
    bar.refresh(now=1300.0)
    lines = out.getvalue().splitlines()
    assert lines == ["status: running 0 | done 0/20 (0 pruned, 0 feasible) | no feasible trial yet | 1m01s elapsed",
                     "status: running 0 | done 1/20 (1 pruned, 0 feasible) | no feasible trial yet | 5m00s elapsed, "
                     "ETA 1h35m"]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_the_recorder_feeds_it_from_tune_events_and_the_ledger(tmp_path, capsys):
    """A resumed search: the trial an earlier driver ended counts; a running trial's epochs count toward the
    budget; in a log (capsys: not a TTY) the status is a plain `status:` line."""
    from test_recorder import Trial, make_exp

    from simmim_ray.metrics import EPOCH, PARAMS, VAL_ACCURACY
    from simmim_ray.search.record import ledger
    from simmim_ray.search.record.recorder import Recorder

    exp = make_exp(tmp_path / "exp", budget_epochs=12)
    exp.ledger.append(ledger.TRIAL_ENDED, trial_id="trial_0", status=ledger.COMPLETE, checkpoint_path="", error="",
                      metrics={VAL_ACCURACY: 0.8, PARAMS: 5000}, epochs=2, wall_s=1.0)
    rec, t = Recorder(exp.uri), Trial("trial_1", {"model.embed_dim": 24})
    rec.on_trial_start(0, [], t)
    rec.on_trial_result(0, [], t, {EPOCH: 1})
    rec.bar.period, rec.bar._last_time = 0.0, 0.0
    rec.on_step_end(0, [])
    out = capsys.readouterr().out
    assert out.startswith("status: running 1 | done 1/3 (0 pruned, 1 feasible) | budget 3/12 epochs (25%) | best "
                          "feasible params 5,000 (trial_0) | "), out
    assert out.count("\n") == 1 and "\r" not in out
