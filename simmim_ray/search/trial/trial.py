"""One Tune trial: a data-parallel Ray Train job (Train V2: the trial function fits a TorchTrainer)."""
from __future__ import annotations

import ray
from ray import tune

from simmim_ray._compat import trial_path
from simmim_ray.config import Config
from simmim_ray.metrics import REPLAYED
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.space import decode
from simmim_ray.search.trial.wiring import TrialWiring
from simmim_ray.train.launch import Resources, SharedSplits, make_trainer, share_splits
from simmim_ray.train.loop_config import Remeasure


def trial_name(trial) -> str:
    """Stable across restores: Tune's trial id (8 hex digits under a search algorithm; `<uuid>_00003` without one)
    is kept in its experiment state and in the ledger."""
    return f"trial_{trial.trial_id.rsplit('_', 1)[-1]}"


def make_trial_fn(base: dict, res: Resources, exp_uri: str, max_failures: int, shared: SharedSplits | None = None,
                  lean: bool | None = None, remeasure: Remeasure | None = None):
    """Returns the Tune function for `base` config (a dict) plus each trial's dotted params, in experiment
    `exp_uri` (where it is now: the function is built again by every driver, also for a moved experiment).

    Called in the search driver, with Ray up: the data is loaded here once (or given: `shared`) and shared by
    every trial's workers. `lean`: the trial path (simmim_ray/_compat), decided here once for every trial (None:
    this Ray's). `remeasure`: for borderline final accuracies, or None."""
    lean = trial_path() == "lean" if lean is None else lean
    if shared is None and ray.is_initialized():
        shared = share_splits(Config.from_dict(base))

    def run_trial(params: dict) -> None:
        cfg = Config.from_dict(base).with_overrides(decode(params))
        name = tune.get_context().get_trial_name()
        exp = Experiment(exp_uri)
        stored = exp.ledger.final_result(name)
        if stored is not None:
            # A restored search re-launches trials that finished after Tune's last state save: report the
            # recorded final result instead of training again. (A run whose end never reached the ledger is
            # restored by Train from its last checkpoint and reports its final metrics again: train/trial_loop.py.)
            tune.report({**stored, REPLAYED: True})
            return
        wiring = TrialWiring(lean)  # how Train's reports reach Tune and how Tune stops the run
        trainer = make_trainer(cfg, res, storage_path=exp.train_runs(), name=name, tb_dir=exp.tb(name),
                               max_failures=max_failures, callbacks=wiring.callbacks, shared=shared, lean=lean,
                               remeasure=remeasure)
        with wiring:
            trainer.fit()

    return run_trial
