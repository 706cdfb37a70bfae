"""The markdown tables of benchmarks/studies/digits_frontier.py, rendered from its stored records, and the estimate of a
search's wall minutes from in-process seconds."""
from __future__ import annotations

import statistics
from collections import defaultdict

from benchmarks import common
from benchmarks.studies.digits_runs import mean_sd, seed_components
from simmim_ray.search.answer.stats import wilson_interval

# A Ray Tune + Train trial's fixed cost beyond its training loop on an idle 2-core machine
# (benchmarks/trial_overhead.py, README "Speed").
TRIAL_FIXED_S = 7.6
# Two DDP workers on the 2 cores against the one-process emulation of their global batch (benchmarks/scaling.py).
DDP_SPEEDUP = 1.41
# The default search the estimate is for: trials, confirmation candidates x seeds (plus the winner's architecture
# from scratch with as many seeds).
SEARCH = {"trials": 8, "confirm": 3, "confirm_seeds": 3}


def trial_seconds(pretrain_s: float, finetune_s: float) -> float:
    """One search trial on Ray (2 workers): the fixed cost plus the in-process loop sped up by DDP."""
    return TRIAL_FIXED_S + (pretrain_s + finetune_s) / DDP_SPEEDUP


def search_minutes(pretrain_s: float, finetune_s: float, search: dict = SEARCH) -> float:
    """README command 1 if every trial cost what this recipe costs, in its worst case: the trials, then
    confirmation of every candidate (one Ray Train job per candidate, looping over its S fine-tune seeds; the
    stage stops early once the smallest candidate confirms, which this does not count) and the winner's
    architecture from scratch (one job, S fine-tunes). The logistic regression takes well under a second."""
    seeds = search["confirm_seeds"]
    jobs = search["confirm"] + 1
    return (search["trials"] * trial_seconds(pretrain_s, finetune_s)
            + jobs * TRIAL_FIXED_S + jobs * seeds * finetune_s / DDP_SPEEDUP) / 60


def _pct(xs: list[float]) -> str:
    m, sd = mean_sd(xs)
    return f"{100 * m:.1f} ± {100 * sd:.1f}"


def _wilson_cell(xs: list[float], n: int) -> str:
    lo, hi = wilson_interval(statistics.mean(xs), n)
    return f"{100 * lo:.1f}-{100 * hi:.1f}"


def _describe(overrides: dict) -> str:
    return ", ".join(f"{k.split('.', 1)[1] if k.startswith(('model.', 'train.')) else k}={v}"
                     for k, v in overrides.items()) or "config defaults"


def run_seconds(runs: list[dict], timing: dict | None) -> tuple[float, float]:
    """(pre-training + proxy seconds, fine-tune + evaluation seconds) of one run of a recipe: from its unit
    timings (minimum over interleaved rounds) where measured, else the fastest of its runs (runs share the machine
    with other jobs, so they overstate an idle machine's seconds)."""
    r0 = runs[0]
    if timing is not None:
        pre = r0.get("epochs", 0) * (timing["epoch_s"] + timing["proxy_s"])
        return pre, r0["eval_epochs"] * timing["finetune_epoch_s"] + timing["eval_s"]
    pre = min(r.get("pretrain_s", 0.0) + r.get("proxy_s", 0.0) for r in runs)
    return pre, min(r["finetune_s"] for r in runs)


