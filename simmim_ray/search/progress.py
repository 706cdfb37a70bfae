"""Concise terminal progress (one line per finished trial) and the trials.jsonl status log."""
from __future__ import annotations

import json
import re
import time

from ray.tune import Callback

from simmim_ray.metrics import VAL_ACCURACY
from simmim_ray.search.results import METRICS, json_lines
from simmim_ray.search.searcher import is_final

# What a row of results.parquet needs, logged with each trial's final status. Tune writes a trial's own files
# (params.json, result.json) into its experiment only at its state saves, which a killed driver can miss;
# trials.jsonl is appended as each trial ends, so the table never loses a finished trial (results.load_trials).
EVENT_RESULT_KEYS = (*METRICS, "epoch", "checkpoint_path", "time_total_s")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class ProgressPrinter(Callback):
    def __init__(self, space, settings, exp: str) -> None:
        self.keys = space.keys()
        self.s = settings
        self.exp = exp
        self.started: dict[str, float] = {}
        self.finished: set[str] | None = None  # trial names in trials.jsonl, read when the first trial ends

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.time()

    def _record(self, trial, status: str, error: str = "") -> None:
        from simmim_ray.storage import append_line, join

        r = trial.last_result or {}
        event = {"trial_id": trial.trial_id and _name(trial), "status": status,
                 "epochs": r.get("epoch", 0), "wall_s": time.time() - self.started.get(trial.trial_id, time.time()),
                 "error": error, "config": trial.config,
                 "result": {k: r[k] for k in EVENT_RESULT_KEYS if k in r}}
        append_line(join(self.exp, "trials.jsonl"), json.dumps(event, default=str))
        if self.finished is None:  # a resumed search counts the trials its earlier drivers finished
            self.finished = {e["trial_id"] for e in json_lines(join(self.exp, "trials.jsonl"))}
        self.finished.add(event["trial_id"])
        params = " ".join(f"{k.split('.')[-1]}={_fmt(trial.config.get(k))}" for k in self.keys)
        if status == "complete":
            acc, size = r.get(VAL_ACCURACY, float("nan")), r.get(self.s.size_metric, float("nan"))
            mark = "feasible" if acc >= self.s.target_accuracy else "below target"
            tail = f"acc={acc:.3f} {self.s.size_metric}={size:,.0f} [{mark}]"
        elif status == "pruned":
            tail = f"stopped early at epoch {r.get('epoch', '?')} ({self.s.asha_metric}=" \
                   f"{_fmt(r.get(self.s.asha_metric, float('nan')))})"
        else:
            tail = f"ERROR: {error}"
        print(f"[{len(self.finished)}/{self.s.trials}] {_name(trial)} {status:8s} {params} | {tail}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._record(trial, "complete" if is_final(trial.last_result) else "pruned")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial, "error", error_reason(trial))


class StudyBackup(Callback):
    """Copies the driver's SQLite study into an object-store experiment each time a trial ends (Tune tells the
    searcher before its callbacks), so `--resume` on a fresh driver continues the study instead of losing it."""

    def __init__(self, settings, exp: str) -> None:
        self.s = settings
        self.exp = exp

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        from simmim_ray.search.study_store import upload_study

        try:
            upload_study(self.s, self.exp)
        except Exception as e:  # noqa: BLE001 - a failed copy must not end the search; the next trial retries
            print(f"simmim-ray: warning: could not copy the study to {self.exp}/study.db: {e}", flush=True)

    on_trial_error = on_trial_complete


def _name(trial) -> str:
    return str(trial)


def error_reason(trial) -> str:
    """The final exception of the trial's error file, one line (e.g. `NonFiniteLoss: non-finite loss ...`)."""
    try:
        with open(trial.error_file) as f:
            text = f.read()
    except (OSError, TypeError):
        return "unknown error (no error file)"
    return summarise_error(text)


def summarise_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    heads = [i for i, ln in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception|Loss)\b[^ ]*:", ln)]
    if not heads:
        return (lines[-1] if lines else "unknown error")[:300]
    i = heads[-1]
    msg = lines[i]
    if msg.endswith(":") and i + 1 < len(lines):
        msg += " " + lines[i + 1]
    return msg[:300]
