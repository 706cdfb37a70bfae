"""ASHA that lets the warm-start points run to the end.

The size ladder (search/warm_start.py) exists to learn where along the size axis the target starts being met,
which only a finished trial tells. ASHA ranks trials by a per-epoch proxy against the trials that reached the same
rung before them; with the ladder's small models first, the second rung was stopped whenever its proxy trailed the
first's, although small models reach the target with lower proxies than large ones. The protected trials still
report to ASHA, so later trials are ranked against them as usual.
"""
from __future__ import annotations

import math
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


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
