"""The answer of an experiment, derived from its ledger alone (no Ray): what `simmim-ray report [--json]` prints,
what the search prints when it ends, and which trial best/ holds.

The `--json` contract (users script against it; every key is always present, null where not measured):
  labeled_fraction                      eval.labeled_fraction of the search
  answer                                confirmed | unconfirmed (--confirm 0) | none confirmed | pending | no trial
  selected_on                           "validation": what the winner (and best_confirmed) was chosen on
  selection_rule                        one line: the rule it was chosen by (test is never part of it)
  winner                                null, or {trial_id, params, flops, confirmed (bool),
                                        confirm_val_accuracy_mean, _std, _ci95 ([low, high]), _per_seed (validation
                                        over the fresh seeds: what it was chosen on), test_accuracy_mean, _std, _ci95,
                                        _per_seed (test over the same seeds: reported only), val_accuracy,
                                        val_accuracy_ci95, val_count (the search's one-seed measurement), config}
  best_confirmed                        null, or as winner: when none confirms, the highest validation mean
  confirmation                          {seeds, reseed, feasibility, candidates: [...], compute}
  baselines.pixel_logreg.test_accuracy  float or null (+ `skipped`: why)
  baselines.scratch.test_accuracy_mean  float or null (+ std, ci95, per seed, trial_id; `skipped`: why)
  summary                               one line: what SimMIM bought
plus the search's own: target_accuracy, size_metric, trials, status_counts, pareto_front.
"""
from __future__ import annotations

from simmim_ray.metrics import (CONFIRM_VAL_ACCURACY_CI95, CONFIRM_VAL_ACCURACY_MEAN, CONFIRM_VAL_ACCURACY_STD,
                                CONFIRM_VAL_SEED_FIELDS, FLOPS, PARAMS, TEST_ACCURACY, TEST_ACCURACY_CI95,
                                TEST_ACCURACY_MEAN, TEST_ACCURACY_PER_SEED, TEST_ACCURACY_STD, TEST_COUNT,
                                TEST_SEED_FIELDS, VAL_ACCURACY, VAL_ACCURACY_CI95, VAL_ACCURACY_HIGH,
                                VAL_ACCURACY_LOW, VAL_COUNT)
from simmim_ray.search.answer import confirm
from simmim_ray.search.record import ledger
from simmim_ray.search.answer import tables
from simmim_ray.search.answer.baselines import PIXEL_LOGREG, SCRATCH
from simmim_ray.search.answer.stats import SeedSummary

CONFIRMED, UNCONFIRMED, NONE_CONFIRMED, PENDING, NO_TRIAL = (
    "confirmed", "unconfirmed", "none confirmed", "pending", "no trial")


def confirmation_events(events: list[dict], reseed: str) -> list[dict]:
    return [e for e in events if e["event"] == ledger.CONFIRMATION and e.get("mode") == reseed]


def scratch_events(events: list[dict], trial_id: str) -> list[dict]:
    return [e for e in events if e["event"] == ledger.BASELINE and e.get("name") == SCRATCH
            and e.get("trial_id") == trial_id]


