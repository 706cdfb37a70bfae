"""One Tune trial: a data-parallel Ray Train job (Train V2: the trial function fits a TorchTrainer)."""
from __future__ import annotations

import json

from ray import tune

from simmim_ray import storage
from simmim_ray.config import Config
from simmim_ray.search.space import decode
from simmim_ray.train.launch import Resources, make_trainer, share_splits
from simmim_ray.search.trial_wiring import TrialWiring


def trial_name(trial) -> str:
    """Stable across restores: Tune's trial id (8 hex digits under a search algorithm; `<uuid>_00003` without one)
    is kept in its experiment state and in trials.jsonl."""
    return f"trial_{trial.trial_id.rsplit('_', 1)[-1]}"


def make_trial_fn(base: dict, res: Resources, storage_uri: str, experiment: str, max_failures: int,
                  lean: bool | None = None):
    """Returns the Tune function for `base` config (a dict) plus each trial's dotted params.

    Called in the search driver, with Ray up: the data is loaded here once and shared by every trial's workers.
    `lean`: the trial path (simmim_ray/_compat), decided here once for every trial (None: this Ray's)."""
    import ray

    from simmim_ray._compat import trial_path

    lean = trial_path() == "lean" if lean is None else lean
    shared = share_splits(Config.from_dict(base)) if ray.is_initialized() else None

    def run_trial(params: dict) -> None:
        cfg = Config.from_dict(base).with_overrides(decode(params))
        name = tune.get_context().get_trial_name()
        exp = storage.join(storage_uri, experiment)
        final_path = storage.join(exp, "train_runs", name, "final.json")
        if storage.exists(final_path):
            # A restored search re-launches trials that finished after Tune's last state save: report the
            # stored final result instead of training again (Train would restore the run and report nothing).
            tune.report(json.loads(storage.read_bytes(final_path)))
            return
        wiring = TrialWiring(lean)  # how Train's reports reach Tune and how Tune stops the run
        trainer = make_trainer(cfg, res, storage_path=storage.join(exp, "train_runs"), name=name,
                               tb_dir=storage.join(exp, "tb", name), max_failures=max_failures,
                               callbacks=wiring.callbacks, final_path=final_path,
                               history_path=storage.join(exp, "train_runs", name, "history.jsonl"),
                               shared=shared, lean=lean)
        with wiring:
            trainer.fit()

    return run_trial
