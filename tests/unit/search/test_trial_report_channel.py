"""A search trial reports through the KV channel (the channel itself on a real Ray:
tests/scenarios/test_trial_report.py)."""
from __future__ import annotations

from types import SimpleNamespace


def test_the_search_trial_reports_through_the_kv_channel(monkeypatch, tmp_path):
    """On the lean path the trial function wires Train to Tune through this channel, not Ray's TuneReportCallback
    (which would start a queue actor per trial): its trainer gets a ReportToTune whose key the Tune session's
    reader polls."""
    import threading

    import ray.train._internal.session as train_session
    from ray.tune.integration.ray_train import TuneReportCallback

    from simmim_ray.config import Config
    from simmim_ray.train.launch import Resources
    from simmim_ray.search.trial import trial
    from simmim_ray.search.trial.relay import KVResults, ReportToTune
    from simmim_ray._compat.ray_train import PublishController

    session = SimpleNamespace(_inter_actor_queue=None, stop_event=threading.Event())
    monkeypatch.setattr(train_session, "get_session", lambda: session)
    monkeypatch.setattr(trial.tune, "get_context", lambda: SimpleNamespace(get_trial_name=lambda: "trial_x"))
    seen = {}

    def fake_make_trainer(cfg, res, **kw):
        seen.update(kw)
        return SimpleNamespace(fit=lambda: None)

    monkeypatch.setattr(trial, "make_trainer", fake_make_trainer)
    run_trial = trial.make_trial_fn(Config().to_dict(), Resources(workers=2), str(tmp_path / "exp"), 1, lean=True)
    run_trial({})
    report, stop = seen["callbacks"]
    assert isinstance(report, ReportToTune) and isinstance(stop, PublishController)
    assert not any(isinstance(cb, TuneReportCallback) for cb in seen["callbacks"])
    assert isinstance(session._inter_actor_queue, KVResults) and session._inter_actor_queue.key == report.key