def build(s, rows: list[dict], events: list[dict], labeled_fraction: float | None) -> dict:
    """`s`: SearchSettings; `rows`: tables.trial_rows with `feasible` marked; `events`: the whole ledger."""
    out = tables.report_json(rows, s.target_accuracy, s.size_metric)
    seeds = confirm.confirm_seeds(s.confirm_seeds, s.seed)
    cands = confirm.candidates(rows, s.confirm, s.size_metric) if s.confirm else []
    measured = confirm.merge(confirmation_events(events, s.confirm_reseed), seeds)
    win, final = confirm.pick_winner(cands, measured, seeds, s.target_accuracy, s.feasibility)
    if s.confirm == 0:
        win = tables.winner(rows, s.size_metric)
        answer = UNCONFIRMED if win else NO_TRIAL
    elif not cands:
        answer = NO_TRIAL
    else:
        answer = CONFIRMED if win else (NONE_CONFIRMED if final else PENDING)
    best = confirm.best_confirmed(cands, measured, seeds) if answer == NONE_CONFIRMED else None
    won_at = next((i for i, c in enumerate(cands) if win and c["trial_id"] == win["trial_id"]), None)
    ref = win or (best[0] if best else None)  # whose architecture the scratch baseline trains
    out.update({
        "labeled_fraction": labeled_fraction, "answer": answer, "selected_on": confirm.SELECTED_ON,
        "selection_rule": selection_rule(s),
        "winner": _entry(win, measured.get(win["trial_id"]) if win else None, s, answer == CONFIRMED)
        if win else None,
        "best_confirmed": _entry(best[0], measured[best[0]["trial_id"]], s, False) if best else None,
        "confirmation": {
            "candidates_requested": s.confirm, "seeds": list(seeds) if s.confirm else [], "reseed": s.confirm_reseed,
            "feasibility": s.feasibility,
            "candidates": [{**_entry(c, measured.get(c["trial_id"]), s, False),
                            "state": _state(i, c, measured, seeds, s, won_at),
                            "errors": measured[c["trial_id"]].errors if c["trial_id"] in measured else []}
                           for i, c in enumerate(cands)],
            "compute": compute([e for e in events if e["event"] == ledger.CONFIRMATION])},
        "baselines": {PIXEL_LOGREG: pixel_baseline(events),
                      SCRATCH: scratch_baseline(s, events, ref, seeds)},
    })
    out["baselines"][SCRATCH]["compute"] = compute(
        [e for e in events if e["event"] == ledger.BASELINE and e.get("name") == SCRATCH])
    out["summary"] = summary(out, s)
    return out


def bound_name(feasibility: str) -> str:
    """What --feasibility holds against the target, in words."""
    return "mean" if feasibility == "mean" else "lower end of the 95% t-interval"


def selection_rule(s) -> str:
    """How the winner is chosen, in words: the report states it, so a reader of the test numbers knows they chose
    nothing."""
    if not s.confirm:
        return (f"the smallest trial ({s.size_metric}) whose validation accuracy in the search (one seed) >= "
                f"{s.target_accuracy:g}; --confirm 0: nothing re-measured, no test")
    return (f"the smallest of the (up to) {s.confirm} smallest trials feasible on validation ({s.size_metric}) "
            f"whose validation {bound_name(s.feasibility)} over {s.confirm_seeds} fresh seeds >= {s.target_accuracy:g}; "
            f"test measured in the same runs, reported, never used to choose")


def _state(i: int, c: dict, measured: dict, seeds: tuple[int, ...], s, won_at: int | None) -> str:
    st = confirm.state(measured.get(c["trial_id"]), seeds, s.target_accuracy, s.feasibility)
    if st == "pending" and won_at is not None and i > won_at:
        return "not needed"  # a smaller candidate confirmed: this one cannot change the answer
    return st


def _entry(row: dict, m: confirm.Measured | None, s, confirmed: bool) -> dict:
    seeds = confirm.confirm_seeds(s.confirm_seeds, s.seed)
    done = m is not None and not confirm.missing_seeds(m, seeds)
    return {"trial_id": row["trial_id"], PARAMS: row.get(PARAMS), FLOPS: row.get(FLOPS), "confirmed": confirmed,
            **seed_fields(m.summary(confirm.SELECTION_METRIC) if done else None, CONFIRM_VAL_SEED_FIELDS),
            **seed_fields(m.summary(TEST_ACCURACY) if done else None), VAL_ACCURACY: row.get(VAL_ACCURACY),
            VAL_ACCURACY_CI95: _pair(row.get(VAL_ACCURACY_LOW), row.get(VAL_ACCURACY_HIGH)),
            VAL_COUNT: row.get(VAL_COUNT), "config": {k: v for k, v in row.items() if "." in k}}


def seed_fields(summ: SeedSummary | None, names: tuple[str, ...] = TEST_SEED_FIELDS) -> dict:
    """`names`: the (mean, std, ci95, per_seed) keys to write the summary under (test's unless told)."""
    values = (None, None, None, []) if summ is None else (summ.mean, summ.std, [summ.low, summ.high],
                                                          list(summ.per_seed))
    return dict(zip(names, values))


def _pair(low, high):
    return None if low is None or high is None or low != low else [low, high]


def pixel_baseline(events: list[dict]) -> dict:
    e = next((e for e in reversed(events) if e["event"] == ledger.BASELINE and e.get("name") == PIXEL_LOGREG), None)
    if e is None:
        return {TEST_ACCURACY: None, "skipped": "not measured yet (it is when the search ends)"}
    return {TEST_ACCURACY: e.get(TEST_ACCURACY), **{k: e[k] for k in (TEST_COUNT, "labeled_images", "skipped")
                                                    if k in e}}


