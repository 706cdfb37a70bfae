"""Results of an experiment, derived from its ledger: works on finished, running and interrupted searches alike,
and needs no Ray (nothing of Tune's own files is read)."""
from __future__ import annotations

import io
import math

import pyarrow as pa
import pyarrow.parquet as pq

from simmim_ray.io import storage
from simmim_ray.metrics import (EPOCH, FLOPS, PARAMS, ROW_METRICS, SIZE_METRICS, VAL_ACCURACY, VAL_ACCURACY_HIGH,
                                VAL_ACCURACY_LOW, VAL_COUNT)
from simmim_ray.search.record import ledger
from simmim_ray.search.record.experiment import HISTORY, PARETO, RESULTS, Experiment
from simmim_ray.search.answer.stats import wilson_interval

METRICS = ROW_METRICS
# A trial restored after a driver kill may end twice; a completed answer outranks anything logged around a restart
_RANK = {ledger.COMPLETE: 3, ledger.ERROR: 2, ledger.PRUNED: 1, ledger.INTERRUPTED: 0}


def trial_rows(events: list[dict]) -> tuple[list[dict], list[dict]]:
    """Ledger events -> (one row per trial, one row per trial and reported epoch)."""
    trials: dict[str, dict] = {}
    for e in events:
        if e["event"] not in ledger.TRIAL_EVENTS:
            continue
        t = trials.setdefault(str(e.get("trial_id")), {"config": {}, "results": [], "ended": None})
        if e["event"] == ledger.TRIAL_STARTED:
            t["config"] = e.get("config") or t["config"]
        elif e["event"] == ledger.TRIAL_RESULT:
            t["results"].append(e.get("result") or {})
        elif t["ended"] is None or _RANK.get(e.get("status"), 0) >= _RANK.get(t["ended"].get("status"), 0):
            t["ended"] = e
    rows, history = [], []
    for name, t in trials.items():
        rows.append(_row(name, t["config"], t["results"], t["ended"] or {}))
        # one row per epoch, its latest report: a restarted worker group or a re-launched trial reports an epoch again
        by_epoch = {r.get(EPOCH, i): r for i, r in enumerate(t["results"])}
        history += [{"trial_id": name, **{k: v for k, v in r.items()
                                          if isinstance(v, (int, float)) and not isinstance(v, bool)}}
                    for r in by_epoch.values()]
    return rows, history


def _row(name: str, config: dict, results: list[dict], ended: dict) -> dict:
    """One results.parquet row from a trial's config, its reports (last = final) and its end."""
    last = ended.get("metrics") or (results[-1] if results else {})
    status = ended.get("status") or (ledger.COMPLETE if VAL_ACCURACY in last else ledger.RUNNING)
    checkpoint = ended.get("checkpoint_path") or next(
        (r["checkpoint_path"] for r in reversed(results) if r.get("checkpoint_path")), "")
    row = {m: (last.get(m) if status == ledger.COMPLETE or m in (PARAMS, FLOPS) else None) for m in METRICS}
    # how far the accuracy could be off by the luck of which images validation holds (search/answer/stats.py)
    low, high = wilson_interval(row[VAL_ACCURACY], row[VAL_COUNT] or 0) if row[VAL_ACCURACY] is not None else (
        None, None)
    return {"trial_id": name, "status": status, **config, **row, VAL_ACCURACY_LOW: low, VAL_ACCURACY_HIGH: high,
            "epochs": int(last.get(EPOCH, 0) or 0),
            "wall_s": float(ended.get("wall_s") or last.get("time_total_s") or 0.0),
            "error": ended.get("error", ""), "checkpoint_path": checkpoint}


def load_trials(exp: Experiment) -> tuple[list[dict], list[dict]]:
    return trial_rows(exp.ledger.events())


def measured(r: dict, size_metric: str) -> bool:
    """A completed trial with an accuracy and a size: what can be ranked (a hand-edited or older ledger may lack
    either)."""
    return r["status"] == ledger.COMPLETE and r.get(VAL_ACCURACY) is not None and r.get(size_metric) is not None


