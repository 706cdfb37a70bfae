"""Results from an experiment directory: works on finished, running and interrupted searches alike.

Reads what Tune and our driver write (<trial>/params.json, <trial>/result.json, trials.jsonl), so nothing here
needs a live Ray cluster.
"""
from __future__ import annotations

import io
import json
import math

from simmim_ray import storage as sio
from simmim_ray.metrics import EPOCH, FLOPS, PARAMS, ROW_METRICS, VAL_ACCURACY

METRICS = ROW_METRICS


def json_lines(uri: str) -> list[dict]:
    if not sio.exists(uri):
        return []
    out = []
    for line in sio.read_bytes(uri).decode().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                pass
    return out


def load_trials(exp: str) -> tuple[list[dict], list[dict]]:
    """-> (one row per trial, one row per reported epoch)."""
    # a restored search may log a trial twice; a completed answer outranks anything logged around a restart
    rank = {"complete": 3, "error": 2, "pruned": 1}
    events: dict[str, dict] = {}
    for e in json_lines(sio.join(exp, "trials.jsonl")):
        old = events.get(e["trial_id"])
        if old is None or rank.get(e["status"], 0) >= rank.get(old["status"], 0):
            events[e["trial_id"]] = e
    rows, history = [], []
    for name in sio.listdir(exp):
        if not name.startswith("trial_") or not sio.exists(sio.join(exp, name, "params.json")):
            continue
        params = json.loads(sio.read_bytes(sio.join(exp, name, "params.json")))
        results = json_lines(sio.join(exp, name, "result.json"))
        ev = events.get(name, {})
        if ev.get("result") and VAL_ACCURACY in ev["result"] and not (results and VAL_ACCURACY in results[-1]):
            results.append(ev["result"])  # Tune's copy was saved before the final report
        rows.append(_row(exp, name, params, results, ev, history))
    # A trial that ended after Tune's last state save before a driver kill has no files of Tune's here (the
    # restored search never knew it); its final event in trials.jsonl carries its config and last result
    listed = {r["trial_id"] for r in rows}
    for name, ev in events.items():
        if name not in listed and "config" in ev:
            rows.append(_row(exp, name, ev["config"], [ev["result"]] if ev.get("result") else [], ev, history))
    return rows, history


def _row(exp: str, name: str, params: dict, results: list[dict], ev: dict, history: list[dict]) -> dict:
    """One results.parquet row from a trial's config, its reports (last = final) and its trials.jsonl event;
    appends its per-epoch rows to `history`."""
    # The worker's own per-epoch log survives worker restarts and search restores (Tune restarts a restored
    # trial's result.json); one row per epoch, the latest report of each.
    epochs = json_lines(sio.join(exp, "train_runs", name, "history.jsonl")) or results
    by_epoch = {r.get("epoch", i): r for i, r in enumerate(epochs)}
    for r in by_epoch.values():
        history.append({"trial_id": name, **{k: v for k, v in r.items()
                                             if isinstance(v, (int, float)) and not isinstance(v, bool)}})
    last = results[-1] if results else {}
    status = ev.get("status") or ("complete" if VAL_ACCURACY in last else "running")
    error = ev.get("error", "")
    if status == "error" and not error and sio.exists(sio.join(exp, name, "error.txt")):
        error = sio.read_bytes(sio.join(exp, name, "error.txt")).decode().strip().splitlines()[-1][:300]
    return {"trial_id": name, "status": status, **params,
            **{m: (last.get(m) if status == "complete" or m in (PARAMS, FLOPS) else None) for m in METRICS},
            "epochs": int(last.get(EPOCH, 0) or 0),
            "wall_s": float(ev.get("wall_s") or last.get("time_total_s") or 0.0),
            "error": error, "checkpoint_path": last.get("checkpoint_path", "")}


def mark_feasible(rows: list[dict], target: float) -> None:
    for r in rows:
        acc = r.get(VAL_ACCURACY)
        r["feasible"] = bool(r["status"] == "complete" and acc is not None and acc >= target)


def winner(rows: list[dict], size_metric: str) -> dict | None:
    feas = [r for r in rows if r["feasible"]]
    return min(feas, key=lambda r: (r[size_metric], -r[VAL_ACCURACY])) if feas else None


def pareto_front(rows: list[dict], size_metric: str) -> list[dict]:
    """Completed trials no other completed trial beats on both size (lower) and accuracy (higher)."""
    done = sorted((r for r in rows if r["status"] == "complete" and r.get(VAL_ACCURACY) is not None),
                  key=lambda r: (r[size_metric], -r[VAL_ACCURACY]))
    front, best = [], -math.inf
    for r in done:
        if r[VAL_ACCURACY] > best:
            front.append(r)
            best = r[VAL_ACCURACY]
    return front


def write_outputs(exp: str, target: float, size_metric: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, history = load_trials(exp)
    mark_feasible(rows, target)
    rows.sort(key=lambda r: r["trial_id"])
    for name, data in (("results", rows), ("history", history)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(data) if data else pa.table({"trial_id": pa.array([], pa.string())}),
                       buf)
        sio.write_bytes(sio.join(exp, f"{name}.parquet"), buf.getvalue())
    best = winner(rows, size_metric)
    plot_pareto(exp, rows, target, size_metric, best)
    if best is not None:
        from simmim_ray.export import export_best

        try:
            export_best(exp, best)
        except (OSError, KeyError) as e:  # the tables above are written already; say what is missing
            print(f"simmim-ray: warning: could not export {best['trial_id']} to {exp}/best: {e}")
    return rows


def plot_pareto(exp: str, rows: list[dict], target: float, size_metric: str, best: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "complete" and r.get(VAL_ACCURACY) is not None]
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
    sio.write_bytes(sio.join(exp, "pareto.png"), buf.getvalue())


def format_report(rows: list[dict], target: float, size_metric: str) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [f"{len(rows)} trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
             f"Pareto front (accuracy vs {size_metric}; target {target:g}):",
             f"  {'trial':12s} {'val acc':>8s} {size_metric:>12s} {'feasible':>8s}"]
    for r in pareto_front(rows, size_metric):
        lines.append(f"  {r['trial_id']:12s} {r[VAL_ACCURACY]:8.4f} {r[size_metric]:12,.0f} "
                     f"{'yes' if r['feasible'] else 'no':>8s}")
    best = winner(rows, size_metric)
    if best is None:
        done = [r for r in rows if r.get(VAL_ACCURACY) is not None and r["status"] == "complete"]
        top = max(done, key=lambda r: r[VAL_ACCURACY], default=None)
        lines.append("No trial reached the target." + (
            f" Best accuracy {top[VAL_ACCURACY]:.4f} by {top['trial_id']} ({size_metric} {top[size_metric]:,.0f})."
            if top else ""))
    else:
        lines.append(f"Winner: {best['trial_id']} accuracy {best[VAL_ACCURACY]:.4f}, {size_metric} "
                     f"{best[size_metric]:,.0f} -> best/")
    return "\n".join(lines)


def report_json(rows: list[dict], target: float, size_metric: str) -> dict:
    def clean(r: dict) -> dict:
        return {k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}

    best = winner(rows, size_metric)
    return {"target_accuracy": target, "size_metric": size_metric, "trials": len(rows),
            "status_counts": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
            "pareto_front": [clean(r) for r in pareto_front(rows, size_metric)],
            "winner": clean(best) if best else None}