def scratch_baseline(s, events: list[dict], ref: dict | None, seeds: tuple[int, ...]) -> dict:
    if s.confirm == 0:
        return {**seed_fields(None), "trial_id": None, "skipped": "--confirm 0: no seeds are measured on test"}
    if ref is None:
        return {**seed_fields(None), "trial_id": None, "skipped": "no confirmed candidate to compare with"}
    m = confirm.merge(scratch_events(events, ref["trial_id"]), seeds).get(ref["trial_id"])
    missing = confirm.missing_seeds(m, seeds)
    out = {**seed_fields(None if missing else m.summary(TEST_ACCURACY)), "trial_id": ref["trial_id"],
           PARAMS: ref.get(PARAMS)}
    if missing:
        out["skipped"] = f"failed: {m.errors[-1]}" if m and m.errors else "not measured yet"
    return out


def compute(events: list[dict]) -> dict:
    """What a stage's Train jobs cost: jobs, fine-tunes and pre-training epochs run, wall seconds (the union of
    the jobs' running intervals), job-seconds, CPU-seconds over every worker, GPU-seconds held."""
    runs = [r for e in events for r in e.get("runs", [])]
    spans = sorted((e.get("started", e["time"]), e["time"]) for e in events)
    wall, end = 0.0, float("-inf")
    for a, b in spans:
        wall += max(0.0, b - max(a, end))
        end = max(end, b)
    return {"jobs": len(events), "fine_tunes": len(runs),
            "pretrain_epochs": int(sum(r.get("pretrain_epochs", 0) for r in runs)),
            "wall_s": wall, "job_seconds": float(sum(e.get("wall_s", 0.0) for e in events)),
            "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in runs)),
            "gpu_seconds": float(sum(e.get("gpu_seconds", 0.0) for e in events))}


def _acc(mean, std=None) -> str:
    return "n/a" if mean is None else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}")


def summary(rep: dict, s) -> str:
    """One line: what SimMIM bought against the same model from scratch and a linear model on pixels."""
    w, b = rep["winner"], rep["baselines"]
    scratch = b[SCRATCH]
    tail = (f"same model from scratch {_acc(scratch[TEST_ACCURACY_MEAN], scratch[TEST_ACCURACY_STD])}; "
            f"pixel logistic regression {_acc(b[PIXEL_LOGREG][TEST_ACCURACY])}")
    if w is None:
        best = rep["best_confirmed"]
        head = {PENDING: "SimMIM: confirmation not finished", NO_TRIAL: "SimMIM: no trial met the target on validation"
                }.get(rep["answer"], "SimMIM: no candidate confirmed on validation" + (
                    f" (best {best['trial_id']}: validation "
                    f"{_acc(best[CONFIRM_VAL_ACCURACY_MEAN], best[CONFIRM_VAL_ACCURACY_STD])}, test "
                    f"{_acc(best[TEST_ACCURACY_MEAN], best[TEST_ACCURACY_STD])} at {best[s.size_metric]:,.0f} "
                    f"{s.size_metric})" if best else ""))
        return f"{head}; {tail}"
    if not w["confirmed"]:
        return (f"SimMIM: {_acc(w[VAL_ACCURACY])} on validation, unconfirmed, at {w[s.size_metric]:,.0f} "
                f"{s.size_metric}; {tail}")
    return (f"SimMIM: {_acc(w[TEST_ACCURACY_MEAN], w[TEST_ACCURACY_STD])} at {w[s.size_metric]:,.0f} "
            f"{s.size_metric}; {tail}")