def mark_feasible(rows: list[dict], target: float) -> None:
    for r in rows:
        r["feasible"] = bool(all(measured(r, m) for m in SIZE_METRICS) and r[VAL_ACCURACY] >= target)


def winner(rows: list[dict], size_metric: str) -> dict | None:
    feas = [r for r in rows if r["feasible"]]
    return min(feas, key=lambda r: (r[size_metric], -r[VAL_ACCURACY])) if feas else None


def pareto_front(rows: list[dict], size_metric: str) -> list[dict]:
    """Completed trials no other completed trial beats on both size (lower) and accuracy (higher)."""
    done = sorted((r for r in rows if measured(r, size_metric)), key=lambda r: (r[size_metric], -r[VAL_ACCURACY]))
    front, best = [], -math.inf
    for r in done:
        if r[VAL_ACCURACY] > best:
            front.append(r)
            best = r[VAL_ACCURACY]
    return front


def write_tables(exp: Experiment, target: float, size_metric: str) -> tuple[list[dict], list[dict]]:
    """results.parquet and history.parquet from the ledger; -> (rows with `feasible` marked, history rows)."""
    rows, history = load_trials(exp)
    mark_feasible(rows, target)
    rows.sort(key=lambda r: r["trial_id"])
    for name, data in ((RESULTS, rows), (HISTORY, history)):
        buf = io.BytesIO()
        pq.write_table(_table(data) if data else pa.table({"trial_id": pa.array([], pa.string())}), buf)
        storage.write_bytes(exp.path(name), buf.getvalue())
    return rows, history


def _table(data: list[dict]):
    """A table of `data`; a column whose values differ in type (a config key that is a number in one trial and a
    string in another: a hand-edited ledger) is written as strings rather than failing the search's end."""
    try:
        return pa.Table.from_pylist(data)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        keys = {k for r in data for k in r}
        mixed = {k for k in keys if len({float if type(r[k]) is int else type(r[k])  # ints and floats mix
                                         for r in data if r.get(k) is not None}) > 1}
        return pa.Table.from_pylist([{k: str(v) if k in mixed and v is not None else v for k, v in r.items()}
                                     for r in data])


def plot_pareto(exp: Experiment, rows: list[dict], target: float, size_metric: str, best: dict | None) -> None:
    import matplotlib  # only to draw (`report` imports this module); its backend before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if measured(r, size_metric)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for feasible, color, label in ((True, "tab:green", "feasible"), (False, "tab:gray", "below target")):
        pts = [r for r in done if r["feasible"] == feasible]
        ax.scatter([r[size_metric] for r in pts], [r[VAL_ACCURACY] for r in pts], c=color, label=label, s=30)
    front = pareto_front(rows, size_metric)
    if front:
        ax.step([r[size_metric] for r in front], [r[VAL_ACCURACY] for r in front], where="post", c="tab:blue",
                lw=1, label="Pareto front")
    ax.axhline(target, ls="--", c="tab:red", lw=1, label=f"target {target:g}")
    if best is not None:
        ax.scatter([best[size_metric]], [best[VAL_ACCURACY]], marker="*", s=250, c="gold", edgecolors="k", zorder=5)
        ax.annotate(f"winner {best['trial_id']}", (best[size_metric], best[VAL_ACCURACY]),
                    textcoords="offset points", xytext=(8, -12))
    if any(r[size_metric] > 0 for r in done):  # log axis needs at least one positive size
        ax.set_xscale("log")
    ax.set_xlabel(f"encoder {size_metric}")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{len(done)} completed trials of {len(rows)}")
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(exp.path(PARETO), buf.getvalue())


def report_json(rows: list[dict], target: float, size_metric: str) -> dict:
    def clean(r: dict) -> dict:
        return {k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}

    best = winner(rows, size_metric)
    return {"target_accuracy": target, "size_metric": size_metric, "trials": len(rows),
            "status_counts": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
            "pareto_front": [clean(r) for r in pareto_front(rows, size_metric)],
            "winner": clean(best) if best else None}
