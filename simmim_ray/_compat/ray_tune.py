"""The Tune trial session's private pieces: where it reads Train's reports from, and its stop event.

Ray's `TuneReportCallback` hands Train's reports to the Tune session through a `ray.util.queue.Queue` (an actor per
trial) stored as the session's `_inter_actor_queue`, which the session polls with `get(block, timeout)`. The lean
path puts its own reader there instead (simmim_ray/search/trial/relay.py). Tune sets the session's `stop_event`
when it stops the trial or hands its actor to the next trial (simmim_ray/search/trial/stop.py).
"""
from __future__ import annotations

import threading

from simmim_ray._compat.probe import missing as _missing

SESSION = "ray.train._internal.session"


def _session():
    from ray.train._internal.session import get_session  # private: this module must import on any Ray

    return get_session()


def read_reports_from(reader) -> None:
    """The current Tune trial's session reads Train's reports from `reader` (`get(block, timeout)` as
    `ray.util.queue.Queue`, raising `ray.util.queue.Empty`). Call in the trial function."""
    _session()._inter_actor_queue = reader


def stop_event() -> threading.Event | None:
    """The current Tune trial session's stop event; None outside Tune."""
    session = _session()
    return getattr(session, "stop_event", None) if session is not None else None


# probe.check arguments; each has a test in tests/unit/_compat/test_compat.py
CHECKS = ((SESSION, "get_session"),
          (SESSION, "_TrainSession", (), ("_inter_actor_queue", "stop_event")),
          (SESSION, "_TrainSession._get_or_create_inter_actor_queue"),
          (SESSION, "_TrainSession._get_result_from_queues", ("block",)))


def missing() -> list[str]:
    return _missing(*CHECKS)


def asha_bracket(min_t: int, max_t: int, reduction_factor: float):
    """Ray's ASHA bracket on its own, for replaying recorded trials offline
    (benchmarks/studies/proxy_correlation.py): -> (bracket with `on_result(trial, epoch, value) -> "STOP" |
    "CONTINUE"`, the epochs of its rungs). The same decision rule the search's scheduler applies; Ray keeps the class
    private."""
    from ray.tune.schedulers.async_hyperband import _Bracket  # private: this module must import on any Ray

    bracket = _Bracket(min_t=min_t, max_t=max_t, reduction_factor=reduction_factor, s=0)
    return bracket, {milestone for milestone, _ in bracket._rungs}
