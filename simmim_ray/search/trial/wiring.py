"""How one search trial's Train run talks to Tune, on the trial path the driver chose (simmim_ray/_compat).

- public: Ray's `TuneReportCallback` forwards rank 0's reports to Tune; Tune does not reuse actors, so when it
  stops the trial it ends the trial actor, which takes the Train controller it owns (and so the workers) with it,
  and Train's placement-group cleaner frees the workers' CPUs.
- lean: reports through Ray's KV store (relay.py) and an abort of the Train run when Tune stops the trial
  (stop.py), so that Tune can reuse the trial actor.

    wiring = TrialWiring(lean)
    with wiring:
        make_trainer(..., callbacks=wiring.callbacks, lean=lean).fit()
"""
from __future__ import annotations

from ray.tune.integration.ray_train import TuneReportCallback

from simmim_ray.search.trial.relay import tune_report_channel
from simmim_ray.search.trial.stop import StopWithTune


class TrialWiring:
    def __init__(self, lean: bool) -> None:
        self.lean = lean
        self.stopper = self.results = None
        if lean:
            # Tune reuses this trial's actor for the next trial (reuse_actors): when Tune stops the trial, the
            # stopper aborts the Train run, so the function returns in time to hand the actor over
            self.stopper = StopWithTune()
            report, self.results = tune_report_channel()
            self.callbacks = [report, self.stopper.callback]
        else:
            self.callbacks = [TuneReportCallback()]

    @property
    def stopped(self) -> bool:
        return bool(self.stopper and self.stopper.stopped)

    def __enter__(self) -> "TrialWiring":
        if self.stopper is not None:
            self.stopper.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.stopper is None:
            return False
        try:
            return self.stopper.__exit__(exc_type, exc, tb)
        finally:
            if self.stopper.stopped:
                self.results.close()
