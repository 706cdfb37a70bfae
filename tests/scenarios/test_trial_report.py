"""Train -> Tune reports through Ray's KV store: in order, nothing lost, nothing crossing between trials."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest


def _report(cb, metrics: dict, checkpoint=None) -> None:
    # the controller passes every rank's metrics; Tune gets rank 0's
    cb.after_report(None, [metrics, {"rank": 1}], checkpoint)


def test_reports_arrive_in_order_once_with_the_checkpoint_path(ray_session):
    from ray.util.queue import Empty

    from simmim_ray.search.trial.relay import KVResults, ReportToTune

    cb, results = ReportToTune("t:order"), KVResults("t:order")
    with pytest.raises(Empty):
        results.get(block=False)
    for epoch in (1, 2, 3):
        _report(cb, {"epoch": epoch}, SimpleNamespace(path=f"/ckpt/{epoch}") if epoch == 2 else None)
    got = [results.get(block=False) for _ in range(3)]
    assert got == [{"epoch": 1}, {"epoch": 2, "checkpoint_path": "/ckpt/2"}, {"epoch": 3}]
    with pytest.raises(Empty):  # each item is read once
        results.get(block=False)


def test_blocking_get_waits_for_the_next_report_and_times_out(ray_session):
    import threading

    from ray.util.queue import Empty

    from simmim_ray.search.trial.relay import KVResults, ReportToTune

    cb, results = ReportToTune("t:block"), KVResults("t:block")
    t0 = time.monotonic()
    with pytest.raises(Empty):
        results.get(block=True, timeout=0.2)
    assert time.monotonic() - t0 >= 0.2
    threading.Timer(0.3, lambda: _report(cb, {"epoch": 1, "done": True})).start()
    assert results.get(block=True, timeout=10) == {"epoch": 1, "done": True}


def test_a_stopped_trials_late_report_never_reaches_the_next_trial(ray_session):
    from ray.util.queue import Empty

    from simmim_ray.search.trial.relay import KVResults, ReportToTune

    old_cb, old = ReportToTune("t:old"), KVResults("t:old")
    _report(old_cb, {"epoch": 1})
    old.close()  # the trial was stopped: its unread reports are dropped
    _report(old_cb, {"epoch": 2})  # its controller reports once more before the abort lands
    new_cb, new = ReportToTune("t:new"), KVResults("t:new")
    _report(new_cb, {"epoch": 1, "trial": "new"})
    assert new.get(block=False) == {"epoch": 1, "trial": "new"}
    with pytest.raises(Empty):
        new.get(block=False)


def test_an_idle_wait_reads_the_gcs_ever_less_often_but_sees_a_report_soon(ray_session, monkeypatch):
    import threading

    from ray.experimental import internal_kv
    from ray.util.queue import Empty

    from simmim_ray.search.trial.relay import KVResults, ReportToTune

    reads = []
    real_get = internal_kv._internal_kv_get
    monkeypatch.setattr(internal_kv, "_internal_kv_get", lambda *a, **k: reads.append(1) or real_get(*a, **k))
    cb, results = ReportToTune("t:poll"), KVResults("t:poll", min_poll_s=0.01, max_poll_s=0.1)
    with pytest.raises(Empty):
        results.get(block=True, timeout=1.0)
    assert len(reads) <= 20, len(reads)  # every 10 ms throughout would be ~100 requests per second per trial
    sent = {}
    threading.Timer(0.2, lambda: (sent.setdefault("t", time.monotonic()), _report(cb, {"epoch": 1}))).start()
    assert results.get(block=True, timeout=10) == {"epoch": 1}
    assert time.monotonic() - sent["t"] < 0.1 + 0.15  # seen within one longest wait (+ scheduling slack)
