"""The benchmark table (benchmarks/search_table.py) as the replay reads it: rows with typed measurements, the ground
truth (feasible configurations, S*), the fine-tune seed a trial draws, the traces the simulator replays, the compute
budget, and the largest complete sub-grid of a table that is still being built.

Ground truth: a configuration is feasible when its mean test accuracy over its fine-tune seeds meets the target; S*
is the smallest size among feasible configurations. No decision of a replayed search reads test.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import statistics
from dataclasses import dataclass, replace

import numpy as np

from simmim_ray.metrics import FLOPS, PARAMS, PROXY_KNN, TEST_ACCURACY, VAL_ACCURACY


@dataclass(frozen=True)
class FineTune:
    seed: int
    val_accuracy: float
    test_accuracy: float
    cpu_s: float


@dataclass(frozen=True)
class Row:
    key: str  # json.dumps(point, sort_keys=True), as the table names it
    point: dict  # searched key -> value
    sizes: dict  # params / flops -> int
    proxies: tuple[float, ...]  # proxy_knn per pre-training epoch
    epoch_cpu_s: tuple[float, ...]
    finetunes: tuple[FineTune, ...]

    def size(self, metric: str) -> int:
        return self.sizes[metric]

    @property
    def mean_test(self) -> float:
        return statistics.fmean(f.test_accuracy for f in self.finetunes)

    @property
    def mean_val(self) -> float:
        return statistics.fmean(f.val_accuracy for f in self.finetunes)

    @property
    def full_cpu_s(self) -> float:
        """A full trial: every pre-training epoch and one fine-tune (the mean of the measured ones)."""
        return sum(self.epoch_cpu_s) + statistics.fmean(f.cpu_s for f in self.finetunes)

    def trace(self, val_accuracy: float, final_cpu_s: float) -> dict:
        """What a trial of this configuration reports (benchmarks/search_sim.py), ending with this validation
        accuracy after this many CPU seconds of fine-tuning."""
        return {"epochs": [{PROXY_KNN: p, "cpu_s": c} for p, c in zip(self.proxies, self.epoch_cpu_s)],
                "final": {VAL_ACCURACY: val_accuracy, "cpu_s": final_cpu_s}, **self.sizes}


def draw(seed: int, key: str, n: int) -> int:
    """Which of a configuration's `n` fine-tune seeds a trial of it draws in replay seed `seed`: a function of
    (seed, configuration) only, so every method that runs the configuration in that seed sees the same noise."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return int(np.random.default_rng([seed, digest]).integers(n))


@dataclass(frozen=True)
class Table:
    space: str
    target: float
    size_metric: str
    trials: float  # the default search's budget in full trials (its `budget:` in trial-epochs / epochs per trial)
    grace_period: int
    epochs: int
    keys: tuple[str, ...]
    rows: dict[str, Row]
    recipe: dict
    val_count: int | None = None  # validation images, where the table records them

    def row(self, params: dict) -> Row:
        """The row of a searcher's params (float values compare as numbers: 0 and 0.0 are one choice)."""
        want = tuple(params[k] for k in self.keys)
        for r in self.rows.values():
            if tuple(r.point[k] for k in self.keys) == want:
                return r
        raise KeyError(f"no configuration {params} in the table")

    def feasible(self, row: Row) -> bool:
        return row.mean_test >= self.target

    @property
    def s_star(self) -> int | None:
        """The smallest feasible size; None when no configuration is feasible."""
        return min((r.size(self.size_metric) for r in self.rows.values() if self.feasible(r)), default=None)

    def values(self) -> dict[str, list]:
        """Every searched key's values present in the table, sorted."""
        return {k: sorted({r.point[k] for r in self.rows.values()}) for k in self.keys}

    def restrict(self, values: dict[str, list]) -> Table:
        """The rows whose every searched key takes one of `values[key]` (keys not named: any value)."""
        keep = {k: r for k, r in self.rows.items()
                if all(r.point[key] in vals for key, vals in values.items())}
        return replace(self, rows=keep)

    def budget_1x(self, confirm: int, confirm_seeds: int) -> float:
        """The default search's nominal compute: its budget in full trials at the median full-trial CPU seconds, and the
        confirmation of `confirm` candidates with `confirm_seeds` fine-tunes each at the median fine-tune's."""
        full = statistics.median(r.full_cpu_s for r in self.rows.values())
        ft = statistics.median(f.cpu_s for r in self.rows.values() for f in r.finetunes)
        return self.trials * full + confirm * confirm_seeds * ft


