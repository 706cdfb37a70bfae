"""Lean trial path: ends a trial's Train run as soon as Tune lets go of the trial, so Tune can hand the trial's
actor to the next one.

With `reuse_actors`, Tune gives a finished or stopped trial's actor to the next trial: it sets the Tune session's
stop event and waits up to TUNE_FUNCTION_THREAD_TIMEOUT_S (Ray: 2 s; the service sets 60, a ceiling, not a wait)
for the old trial function to return; if it has not, the *next* trial fails ("Could not re-use actor"). A trial
function sits in `TorchTrainer.fit()`, which returns only when training ends, and an ASHA-stopped trial is still
training. So on that signal we abort the trial's Train controller (it stops the worker group, frees its placement
group and exits) and `fit()`'s error is swallowed.

Train V2 keeps the controller's handle to itself; a controller callback publishes it in Ray's KV store under a key
only this trial knows, and the trial's watcher thread reads it when it has to (simmim_ray/_compat/ray_train.py).
The public path has none of this: Tune does not reuse actors there, and ending the trial actor ends its run.
"""
from __future__ import annotations

import threading
import time
import uuid

from simmim_ray._compat import ray_core, ray_tune
from simmim_ray._compat.ray_train import PublishController, abort_controller


def tune_stop_event() -> threading.Event | None:
    """The current Tune trial session's stop event (set when Tune stops or reuses the trial); None outside Tune."""
    return ray_tune.stop_event()


class StopWithTune:
    """Context manager around `fit()`: when the Tune session's stop event is set, aborts the Train controller.

        stopper = StopWithTune()
        with stopper:
            make_trainer(..., callbacks=[..., stopper.callback]).fit()
    `stopper.stopped` tells whether it aborted; an error `fit()` raises after that is swallowed."""

    def __init__(self, stop_event: threading.Event | None = None, poll_s: float = 0.1) -> None:
        self.stop_event = stop_event if stop_event is not None else tune_stop_event()
        self.key = f"train_controller:{uuid.uuid4().hex}"
        self.callback = PublishController(self.key)
        self.stopped = False
        self.done = threading.Event()
        self.poll_s = poll_s

    def __enter__(self) -> "StopWithTune":
        if self.stop_event is not None:
            threading.Thread(target=self.watch, name="simmim-stop-with-tune", daemon=True).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # not joined: the watcher notices `done` within a poll by itself, and the actor hand-over should not wait
        # for that (`stopped` is set before the abort that makes fit() raise, so it is final here)
        self.done.set()
        try:
            ray_core.kv_del(self.key)
        except Exception:  # noqa: BLE001 - Ray may be shutting down; the key is small
            pass
        # the run was aborted on purpose: fit()'s "controller died" error is the expected way out
        return self.stopped and exc_type is not None and issubclass(exc_type, Exception)

    def watch(self) -> None:
        while not self.done.is_set():
            if self.stop_event.wait(self.poll_s):
                break
        else:
            return
        if self.done.is_set():  # fit() returned first: nothing to stop
            return
        self.stopped = True
        # the controller publishes its handle when it starts; a stop can come before that
        while not self.done.is_set():
            raw = ray_core.kv_get(self.key)
            if raw is not None:
                try:
                    abort_controller(raw)
                except Exception:  # noqa: BLE001 - the controller already exited: fit() returns by itself
                    pass
                return
            time.sleep(self.poll_s)
