"""TensorBoard's HParams table for reviewing a search, written by the driver from the experiment record after the
search: every trial is in it (one a scheduler stopped too, with its last proxy), its columns are only what the
search varied (plus the trial's status), and its metrics are what the search decided on.

Files: <experiment>/tb/events.out.tfevents.hparams (the table's columns) and tb/<trial>/events.out.tfevents.hparams
(each trial's row) beside the curves its workers wrote; written again (replaced) each time a search ends.
"""
from __future__ import annotations

import glob
import os
import tempfile

from simmim_ray.io import storage
from simmim_ray.metrics import (FEASIBLE, FLOPS, PARAMS, PROXY_KNN, TEST_ACCURACY, TEST_ACCURACY_MEAN,
                                VAL_ACCURACY)
from simmim_ray.search.record.experiment import TB, Experiment

EVENTS_FILE = "events.out.tfevents.hparams"  # a fixed name, so a second write replaces the first
STATUS = "status"
# the table's metrics (TensorBoard reads them from scalars of these tags in each trial's run)
METRICS = (VAL_ACCURACY, TEST_ACCURACY, PARAMS, FLOPS, FEASIBLE, PROXY_KNN)


def tag(metric: str) -> str:
    return f"hparam/{metric}"


def trial_metrics(row: dict, history: list[dict], confirmed: dict[str, float]) -> dict[str, float]:
    """What the table shows for one trial: its validation accuracy (finished trials), its confirmed mean test
    accuracy (confirmed candidates), size, feasibility on validation, and its last proxy (also for a trial a
    scheduler stopped)."""
    out = {}
    if row.get(VAL_ACCURACY) is not None:
        out[VAL_ACCURACY] = float(row[VAL_ACCURACY])
    if row["trial_id"] in confirmed:
        out[TEST_ACCURACY] = float(confirmed[row["trial_id"]])
    for k in (PARAMS, FLOPS):
        if row.get(k) is not None:
            out[k] = float(row[k])
    out[FEASIBLE] = float(bool(row.get(FEASIBLE)))
    proxies = [h for h in history if h["trial_id"] == row["trial_id"] and h.get(PROXY_KNN) is not None]
    if proxies:
        out[PROXY_KNN] = float(max(proxies, key=lambda h: h.get("epoch", 0))[PROXY_KNN])
    return out


def hyperparameters(row: dict, keys: list[str]) -> dict:
    """The searched keys (dotted config keys) and the status; TensorBoard takes str, bool, int and float."""
    hp = {STATUS: row["status"]}
    for k in keys:
        v = row.get(k)
        hp[k] = v if isinstance(v, (str, bool, int, float)) else str(v)
    return hp


def write(exp: Experiment, s, rows: list[dict], history: list[dict], rep: dict) -> None:
    """Writes the table for every trial in `rows` (results rows with `feasible`), with the confirmed test
    accuracies of `rep` (search/answer/report.py)."""
    from torch.utils.tensorboard.summary import hparams

    if not rows:
        return
    keys = sorted({k for r in rows for k in r if "." in k})  # the searched keys: rows carry config as dotted keys
    confirmed = {c["trial_id"]: c[TEST_ACCURACY_MEAN] for c in rep["confirmation"]["candidates"]
                 if c[TEST_ACCURACY_MEAN] is not None}
    discrete = {STATUS: sorted({r["status"] for r in rows})}
    for k in keys:
        values = {r.get(k) for r in rows}
        if all(isinstance(v, str) for v in values):
            discrete[k] = sorted(values)
    with tempfile.TemporaryDirectory(prefix="simmim_hparams_") as tmp:
        # the columns: one experiment summary for the whole table, at the root of the TensorBoard directory
        exp_summary, _, _ = hparams(hyperparameters(rows[0], keys), {tag(m): 0.0 for m in METRICS}, discrete)
        _write(tmp, "root", [exp_summary], {}, exp.path(TB, EVENTS_FILE))
        for r in rows:
            _, start, end = hparams(hyperparameters(r, keys), {}, discrete)
            metrics = trial_metrics(r, history, confirmed)
            _write(tmp, r["trial_id"], [start, end], metrics, exp.path(TB, r["trial_id"], EVENTS_FILE))


def _write(tmp: str, name: str, summaries: list, scalars: dict[str, float], dest: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    local = os.path.join(tmp, name)
    with SummaryWriter(local) as w:
        for summ in summaries:
            w.file_writer.add_summary(summ)
        for k, v in scalars.items():
            w.add_scalar(tag(k), v, 0)
    (events,) = glob.glob(os.path.join(local, "events.out.tfevents.*"))
    with open(events, "rb") as f:
        storage.write_bytes(dest, f.read())
