"""Tune schedulers of the search: ASHA that lets the warm-start points run to the end, and the constraint's own
early stopping (ConstraintStopper, the default).

ProtectingASHA: the size ladder (search/warm_start.py) exists to learn where along the size axis the target starts being met,
which only a finished trial tells. ASHA ranks trials by a per-epoch proxy against the trials that reached the same
rung before them; with the ladder's small models first, the second rung was stopped whenever its proxy trailed the
first's, although small models reach the target with lower proxies than large ones. The protected trials still
report to ASHA, so later trials are ranked against them as usual.
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from simmim_ray.metrics import DONE, EPOCH, VAL_ACCURACY


def same_point(config: dict, point: dict) -> bool:
    """Whether a trial's config carries `point` (searched key -> value; floats compared to rounding)."""
    for key, want in point.items():
        got: Any = config.get(key)
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif got != want:
            return False
    return True


class ProtectingASHA(ASHAScheduler):
    def __init__(self, protect: list[dict] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._protect = list(protect or [])

    def is_protected(self, trial) -> bool:
        return any(same_point(trial.config, p) for p in self._protect)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and not result.get("done") and self.is_protected(trial):
            return TrialScheduler.CONTINUE
        return action


class ConstraintStopper(FIFOScheduler):
    """Early stopping that serves the constraint: a trial is stopped when it can no longer change the answer.

    - It cannot beat the incumbent: its size (reported with every result, known before training) is not below the
      smallest size that finished feasible, which another trial may have set while this one ran.
    - It is predicted to miss the target: at a rung (pre-training epochs `rungs`), its proxy is below every proxy
      that a trial which finished feasible had at that rung, by more than `margin`. Before `min_feasible` trials
      finished feasible there is nothing to predict from, and no trial is stopped for this.
    Trials that match a `protect` point (the user's --points, the size ladder) are stopped for the first reason only.
    How well the proxy predicts feasibility at each rung: docs/proxy_correlation.md.
    """

    def __init__(self, size_metric: str, target_accuracy: float, metric: str, rungs: list[int], margin: float,
                 min_feasible: int = 1, protect: list[dict] | None = None) -> None:
        super().__init__()
        self.size_metric, self.target = size_metric, float(target_accuracy)
        self.proxy_metric, self.rungs, self.margin, self.min_feasible = metric, sorted(rungs), float(margin), min_feasible
        self._protect = list(protect or [])
        self.incumbent: float | None = None
        self._at_rung: dict[str, dict[int, float]] = {}  # trial id -> {rung: proxy}
        self._feasible_at_rung: dict[int, list[float]] = {}  # rung -> proxies of trials that finished feasible
        self.stopped: dict[str, str] = {}  # trial id -> why

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(DONE):
            return TrialScheduler.CONTINUE
        size = result.get(self.size_metric)
        if size is not None and self.incumbent is not None and size >= self.incumbent:
            return self._stop(trial, f"{self.size_metric} {size:,.0f} cannot beat the smallest feasible "
                                     f"{self.incumbent:,.0f}")
        epoch, proxy = result.get(EPOCH), result.get(self.proxy_metric)
        if epoch in self.rungs and isinstance(proxy, (int, float)) and math.isfinite(proxy):
            self._at_rung.setdefault(trial.trial_id, {})[epoch] = float(proxy)
            floor = self.floor(epoch)
            protected = any(same_point(trial.config, p) for p in self._protect)
            if floor is not None and proxy < floor - self.margin and not protected:
                return self._stop(trial, f"{self.proxy_metric} {proxy:.3f} at epoch {epoch} is below every trial that "
                                         f"finished feasible ({floor:.3f}) by more than {self.margin:g}")
        return TrialScheduler.CONTINUE

    def floor(self, rung: int) -> float | None:
        got = self._feasible_at_rung.get(rung, [])
        return min(got) if len(got) >= self.min_feasible else None

    def _stop(self, trial, why: str) -> str:
        self.stopped[trial.trial_id] = why
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        acc, size = (result or {}).get(VAL_ACCURACY), (result or {}).get(self.size_metric)
        if isinstance(acc, (int, float)) and acc >= self.target and result.get(DONE, True) and size is not None:
            self.incumbent = size if self.incumbent is None else min(self.incumbent, size)
            for rung, proxy in self._at_rung.get(trial.trial_id, {}).items():
                self._feasible_at_rung.setdefault(rung, []).append(proxy)
        self._at_rung.pop(trial.trial_id, None)
