"""Ends a trial's Train run as soon as Tune lets go of the trial, so Tune can hand the trial's actor to the next one.

With `reuse_actors`, Tune gives a finished or stopped trial's actor to the next trial: it sets the Tune session's
stop event and waits up to TUNE_FUNCTION_THREAD_TIMEOUT_S (Ray: 2 s; the service sets 60, a ceiling, not a wait)
for the old trial function to return; if it has not, the *next* trial fails ("Could not re-use actor"). A trial
function sits in `TorchTrainer.fit()`, which returns only when training ends, and an ASHA-stopped trial is still
training. So on that signal we abort the trial's Train controller (it stops the worker group, frees its placement
group and exits) and `fit()`'s error is swallowed.

Train V2 keeps the controller's handle to itself; a controller callback publishes it in Ray's internal KV store
under a key only this trial knows, and the trial's watcher thread reads it when it has to.
"""
from __future__ import annotations

import threading
import time
import uuid

import ray
import ray.cloudpickle
from ray.experimental import internal_kv
from ray.train.v2._internal.execution.callback import ControllerCallback

KV_NAMESPACE = "simmim_ray"


class PublishController(ControllerCallback):
    """Runs in the Train controller: stores the controller's own actor handle under `key`."""

    def __init__(self, key: str) -> None:
        self.key = key

    def after_controller_start(self, train_run_context) -> None:
        handle = ray.get_runtime_context().current_actor
        internal_kv._internal_kv_put(self.key, ray.cloudpickle.dumps(handle), namespace=KV_NAMESPACE)


def tune_stop_event() -> threading.Event | None:
    """The current Tune trial session's stop event (set when Tune stops or reuses the trial); None outside Tune."""
    from ray.train._internal.session import get_session

    session = get_session()
    return getattr(session, "stop_event", None) if session is not None else None


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
        self._done = threading.Event()
        self._poll_s = poll_s

    def __enter__(self) -> "StopWithTune":
        if self.stop_event is not None:
            threading.Thread(target=self._watch, name="simmim-stop-with-tune", daemon=True).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        # not joined: the watcher notices `_done` within a poll by itself, and the actor hand-over should not wait
        # for that (`stopped` is set before the abort that makes fit() raise, so it is final here)
        self._done.set()
        try:
            internal_kv._internal_kv_del(self.key, namespace=KV_NAMESPACE)
        except Exception:  # noqa: BLE001 - Ray may be shutting down; the key is small
            pass
        # the run was aborted on purpose: fit()'s "controller died" error is the expected way out
        return self.stopped and exc_type is not None and issubclass(exc_type, Exception)

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.stop_event.wait(self._poll_s):
                break
        else:
            return
        if self._done.is_set():  # fit() returned first: nothing to stop
            return
        self.stopped = True
        # the controller publishes its handle when it starts; a stop can come before that
        while not self._done.is_set():
            raw = internal_kv._internal_kv_get(self.key, namespace=KV_NAMESPACE)
            if raw is not None:
                try:
                    ray.cloudpickle.loads(raw).abort.remote()
                except Exception:  # noqa: BLE001 - the controller already exited: fit() returns by itself
                    pass
                return
            time.sleep(self._poll_s)
