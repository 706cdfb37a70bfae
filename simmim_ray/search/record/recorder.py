"""The search driver's Tune callback: the one writer of the ledger's trial events, and the terminal's progress.

Each trial's start (with its config), each result as it arrives and its end (status, final metrics, checkpoint,
error line) are appended to the experiment's ledger (search/record/ledger.py) the moment Tune hands them to the driver:
Tune saves its own state only every few seconds, and a driver killed in between must lose nothing that finished.
For an object-store experiment whose study lives in the driver's cache, the study is copied into the experiment
before a trial's end is recorded (Tune tells the searcher before its callbacks), so a trial in the ledger is in
the study copy too.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, TIME_TOTAL_S

from simmim_ray.io import storage
from simmim_ray.metrics import EPOCH, VAL_ACCURACY
from simmim_ray.search.record import ledger
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.progress import error_reason, progress_line
from simmim_ray.search.record.study_store import study_in_cache
from simmim_ray.search.status_line import Status, StatusLine
from simmim_ray.search.study import is_final

# Tune's own bookkeeping in every result; the ledger keeps what the trial reported (and its running time)
TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) - {TIME_TOTAL_S} | {"trial_id", "experiment_tag", "experiment_id"}


def reported(result: dict | None) -> dict:
    return {k: v for k, v in (result or {}).items() if k not in TUNE_KEYS}


class Recorder(Callback):
    def __init__(self, exp_uri: str) -> None:
        self.uri = exp_uri
        self._exp: Experiment | None = None  # bound at the first trial event (see _bind)
        self.settings = None
        self.started: dict[str, float] = {}
        self.ended: set[str] = set()  # trials ended in the ledger: earlier drivers' (read at _bind), then ours
        self.bar: StatusLine | None = None  # the status line (search/status_line.py), made at the first event

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment (tuner.pkl) and restores them from there: only the
        # experiment's location travels, everything else is read again from the experiment
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])

    def _bind(self, trial) -> Experiment:
        """The experiment where it is now. A callback restored by Tuner.restore carries the location its search
        was started in; for a moved or copied experiment, Tune's restored trials know the new one."""
        if self._exp is None:
            where = getattr(getattr(trial, "storage", None), "experiment_fs_path", None)
            if where and where.rstrip("/") != storage.resolve_storage(self.uri)[1].rstrip("/"):
                self.uri = rebased(self.uri, where)
            self._exp = Experiment(self.uri)
            self.settings = self._exp.load_settings()
            ended = self._exp.ledger.events(ledger.TRIAL_ENDED)  # a resumed search counts its earlier drivers'
            self.ended = {e["trial_id"] for e in ended}
            self.bar = StatusLine(status_of(self.settings, ended))
        return self._exp

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.time()
        self._bind(trial).ledger.append(ledger.TRIAL_STARTED, trial_id=str(trial), config=trial.config)
        self._status(lambda st: st.start(str(trial), self.started[trial.trial_id]))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._bind(trial).ledger.append(ledger.TRIAL_RESULT, trial_id=str(trial), result=reported(result))
        if isinstance(result.get(EPOCH), int):
            self._status(lambda st: st.epoch(str(trial), result[EPOCH]))

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.bar is not None:  # the clock and the budget of running trials move between events
            self._status(lambda st: None)

    def _status(self, update) -> None:
        """The status line only shows what the ledger records: a fault in it must never end the search."""
        try:
            update(self.bar.status)
            self.bar.refresh()
        except Exception:  # noqa: BLE001 - a display
            pass

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, ledger.COMPLETE if is_final(trial.last_result) else ledger.PRUNED)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, ledger.ERROR, error_reason(getattr(trial, "error_file", None)))

    def _end(self, trial, status: str, error: str = "") -> None:
        exp = self._bind(trial)
        if study_in_cache(self.settings, exp):
            try:
                exp.upload_study()
            except Exception as e:  # noqa: BLE001 - a failed copy must not end the search; the next one retries
                print(f"simmim-ray: warning: could not copy the study to {exp.uri}/study.db: {e}", flush=True)
        r = reported(trial.last_result)
        name = str(trial)
        wall = time.time() - self.started[trial.trial_id] if trial.trial_id in self.started else 0.0
        exp.ledger.append(ledger.TRIAL_ENDED, trial_id=name, status=status, metrics=r,
                          checkpoint_path=r.get("checkpoint_path", ""), error=error, epochs=r.get(EPOCH, 0),
                          wall_s=wall)
        self.ended.add(name)
        self._status(lambda st: st.end(name, status, r.get(EPOCH, 0), wall, r.get(VAL_ACCURACY),
                                       r.get(self.settings.size_metric)))
        self.bar.line(progress_line(len(self.ended), self.settings, name, status, dict(trial.config), r, error))

    def on_experiment_end(self, trials, **info) -> None:
        """Ends what earlier drivers started and this search never continued (Tune had not saved them before
        their driver died): complete when their final result was recorded, else interrupted."""
        if self.bar is not None:
            self.bar.close()
        if not trials:  # nothing tells where the experiment is now: write nothing
            return
        exp = self._bind(trials[0])
        events = exp.ledger.events()
        known = {str(t) for t in trials}
        ended = {e["trial_id"] for e in events if e["event"] == ledger.TRIAL_ENDED}
        for name in dict.fromkeys(e["trial_id"] for e in events if e["event"] == ledger.TRIAL_STARTED):
            if name in ended or name in known:
                continue
            final = exp.ledger.final_result(name)
            if final is not None:
                exp.ledger.append(ledger.TRIAL_ENDED, trial_id=name, status=ledger.COMPLETE, metrics=final,
                                  checkpoint_path=final.get("checkpoint_path", ""), error="",
                                  epochs=final.get(EPOCH, 0), wall_s=0.0)
            else:
                exp.ledger.append(ledger.TRIAL_ENDED, trial_id=name, status=ledger.INTERRUPTED, metrics={},
                                  checkpoint_path="", epochs=0, wall_s=0.0,
                                  error="its driver was killed before it ended; the resumed search did not "
                                        "continue it")


def status_of(s, ended: list[dict]) -> Status:
    """The status line's state: the search's settings, and the trials earlier drivers of it ended (`ended`: their
    TRIAL_ENDED events in the ledger)."""
    budget = (float(s.budget_epochs), "epochs") if s.budget_epochs else (float(s.budget_seconds), "s") \
        if s.budget_seconds else None
    st = Status(trials=s.trials, size_metric=s.size_metric, target=s.target_accuracy, budget=budget)
    for e in ended:
        m = e.get("metrics") or {}
        st.end(e["trial_id"], e["status"], e.get("epochs", 0), e.get("wall_s", 0.0), m.get(VAL_ACCURACY),
               m.get(s.size_metric))
    st.resumed()
    return st


def rebased(uri: str, fs_path: str) -> str:
    """`uri` moved to `fs_path` (a path in the same filesystem), keeping a URI's scheme and query."""
    if storage.is_node_local(uri):
        return fs_path
    parts = urlsplit(uri)
    return f"{parts.scheme}://{fs_path.lstrip('/')}" + (f"?{parts.query}" if parts.query else "")
