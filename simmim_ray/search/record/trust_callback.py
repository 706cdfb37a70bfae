"""The driver's Tune callback that keeps search/record/trust.py's record current while the search runs.

Tune writes pickles into the experiment two ways, and each is recorded before its copy can land:
- Its saves: Tune stages its state in a directory on the driver (the experiment state, then the searcher, then its
  callbacks' states) and only then starts copying that directory into the experiment. It asks every callback for
  its state in between: there this callback digests the staged pickles. It keeps no state of its own (returns
  None: Tune then writes no callback-state pickle).
- Each trial's params.pkl, which Tune's JSON logger writes into the staging directory when the trial starts, at any
  step, while the copy of an earlier save may still be running and pick it up. So this callback is that logger
  (Tune adds its own only when none is given) and records each params.pkl's bytes before writing them; recorded at
  the next save instead, a kill in between left an experiment whose resume was refused.
So a driver killed at any moment leaves an experiment whose pickles verify.
"""
from __future__ import annotations

import os
import sys

from ray import cloudpickle
from ray.tune.logger import JsonLoggerCallback

from simmim_ray.search.record import trust
from simmim_ray.search.record.recorder import rebased

PARAMS_PICKLE = "params.pkl"  # the trial's config, as Tune's JSON logger pickles it


class PickleDigests(JsonLoggerCallback):
    def __init__(self, exp_uri: str) -> None:
        super().__init__()
        self.uri = exp_uri
        self.trials: list | None = None  # Tune's own list of the experiment's trials (see on_step_begin)
        self.seen: dict[str, tuple[int, int]] = {}  # staged relpath -> (size, mtime_ns) when last recorded
        self.failed = False

    def __getstate__(self) -> dict:
        # pickled into tuner.pkl with the run config: the experiment's location only, never the key or open files
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])

    def on_step_begin(self, iteration, trials, **info) -> None:
        # Tune passes the list it adds new trials to, before it saves in the same step
        self.trials = trials

    def get_state(self) -> None:
        """Called by Tune inside each save, after its state files are staged and before they are copied."""
        self.guarded(self.record_staged)
        return None

    def update_config(self, trial, config: dict) -> None:
        """Tune's JSON logger writes the trial's params.json and params.pkl here; the digest goes first."""
        self.guarded(lambda: self.record_params(trial, config))
        super().update_config(trial, config)

    def record_params(self, trial, config: dict) -> None:
        storage = self.saved_storage(trial)
        path = os.path.join(trial.local_path, PARAMS_PICKLE)
        rel = os.path.relpath(path, storage.experiment_driver_staging_path).replace(os.sep, "/")
        if rel.startswith("../"):
            # staged where no save copies from: Tune restores its searcher with the location the search started
            # in, so the trials it makes after a moved or copied experiment is resumed stage their files there
            return
        self.seen.pop(rel, None)  # should Tune pickle the config otherwise, the next save records what it wrote
        trust.record_files(self.where(storage), {rel: cloudpickle.dumps(config)})

    def saved_storage(self, trial=None):
        """The storage of the experiment Tune saves: its first trial's (Tune lists restored trials first, and gives
        them the experiment's new location when it was moved or copied)."""
        return getattr(self.trials[0], "storage", None) if self.trials else getattr(trial, "storage", None)

    def guarded(self, record) -> None:
        try:
            record()
        except Exception as e:  # noqa: BLE001 - a failed record must not end the search; resume then asks
            if not self.failed:
                self.failed = True
                print(f"simmim-ray: warning: could not record the digests of Tune's state in {self.uri} ({e}); "
                      f"a --resume will need {trust.TRUST_FLAG}", file=sys.stderr, flush=True)

    def record_staged(self) -> None:
        storage = self.saved_storage()
        staging = getattr(storage, "experiment_driver_staging_path", None)
        if not staging or not os.path.isdir(staging):
            return
        changed, stats = {}, {}
        for d, _, names in os.walk(staging):
            for name in names:
                path = os.path.join(d, name)
                rel = os.path.relpath(path, staging).replace(os.sep, "/")
                if not trust.is_pickle(rel):
                    continue
                st = os.stat(path)
                stats[rel] = (st.st_size, st.st_mtime_ns)
                if self.seen.get(rel) != stats[rel]:
                    with open(path, "rb") as f:
                        changed[rel] = f.read()
        if changed:
            trust.record_files(self.where(storage), changed)
        self.seen.update(stats)

    def where(self, storage) -> str:
        """The experiment where it is now (a restored callback carries where its search started)."""
        now = getattr(storage, "experiment_fs_path", None)
        return rebased(self.uri, now) if now else self.uri
