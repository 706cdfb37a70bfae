"""The pieces of benchmarks/studies/digits_frontier.py: the four digits splits, one pre-training, one fine-tune
evaluated on validation and test, and the statistics its tables print (the pixel logistic regression and the
Wilson interval are the product's: simmim_ray.search.answer.baselines, simmim_ray.search.answer.stats).

In-process (`PretrainRun`, no Ray), one process emulating `workers` data-parallel workers: per-worker batch sizes are
multiplied by `workers`, which gives the global batch, learning rate and steps per epoch of a DDP run (the ViT has no
batch norm, so the gradients are the same in expectation).
"""
from __future__ import annotations

import math
import statistics
import time


def run_config(overrides: dict, seed: int, workers: int):
    from simmim_ray.config import Config

    base = Config().with_overrides(overrides)
    return base.with_overrides({"seed": seed, "train.batch_size": base.train.batch_size * workers,
                                "eval.batch_size": base.eval.batch_size * workers})


def splits_of(cfg):
    """The product's four splits (`build_splits`): pool, labelled, validation, test; they never move with the
    seed, so one build serves every seed of a recipe."""
    from simmim_ray.data.splits import build_splits

    return build_splits(cfg)


def pretrain(cfg, splits) -> tuple[object, dict]:
    """`cfg.train.epochs` SimMIM epochs on the pool, each followed by the k-NN proxy on validation that a search
    trial computes for ASHA -> (the run, seconds of each part and loss / proxy per epoch)."""
    from simmim_ray.engine.run import PretrainRun
    from simmim_ray.metrics import LOSS, PARAMS, PROXY_KNN

    run = PretrainRun(cfg, splits=splits)
    out = {"pretrain_s": 0.0, "proxy_s": 0.0, "loss": [], "proxy": []}
    for _ in range(cfg.train.epochs):
        t = time.perf_counter()
        out["loss"].append(run.train_epoch()[LOSS])
        out["pretrain_s"] += time.perf_counter() - t
        t = time.perf_counter()
        out["proxy"].append(run.proxy().get(PROXY_KNN, float("nan")))
        out["proxy_s"] += time.perf_counter() - t
    out["params"] = run.size()[PARAMS]
    return run, out


def finetune(run, seed: int) -> dict:
    """One fine-tune (`cfg.eval`) of the run's encoder with fine-tune seed `seed` (head, batch order,
    augmentation; seeded as a trial seeds it, so seed == the run's seed is exactly what a trial reports) -> the
    same classifier's validation and test accuracy, and its seconds (training + both evaluations)."""
    from simmim_ray.metrics import PARAMS, TEST_ACCURACY, TEST_COUNT, VAL_ACCURACY, VAL_COUNT

    t = time.perf_counter()
    m = run.final_eval(splits=("val", "test"), seed=seed * 7 + 1)
    return {"val": m[VAL_ACCURACY], "test": m[TEST_ACCURACY], "n_val": m[VAL_COUNT], "n_test": m[TEST_COUNT],
            "finetune_s": time.perf_counter() - t, "params": m[PARAMS]}


def scratch(cfg, splits, seed: int) -> dict:
    """The same architecture and fine-tune from its initial weights (seed `seed`), no pre-training."""
    from simmim_ray.engine.run import PretrainRun

    return finetune(PretrainRun(cfg.with_overrides({"seed": seed}), splits=splits), seed)


def unit_seconds(cfg, splits) -> dict:
    """One measurement of each unit a run's wall time is made of: a pre-training epoch, a proxy evaluation, the
    final evaluation of validation and test after a fine-tune of 0 epochs, and a fine-tune epoch.

    The fine-tune epoch is timed directly, from entering `final_eval` to the start of its evaluation (the
    classifier's setup included, so it errs high), not as the difference of two whole evaluations: on a small
    recipe one epoch is within the noise of a shared machine, and a difference can come out zero or negative."""
    from unittest import mock

    from simmim_ray.engine import evaluate
    from simmim_ray.engine.run import PretrainRun

    run = PretrainRun(cfg, splits=splits)
    t0 = time.perf_counter()
    run.train_epoch()
    t1 = time.perf_counter()
    run.proxy()
    t2 = time.perf_counter()
    run.final_eval(splits=("val", "test"), epochs=0)
    t3 = time.perf_counter()
    k = max(1, cfg.eval.epochs // 10)
    trained: list[float] = []  # when a fine-tune's evaluation began (`train_classifier` calls it after training)
    accuracies = evaluate.accuracies

    def stamped(*args, **kwargs):
        trained.append(time.perf_counter())
        return accuracies(*args, **kwargs)

    with mock.patch.object(evaluate, "accuracies", stamped):
        run.final_eval(splits=("val", "test"), epochs=k)
    epoch_s = (trained[-1] - t3) / k if trained else 0.0  # the k-NN protocol trains nothing
    return {"epoch_s": t1 - t0, "proxy_s": t2 - t1, "eval_s": t3 - t2, "finetune_epoch_s": epoch_s}


# ---- statistics (the Wilson interval is the answer's own: simmim_ray.search.answer.stats) -----------------------------
def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def seed_components(grid: list[list[float]]) -> dict[str, float]:
    """grid[p][f]: accuracy with pre-training seed p and fine-tune seed f. -> the standard deviation across
    pre-training seeds with the fine-tune seed fixed (the mean over columns of each column's variance, as a std),
    across fine-tune seeds with the checkpoint fixed (over rows), and across all cells."""
    rows = [list(r) for r in grid]
    cols = [list(c) for c in zip(*rows)]

    def pooled(groups: list[list[float]]) -> float:
        groups = [g for g in groups if len(g) > 1]
        return math.sqrt(statistics.mean(statistics.variance(g) for g in groups)) if groups else 0.0

    cells = [x for r in rows for x in r]
    return {"across_pretrain": pooled(cols), "across_finetune": pooled(rows),
            "all": statistics.stdev(cells) if len(cells) > 1 else 0.0}
