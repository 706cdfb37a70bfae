"""TensorBoard's HParams table for reviewing a search, written by the driver from the experiment record after the
search: every trial is in it (one a scheduler stopped too, with what it reached), its columns are only what the
search varied (plus the trial's status and feasibility), and its metrics are what the search decided on.

What TensorBoard's HParams page does with it, and so what is written:
- its parallel-coordinates and scatter views drop a trial that lacks a value of any metric shown, and show only
  the first five metrics by default: those five are ones every trained trial reports each epoch (DEFAULT_METRICS,
  the last value a trial reached, a stopped one's too); `val_accuracy`, which only finished trials have, comes
  after them (tick it to see it);
- each metric is read from the trial's scalars of the same tag as its curves in Scalars (tblog.py), written at the
  trial's last epoch: the point is already on the curve, so Scalars gets no single-point "hparam" charts;
- the table's columns (the experiment summary) go into each trial's own run, not into the TensorBoard root, which
  Scalars would list as a run named `.`;
- it prints every number with 5 significant digits (`4.0000`): an integer-valued key is written as a string
  (`4`), its values listed in numeric order.

Files: tb/<trial>/events.out.tfevents.hparams beside the curves its workers wrote; written again (replaced) each
time a search ends.
"""
from __future__ import annotations

import glob
import os
import tempfile

from simmim_ray.io import storage
from simmim_ray.io.tblog import tag_of
from simmim_ray.metrics import EPOCH, FEASIBLE, FLOPS, LOSS, PARAMS, PROXY_KNN, VAL_ACCURACY
from simmim_ray.search.record.experiment import TB, Experiment

EVENTS_FILE = "events.out.tfevents.hparams"  # a fixed name, so a second write replaces the first
STATUS = "status"
# shown by default: reported by every trial at every epoch (a stopped trial has them as far as it got)
DEFAULT_METRICS = (PROXY_KNN, PARAMS, FLOPS, EPOCH, LOSS)
METRICS = (*DEFAULT_METRICS, VAL_ACCURACY)  # off by default: only finished trials have it
YES_NO = ("no", "yes")  # feasibility as a string: torch's writer stores a bool as the number 1.0000


def tag(metric: str) -> str:
    return tag_of(metric)


def trial_metrics(row: dict, history: list[dict]) -> tuple[dict[str, float], int]:
    """What the table shows for one trial and the step to write it at: the values of its last reported epoch
    (what a stopped trial reached), its validation accuracy when it finished."""
    mine = [h for h in history if h["trial_id"] == row["trial_id"]]
    last = max(mine, key=lambda h: h.get(EPOCH, 0), default={})
    out = {m: float(last[m]) for m in DEFAULT_METRICS if last.get(m) is not None}
    for k in (PARAMS, FLOPS):  # known for every trial that reported once (sizes do not change)
        if k not in out and row.get(k) is not None:
            out[k] = float(row[k])
    if row.get(VAL_ACCURACY) is not None:
        out[VAL_ACCURACY] = float(row[VAL_ACCURACY])
    return out, int(last.get(EPOCH, row.get("epochs", 0)) or 0)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def hyperparameters(row: dict, keys: list[str], int_keys: set[str]) -> dict:
    """The status, feasibility and searched keys (dotted config keys); TensorBoard takes str, int and float (torch
    writes a bool as a number), and shows numbers as 4.0000: integer keys go as strings."""
    hp = {STATUS: row["status"], FEASIBLE: YES_NO[bool(row.get(FEASIBLE))]}
    for k in keys:
        v = row.get(k)
        hp[k] = str(v) if k in int_keys or not isinstance(v, (str, bool, int, float)) else v
    return hp


def write(exp: Experiment, s, rows: list[dict], history: list[dict], rep: dict) -> None:
    """Writes the table for every trial in `rows` (results rows with `feasible`). (`s`, `rep`: the search's settings
    and report, unused: the confirmed test accuracy is reported, never a column, as only candidates have one.)"""
    from torch.utils.tensorboard.summary import hparams  # TensorBoard is slow to import: the driver imports this module

    if not rows:
        return
    keys = sorted({k for r in rows for k in r if "." in k})  # the searched keys: rows carry config as dotted keys
    int_keys = {k for k in keys if all(_is_int(r.get(k)) for r in rows)}
    discrete = {STATUS: sorted({r["status"] for r in rows}), FEASIBLE: list(YES_NO)}
    for k in keys:
        values = {r.get(k) for r in rows}
        if k in int_keys:
            discrete[k] = [str(v) for v in sorted(values)]
        elif all(isinstance(v, str) for v in values):
            discrete[k] = sorted(values)
    columns, _, _ = hparams(hyperparameters(rows[0], keys, int_keys), {tag(m): 0.0 for m in METRICS}, discrete)
    _remove_root_table(exp)
    with tempfile.TemporaryDirectory(prefix="simmim_hparams_") as tmp:
        for r in rows:
            _, start, end = hparams(hyperparameters(r, keys, int_keys), {}, discrete)
            metrics, step = trial_metrics(r, history)
            # the columns in every trial's run: TensorBoard takes them from any run, and a lone root run shows as `.`
            _write(tmp, r["trial_id"], [columns, start, end], metrics, step,
                   exp.path(TB, r["trial_id"], EVENTS_FILE))


def _remove_root_table(exp: Experiment) -> None:
    """An experiment written by an earlier version has the columns at the TensorBoard root (the run `.`)."""
    old = exp.path(TB, EVENTS_FILE)
    if storage.is_node_local(old) and os.path.isfile(old.removeprefix("file://")):
        os.remove(old.removeprefix("file://"))


def _write(tmp: str, name: str, summaries: list, scalars: dict[str, float], step: int, dest: str) -> None:
    from torch.utils.tensorboard import SummaryWriter  # slow to import: the driver imports this module

    local = os.path.join(tmp, name)
    with SummaryWriter(local) as w:
        for summ in summaries:
            w.file_writer.add_summary(summ)
        for k, v in scalars.items():
            w.add_scalar(tag(k), v, step)
    (events,) = glob.glob(os.path.join(local, "events.out.tfevents.*"))
    with open(events, "rb") as f:
        storage.write_bytes(dest, f.read())
