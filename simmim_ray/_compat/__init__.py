"""The seam between simmim-ray and its dependencies' private APIs (issue 14).

Every use of a private API of Ray or Optuna (`_internal` modules, `internal_kv`, underscore attributes, methods
and arguments) lives in this package, one module per dependency: `ray_train.py` (Train's torch backend and default
callbacks), `ray_tune.py` (Ray's KV store and the Tune session), `ray_core.py` (`ray.init`, version checks),
`placement_groups.py` (the GCS tables: groups Ray left reserved), `optuna.py` (constraints, storage-level trial
updates). tests/unit/project/test_compat_boundary.py checks that
nothing outside it touches them.

A search trial runs on one of two paths:

- public: Tune + Train V2 wired through Ray's documented integration (`TuneReportCallback`, Ray's `TorchConfig`,
  Train's default callbacks) and Tune's public way to end a stopped trial: no actor reuse, so Tune ends the trial
  actor, which ends the Train controller it owns, whose placement group Train's cleaner then frees.
- lean: the same search with fewer processes and CPU-seconds per trial (reused trial actors whose Train run is
  aborted through the controller's handle, reports through the KV store, no torch import in the controller, no
  dataset manager actor). It leans on Ray's private API, so it runs only on the Ray versions it was tested on
  (`versions.LEAN_TESTED_RAY`) and whose private pieces are all there.

SIMMIM_RAY_TRIAL_PATH=public|lean|auto (default auto) forces one; one log line says which path runs.
"""
from __future__ import annotations

import os
import sys

from simmim_ray._compat.versions import LEAN_TESTED_RAY
from simmim_ray.errors import UserError

ENV_VAR = "SIMMIM_RAY_TRIAL_PATH"
PATHS = ("auto", "lean", "public")
_said: set[str] = set()


def _ray_version() -> str:
    import ray  # Ray only to pick a trial path: the CLI imports this package at startup

    return ray.__version__


def lean_missing() -> list[str]:
    """The private pieces the lean path needs that the installed Ray lacks (empty: all there)."""
    from simmim_ray._compat import ray_train, ray_tune  # ray_train imports Ray Train: not at the CLI's startup

    return ray_train.missing() + ray_tune.missing()


def trial_path(say: bool = True) -> str:
    """'lean' or 'public' for this process (see the module docstring); logs the choice once per process."""
    asked = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if asked not in PATHS:
        raise UserError(f"{ENV_VAR}={asked!r}: must be one of {', '.join(PATHS)}")
    version = _ray_version()
    if asked == "public":
        path, why = "public", f"{ENV_VAR}=public"
    else:
        missing = lean_missing()
        if asked == "lean":
            if missing:
                raise UserError(f"{ENV_VAR}=lean: Ray {version} lacks what the lean trial path needs: "
                                f"{'; '.join(missing)} (unset it to run the public path)")
            path, why = "lean", f"{ENV_VAR}=lean"
        elif version in LEAN_TESTED_RAY and not missing:
            path, why = "lean", f"tested on Ray {version}"
        else:
            path = "public"
            why = (f"Ray {version} lacks {'; '.join(missing)}" if missing else
                   f"the lean path is not tested on Ray {version} (tested: {', '.join(LEAN_TESTED_RAY)})")
    if say and path not in _said:
        _said.add(path)
        print(f"simmim-ray: {path} trial path ({why})", file=sys.stderr, flush=True)
    return path


def lean() -> bool:
    return trial_path() == "lean"