def _ci(pair) -> str:
    return "" if not pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def format_text(rep: dict, s) -> str:
    """The report for a terminal: the same facts as `build`'s dict."""
    m = s.size_metric
    counts = ", ".join(f"{v} {k}" for k, v in sorted(rep["status_counts"].items()))
    lf = rep["labeled_fraction"]
    lines = [f"{rep['trials']} trials: {counts}" + (f"; labelled fraction {lf:g}" if lf is not None else ""),
             f"Pareto front on validation (accuracy vs {m}; target {s.target_accuracy:g}; 95% Wilson interval):",
             f"  {'trial':16s} {'val acc':>8s} {'95% interval':>16s} {m:>12s} {'feasible':>8s}"]
    for r in rep["pareto_front"]:
        ci = _ci(_pair(r.get(VAL_ACCURACY_LOW), r.get(VAL_ACCURACY_HIGH)))
        lines.append(f"  {r['trial_id']:16s} {r[VAL_ACCURACY]:8.4f} {ci:>16s} {r[m]:12,.0f} "
                     f"{'yes' if r.get('feasible') else 'no':>8s}")
    c = rep["confirmation"]
    if s.confirm and not c["candidates"]:  # no header over an empty table
        lines.append("Confirmation: no candidate (no trial was feasible on validation)")
    elif s.confirm:
        lines += [f"Confirmation: re-measured on validation with {len(c['seeds'])} fresh seeds (re-seeding the "
                  f"{s.confirm_reseed}), confirmed when the validation {bound_name(s.feasibility)} >= "
                  f"{s.target_accuracy:g}; test measured in the same runs, reported only:",
                  f"  {'trial':16s} {m:>12s} {'search val':>10s} {'val mean ± std':>16s} {'val 95% interval':>16s} "
                  f"{'test mean ± std':>16s}  state"]
        for e in c["candidates"]:
            lines.append(f"  {e['trial_id']:16s} {e[m]:12,.0f} {e[VAL_ACCURACY]:10.4f} "
                         f"{_acc(e[CONFIRM_VAL_ACCURACY_MEAN], e[CONFIRM_VAL_ACCURACY_STD]):>16s} "
                         f"{_ci(e[CONFIRM_VAL_ACCURACY_CI95]):>16s} "
                         f"{_acc(e[TEST_ACCURACY_MEAN], e[TEST_ACCURACY_STD]):>16s}  {e['state']}"
                         + (f" ({e['errors'][-1]})" if e["errors"] and e["state"] == "failed" else ""))
        k = c["compute"]
        lines.append(f"Confirmation compute: {k['jobs']} Train job{'' if k['jobs'] == 1 else 's'}, "
                     f"{k['fine_tunes']} fine-tunes, "
                     f"{k['pretrain_epochs']} pre-training epochs, {k['wall_s']:.0f} s wall, "
                     f"{k['cpu_seconds']:.0f} CPU-s" + (f", {k['gpu_seconds']:.0f} GPU-s" if k["gpu_seconds"] else ""))
    w = rep["winner"]
    lines.append(f"Chosen on {rep['selected_on']}: {rep['selection_rule']}")
    if w is None:
        lines.append({PENDING: "Answer: pending (confirmation not finished; resume the search)",
                      NO_TRIAL: "Answer: none. No trial reached the target on validation."}.get(
            rep["answer"], "Answer: none (no candidate met the target on validation with fresh seeds)"))
    else:
        seeds = ", ".join(f"{a:.3f}" for a in w[TEST_ACCURACY_PER_SEED])
        how = (f"confirmed on validation {_acc(w[CONFIRM_VAL_ACCURACY_MEAN], w[CONFIRM_VAL_ACCURACY_STD])} "
               f"{_ci(w[CONFIRM_VAL_ACCURACY_CI95])} over {len(c['seeds'])} fresh seeds; test "
               f"{_acc(w[TEST_ACCURACY_MEAN], w[TEST_ACCURACY_STD])} {_ci(w[TEST_ACCURACY_CI95])} (per seed {seeds}), "
               f"reported only; search validation" if w["confirmed"] else "unconfirmed (--confirm 0): validation")
        lines.append(f"Winner: {w['trial_id']} {how} {w[VAL_ACCURACY]:.4f} {_ci(w[VAL_ACCURACY_CI95])}; "
                     f"params {w[PARAMS]:,.0f}, flops {w[FLOPS]:,.0f} -> best/")
    px, sc = rep["baselines"][PIXEL_LOGREG], rep["baselines"][SCRATCH]
    lines.append("Baselines: pixel logistic regression " + (
        f"{px[TEST_ACCURACY]:.3f} on test ({px.get('labeled_images')} labelled images)" if px[TEST_ACCURACY]
        is not None else f"skipped: {px.get('skipped')}") + "; same model from scratch " + (
        f"{_acc(sc[TEST_ACCURACY_MEAN], sc[TEST_ACCURACY_STD])} ({sc['trial_id']})"
        if sc[TEST_ACCURACY_MEAN] is not None else f"skipped: {sc.get('skipped')}"))
    lines.append(rep["summary"])
    return "\n".join(lines)
