"""The driver's Tune callback that keeps search/record/trust.py's record current while the search runs.

Tune saves its experiment state into a staging directory on the driver (the experiment state, then the searcher,
then its callbacks' states), and only then starts copying that directory into the experiment. It asks every
callback for its state in between: that is where this callback digests the staged pickles, so each version is
recorded before it can land in the experiment, and a driver killed at any moment leaves an experiment whose pickles
verify. It keeps no state of its own (returns None: Tune then writes no callback-state pickle).
"""
from __future__ import annotations

import os
import sys

from ray.tune import Callback

from simmim_ray.search.record import trust
from simmim_ray.search.record.recorder import rebased


class PickleDigests(Callback):
    def __init__(self, exp_uri: str) -> None:
        self.uri = exp_uri
        self.trials: list | None = None  # Tune's own list of the experiment's trials (see on_step_begin)
        self.seen: dict[str, tuple[int, int]] = {}  # staged relpath -> (size, mtime_ns) when last recorded
        self.failed = False

    def __getstate__(self) -> dict:
        # pickled into tuner.pkl with the run config: the experiment's location only, never the key
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])

    def on_step_begin(self, iteration, trials, **info) -> None:
        # Tune passes the list it adds new trials to, before it saves in the same step
        self.trials = trials

    def get_state(self) -> None:
        """Called by Tune inside each save, after its state files are staged and before they are copied."""
        try:
            self.record_staged()
        except Exception as e:  # noqa: BLE001 - a failed record must not end the search; resume then asks
            if not self.failed:
                self.failed = True
                print(f"simmim-ray: warning: could not record the digests of Tune's state in {self.uri} ({e}); "
                      f"a --resume will need {trust.TRUST_FLAG}", file=sys.stderr, flush=True)
        return None

    def record_staged(self) -> None:
        storage = getattr(self.trials[0], "storage", None) if self.trials else None
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
