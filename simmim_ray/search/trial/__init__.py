"""One search trial: the Tune trial function that fits a Ray Train job, and how that job talks to Tune on the trial
path the driver chose (public: Ray's own wiring; lean: fewer processes, see docs/internals.md).

- trial.py: the trial function (`make_trial_fn`) and the trials' names
- wiring.py: which callbacks a trial's Train run gets on each path
- relay.py: lean path, Train's reports to Tune through Ray's KV store
- stop.py: lean path, a trial's Train run ends as soon as Tune lets go of the trial
"""
from simmim_ray.facade import surface

__all__, __getattr__ = surface(__name__, {
    "make_trial_fn": "trial",
    "trial_name": "trial",
    "TrialWiring": "wiring",
    "KVResults": "relay",
    "ReportToTune": "relay",
    "StopWithTune": "stop",
})