def frontier_table(records: list[dict], recipes: dict) -> str:
    """Per labelled fraction: each recipe's SimMIM rows (pre-training seed = fine-tune seed, as a search trial runs
    it), its from-scratch twin and the pixel logistic regression, with seconds and the estimated search minutes."""
    by: dict = defaultdict(list)
    timed = {(r["fractions"]["labeled"], r["recipe"]): r for r in records if r["kind"] == "timing"}
    for r in records:
        if r["kind"] == "timing":
            continue
        diag = r["kind"] != "simmim" or r["pretrain_seed"] == r["finetune_seed"]
        if diag:
            by[(r["fractions"]["labeled"], r["recipe"], r["kind"])].append(r)
    parts = []
    for lab in sorted({k[0] for k in by}):
        rows = []
        logreg = next((v[0] for k, v in by.items() if k[0] == lab and k[2] == "logreg"), None)
        for name in recipes:
            sim, scr = by.get((lab, name, "simmim"), []), by.get((lab, name, "scratch"), [])
            if not sim:
                continue
            r0 = sim[0]
            pre, ft = run_seconds(sim, timed.get((lab, name)))
            rows.append((search_minutes(pre, ft),
                         f"| `{name}` SimMIM | {r0['params']:,} | {r0['epochs']} / {r0['eval_epochs']} | "
                         f"{_pct([r['val'] for r in sim])} | {_pct([r['test'] for r in sim])} | "
                         f"{_wilson_cell([r['test'] for r in sim], r0['n_test'])} | {len(sim)} | {pre:.0f} | "
                         f"{ft:.1f} | {trial_seconds(pre, ft):.0f} | {search_minutes(pre, ft):.1f} |"))
            if scr:
                ft_s = run_seconds(scr, timed.get((lab, name)))[1]
                rows.append((search_minutes(pre, ft) + 1e-6,
                             f"| `{name}` from scratch | {scr[0]['params']:,} | 0 / {scr[0]['eval_epochs']} | "
                             f"{_pct([r['val'] for r in scr])} | {_pct([r['test'] for r in scr])} | "
                             f"{_wilson_cell([r['test'] for r in scr], scr[0]['n_test'])} | {len(scr)} | 0 | "
                             f"{ft_s:.1f} | | |"))
        if not rows:
            continue
        n = logreg or next(v[0] for k, v in by.items() if k[0] == lab)
        head = (f"#### {100 * lab:g}% labelled: {n['n_labeled']} labelled images, pool {n['n_pool']}, "
                f"validation {n['n_val']}, test {n['n_test']}\n\n"
                "| recipe | encoder params | pre-train / fine-tune epochs | val % | test % | test 95% Wilson | seeds "
                "| pre-train + proxy s | fine-tune s | trial s on Ray (est.) | search min (est.) |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")
        lines = [head]
        if logreg:
            lr_wilson = wilson_interval(logreg["test"], logreg["n_test"])
            lines.append(f"| pixel logistic regression (same labelled images) | 650 | | {100 * logreg['val']:.1f} | "
                         f"{100 * logreg['test']:.1f} | {100 * lr_wilson[0]:.1f}-{100 * lr_wilson[1]:.1f} | | | "
                         f"| | |")
        lines += [row for _, row in sorted(rows, key=lambda x: x[0])]
        parts.append("\n".join(lines))
    recipe_lines = "\n".join(f"- `{name}`: {_describe(over)}" for name, over in recipes.items()
                             if any(r["recipe"] == name for r in records))
    return "\n\n".join(parts) + "\n\nRecipes (values over the config defaults):\n\n" + recipe_lines


def seeds_table(records: list[dict]) -> str:
    """Recipes run as a P x F grid: the spread of test and val accuracy across pre-training seeds (fine-tune seed
    fixed) and across fine-tune seeds (checkpoint fixed), and what one more seed of each costs."""
    grids: dict = defaultdict(dict)
    for r in records:
        if r["kind"] == "simmim":
            grids[(r["recipe"], r["fractions"]["labeled"])][(r["pretrain_seed"], r["finetune_seed"])] = r
    lines = ["| recipe | labelled | grid (pre-train x fine-tune seeds) | metric | sd across pre-training seeds | "
             "sd across fine-tune seeds | sd over all cells | one pre-training seed costs (s) | "
             "one fine-tune seed costs (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, lab), cells in sorted(grids.items()):
        ps = sorted({p for p, _ in cells})
        fs = sorted({f for _, f in cells})
        if len(ps) < 2 or len(fs) < 2 or any((p, f) not in cells for p in ps for f in fs):
            continue
        pre = min(c["pretrain_s"] + c["proxy_s"] + c["finetune_s"] for c in cells.values())
        ft = min(c["finetune_s"] for c in cells.values())
        for metric in ("test", "val"):
            comp = seed_components([[cells[p, f][metric] for f in fs] for p in ps])
            lines.append(f"| `{name}` | {100 * lab:g}% | {len(ps)} x {len(fs)} | {metric} | "
                         f"{100 * comp['across_pretrain']:.1f} | {100 * comp['across_finetune']:.1f} | "
                         f"{100 * comp['all']:.1f} | {pre:.0f} | {ft:.1f} |")
    return "\n".join(lines) if len(lines) > 2 else "(no complete grid stored yet)"


def write_section(path: str, name: str, body: str) -> None:
    common.write_marked_block(path, "digits_frontier", name, body)


def render_all(records: list[dict], recipes: dict, path: str) -> str:
    frontier, seeds = frontier_table(records, recipes), seeds_table(records)
    write_section(path, "frontier", frontier)
    write_section(path, "seeds", seeds)
    return frontier + "\n\n" + seeds
