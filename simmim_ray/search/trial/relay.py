"""Train -> Tune results on the lean trial path, without a queue actor per trial.

Ray's `TuneReportCallback` (the public path) hands each Train report to the Tune trial through a
`ray.util.queue.Queue`: an actor Ray starts for every trial (one more process, whose start-up on a small machine is
taken from the workers' own start; benchmarks/trial_overhead.py). Here the Train controller writes each report to
Ray's KV store under a key only this trial knows, numbered in order, and the Tune session reads them from there
exactly as it reads Ray's queue (`get(block, timeout)`, `Empty` when there is nothing yet). A report sent by a
trial's controller after the trial ended lands under that trial's key, which no later trial reads.
"""
from __future__ import annotations

import pickle
import time
import uuid

from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Empty

from simmim_ray._compat import ray_core, ray_tune

CHECKPOINT_PATH_KEY = "checkpoint_path"  # what Ray's TuneReportCallback adds for a reported checkpoint


class ReportToTune(UserCallback):
    """Runs in the Train controller: rank 0's metrics of every report go under `<key>:1`, `<key>:2`, ..."""

    def __init__(self, key: str) -> None:
        self.key, self.sent = key, 0

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        item = dict(metrics[0])
        if checkpoint:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.sent += 1
        ray_core.kv_put(f"{self.key}:{self.sent}", pickle.dumps(item))


class KVResults:
    """The Tune session's side: `get` behaves as `ray.util.queue.Queue.get`, reading the items in order.

    Every read is a request to Ray's GCS, which all trials share: while nothing arrives, the wait between reads
    grows from `min_poll_s` to `max_poll_s` (a report waits at most that long to be seen), and starts again small
    after each item."""

    def __init__(self, key: str, min_poll_s: float = 0.01, max_poll_s: float = 0.1) -> None:
        self.key, self.next = key, 1
        self.min_poll_s, self.max_poll_s = min_poll_s, max_poll_s
        self.wait_s = min_poll_s

    def get(self, block: bool = True, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            name = f"{self.key}:{self.next}"
            raw = ray_core.kv_get(name)
            if raw is not None:
                ray_core.kv_del(name)
                self.next += 1
                self.wait_s = self.min_poll_s
                return pickle.loads(raw)
            now = time.monotonic()
            if not block or (deadline is not None and now >= deadline):
                raise Empty
            time.sleep(self.wait_s if deadline is None else min(self.wait_s, deadline - now))
            self.wait_s = min(self.wait_s * 1.5, self.max_poll_s)

    def close(self) -> None:
        """Drops what no one will read (reports of a stopped trial)."""
        ray_core.kv_del(f"{self.key}:", prefix=True)


def tune_report_channel() -> tuple[ReportToTune, KVResults]:
    """For the current Tune trial: the Train callback to pass to the trainer, and the reader the Tune session now
    polls (in place of the queue actor `TuneReportCallback` would start). Call in the trial function."""
    key = f"tune_report:{uuid.uuid4().hex}"
    results = KVResults(key)
    ray_tune.read_reports_from(results)
    return ReportToTune(key), results