def from_dict(data: dict) -> Table:
    """A table as search_table.py writes it; rows whose pre-training or fine-tunes are incomplete are left out."""
    rows = {}
    for key, r in data["configs"].items():
        if len(r["epochs"]) < data["epochs"] or not r["finetune"]:
            continue
        fts = tuple(FineTune(f["seed"], f[VAL_ACCURACY], f[TEST_ACCURACY], f["cpu_s"]) for f in r["finetune"])
        rows[key] = Row(key, dict(r["point"]), {PARAMS: int(r[PARAMS]), FLOPS: int(r[FLOPS])},
                        tuple(e[PROXY_KNN] for e in r["epochs"]), tuple(e["cpu_s"] for e in r["epochs"]), fts)
    full_trials = data["budget"] / data["epochs"] if data.get("budget") else int(data["trials"])
    return Table(data["space"], float(data["target_accuracy"]), data["size_metric"], full_trials,
                 int(data["grace_period"]), int(data["epochs"]), tuple(data["keys"]), rows, data.get("recipe", {}),
                 data.get("val_count"))


def load(path: str) -> Table:
    with open(path) as fh:
        return from_dict(json.load(fh))


# ---- the replayed space -----------------------------------------------------------------------------------------
def is_int_key(table: Table, key: str) -> bool:
    return all(isinstance(r.point[key], int) and not isinstance(r.point[key], bool) for r in table.rows.values())


def _runs(values: list[int]) -> list[list[int]]:
    """Contiguous runs of an int key's values on their common step (what an IntDistribution can hold)."""
    step = math.gcd(*[b - a for a, b in zip(values, values[1:])]) or 1
    return [values[i:j] for i in range(len(values)) for j in range(i + 1, len(values) + 1)
            if all(b - a == step for a, b in zip(values[i:j], values[i + 1:j]))]


def complete_subgrid(table: Table) -> dict[str, list]:
    """The largest product of per-key value sets (int keys: contiguous runs; others: any subset) whose every
    configuration the table has: the space a partial table can replay without a hole."""
    options = {}
    for key, vals in table.values().items():
        if is_int_key(table, key):
            options[key] = _runs(vals)
        else:
            options[key] = [list(c) for n in range(1, len(vals) + 1) for c in itertools.combinations(vals, n)]
    have = {tuple(r.point[k] for k in table.keys) for r in table.rows.values()}
    combos = sorted(itertools.product(*(options[k] for k in table.keys)),
                    key=lambda c: -math.prod(len(v) for v in c))
    for combo in combos:
        if all(p in have for p in itertools.product(*combo)):
            return dict(zip(table.keys, combo))
    raise ValueError("the table has no complete configuration")


def optuna_space(table: Table) -> dict:
    """Optuna distributions of the table's values, as search/space.py's `to_optuna` builds them from the space."""
    import optuna.distributions as od

    out = {}
    for key, vals in table.values().items():
        if is_int_key(table, key):
            step = math.gcd(*[b - a for a, b in zip(vals, vals[1:])]) or 1
            out[key] = od.IntDistribution(vals[0], vals[-1], step=step)
        else:
            out[key] = od.CategoricalDistribution(vals)
    return out


def space_grid_size(table: Table) -> int | None:
    """Configurations in the discrete grid of the bundled space the table was built for; None if not bundled."""
    from simmim_ray.cli.search import space_file
    from simmim_ray.search.space import load_space

    path = space_file(table.space)
    if not os.path.isfile(path):
        return None
    params = load_space(path).params
    return math.prod(len(p.candidates()) for p in params) if all(p.kind in ("choice", "int") for p in params) else None


def holds(table: Table) -> str:
    """`N configurations` and, for a table still being built, how many its space has."""
    total = space_grid_size(table)
    return f"{len(table.rows)} configurations" + (f" of the space's {total}" if total and total > len(table.rows)
                                                  else "")


def grid_text(values: dict[str, list]) -> str:
    return ", ".join(f"`{k}` {{{', '.join(f'{v:g}' for v in vals)}}}" for k, vals in values.items())


def val_count(table: Table) -> int:
    """Validation images behind one validation accuracy: the table's record, else the digits split's size."""
    if table.val_count:
        return table.val_count
    data = table.recipe.get("data", {})
    if data.get("source") != "digits":
        raise ValueError("the table records no val_count and its data source is not digits")
    from simmim_ray.data import sources
    from simmim_ray.data.splits import stratified_partition

    _, val, _ = stratified_partition(np.asarray(sources.DigitsRecords().labels), data["test_fraction"],
                                     data["val_fraction"])
    return len(val)
